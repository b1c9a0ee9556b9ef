"""What may reach a log, a response or a metric: escaped client text and redacted URLs."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

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


def scrub(text: str, url: str, fallback: str) -> str:
    """`text` with `url` shown redacted; `fallback` if any secret part of `url` would remain."""
    text = text.replace(url, redact_url(url))
    secrets: tuple[str, ...]
    try:
        parts = urlsplit(url)
        secrets = (parts.netloc.rpartition("@")[0], parts.query, parts.fragment)
    except ValueError:
        secrets = (url,)
    # Other spellings of the URL (normalized, percent-encoded) may carry them too: then the
    # whole text goes, rather than guessing at every spelling.
    if any(secret and secret in text for secret in secrets):
        return fallback
    return escape(text)
