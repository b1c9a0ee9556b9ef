"""What may reach a log, a response or a metric: escaped client text and redacted URLs."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: anything a terminal
# or a log viewer may take as a new line or a command.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_one(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` with every control character written as an escape, so it stays on its line."""
    return _UNSAFE.sub(_escape_one, text)


def redact_url(url: str) -> str:
    """scheme://host:port of a URL: userinfo, path, query and fragment may hold credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not host:
        # A bare path or a name such as "databricks": nothing after a "?" is kept either.
        return escape(url.split("?", 1)[0].split("#", 1)[0].rpartition("@")[2])
    host = f"[{host}]" if ":" in host else host
    return escape(f"{parts.scheme}://{host}" + (f":{port}" if port is not None else ""))


# A URL as library error texts quote one (aiohttp's `url='...'`, yarl's `URL('...')`).
_QUOTED_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"<>()]*")
_SEPARATORS = re.compile(r"[/:@&=;,?#]")
_SHORTEST_SECRET = 4  # shorter pieces of a URL ("api", "v1") are words, not secrets


def scrub(text: str, url: str, fallback: str) -> str:
    """`text` with every URL in it shown as scheme://host:port, escaped; `fallback` if any
    secret part of `url` (userinfo, path, query, fragment, or a piece of one) would remain in
    any spelling: as written, percent-decoded or percent-encoded."""
    text = _QUOTED_URL.sub(lambda quoted: redact_url(quoted.group()), text.replace(url, ""))
    if any(secret in text for secret in secret_spellings(url)):
        return fallback
    return escape(text)


def secret_spellings(url: str) -> set[str]:
    """The parts of `url` that may hold credentials, and their pieces, as they may be spelled."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return {url}
    if not parts.scheme or not parts.hostname:
        # A bare name such as "databricks": only what follows a "?" or "#" or precedes an "@".
        secret = [parts.query, parts.fragment, url.rpartition("@")[0]]
    else:
        secret = [parts.netloc.rpartition("@")[0], parts.path, parts.query, parts.fragment]
    pieces = set(secret) | {piece for part in secret for piece in _SEPARATORS.split(part)}
    pieces |= {piece for part in secret for piece in _SEPARATORS.split(unquote(part))}
    spellings = set()
    for piece in pieces:
        for form in (piece, unquote(piece), quote(unquote(piece), safe=""), quote(piece, safe="")):
            if len(form) >= _SHORTEST_SECRET:
                spellings.add(form)
    return spellings
