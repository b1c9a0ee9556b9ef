"""What keeps a web page on another site from posting to the gateway (CSRF).

A browser lets any page send a "simple" cross-site POST: a form (urlencoded, multipart or
text/plain) or a fetch with such a type, no preflight, with the user's network position. Two
rules refuse every such request:

- a POST body declared as anything but JSON (`application/json`, or `application/<x>+json`)
  is refused with 415, so no form can post one (a body with no declared type is read as
  JSON, as clients such as `requests.post(data=...)` send it: a browser sends none only from
  a script, and then it sends `Origin`);
- a request whose `Origin` is present must come from the gateway's own origin (scheme and the
  `Host` it was sent to, where that host is an IP address or `localhost`) or one listed in
  ALLOWED_ORIGINS: 403 otherwise. Browsers send `Origin` with every cross-site POST; a page
  that rebinds its own domain name to the gateway's address has a domain name as its origin,
  so it is refused too unless that name is listed. Clients that are not browsers send none.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.datastructures import Headers

_SHOWN = 100  # characters of a refused Origin or Content-Type quoted back


def media_type_refusal(headers: Headers) -> str | None:
    """Why the request's declared body type is refused, or None (also when none is declared)."""
    declared = headers.get("content-type", "")
    media = declared.split(";", 1)[0].strip().lower()
    if not media:
        return None
    if media == "application/json" or (media.startswith("application/") and media[-5:] == "+json"):
        return None
    return f"Content-Type must be application/json, got {declared[:_SHOWN]!r}"


def origin_refusal(headers: Headers, scheme: str, allowed: frozenset[str]) -> str | None:
    """Why the request's Origin is refused, or None (also when it has none)."""
    origin = headers.get("origin")
    if origin is None or origin.lower() in allowed or _own(origin, headers.get("host"), scheme):
        return None
    return (
        f"cross-site request refused: Origin {origin[:_SHOWN]!r} is not this gateway's "
        "(ALLOWED_ORIGINS lists others to serve)"
    )


def _own(origin: str, host: str | None, scheme: str) -> bool:
    if host is None or origin.lower() != f"{scheme}://{host}".lower():
        return False
    try:
        hostname = urlsplit(origin).hostname
    except ValueError:
        return False
    if hostname is None:
        return False
    if hostname == "localhost":
        return True
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False  # a domain name: it may have been rebound to this address
    return True
