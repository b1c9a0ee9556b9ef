"""Webhook delivery for predictions: one POST per callback, within a total time budget.

The gateway calls `CallbackSender.deliver` inline and reports the outcome in its response
(DESIGN.md, decision 7). A delivery never fails the prediction, so `deliver` turns every
problem into a `DeliveryResult` instead of raising.

The SSRF guard lives in the connector's socket factory, not in a resolver: aiohttp skips custom
resolvers for IP-literal URLs, and only the socket factory sees the address actually dialled,
for every connection attempt (each address of a host, every retry), after DNS.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import hashlib
import hmac
import ipaddress
import logging
import math
import re
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import aiohttp
import orjson

from gateway.redact import redact_url, scrub

__all__ = [
    "CallbackSender",
    "DeliveryResult",
    "create_session",
    "is_address_allowed",
    "parse_networks",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

logger = logging.getLogger("gateway.callbacks")

# Only this much of a receiver's answer is read: we need its status, not its content, and a
# hostile receiver must not make us buffer megabytes.
_MAX_RESPONSE_BYTES = 4096
_FIRST_BACKOFF = 0.1  # seconds, doubled after every retryable failure
_SECRET_PREFIX = "whsec_"

# IPv4 ranges that are not globally reachable (IANA IPv4 special-purpose registry) plus
# multicast. Written out rather than taken from `ip.is_global`, whose tables changed between
# 3.11 patch releases: the guard must not depend on which patch release runs it.
_FORBIDDEN_V4: tuple[ipaddress.IPv4Network, ...] = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", includes the unspecified 0.0.0.0 (dials localhost)
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # carrier-grade NAT, RFC 6598
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, includes cloud metadata at 169.254.169.254
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, NAT64 discovery, ...)
        "192.0.2.0/24",  # TEST-NET-1
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes the broadcast 255.255.255.255
    )
)

# IPv6 is simpler by allow-list: only global unicast 2000::/3 is ever a public destination.
# Everything else (::, ::1, fc00::/7 ULA, fe80::/10 link-local, fec0::/10, ff00::/8 multicast,
# 100::/64 discard, 64:ff9b:1::/48 local NAT64, the IPv4-compatible ::/96, ...) is refused.
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_FORBIDDEN_V6: tuple[ipaddress.IPv6Network, ...] = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments, includes Teredo 2001::/32 (embeds IPv4)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
    )
)
# Forms that carry an IPv4 destination: the packet ends up at the embedded IPv4 address (the
# kernel for ::ffff:a.b.c.d, a translator for NAT64 and 6to4), so that address decides.
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")

_NON_CANONICAL_IPV4 = re.compile(r"[0-9.]+")


@dataclass(frozen=True)
class DeliveryResult:
    """Outcome of one delivery (all its attempts)."""

    ok: bool  # True only if the receiver answered 2xx within the budget
    error: str | None  # short human-readable reason when not ok
    attempts: int


class _AddressNotAllowedError(OSError):
    """Raised by the guarded socket factory instead of dialling a refused address."""

    def __init__(self, address: str) -> None:
        # Constant text on purpose: when every address of a host is refused, aiohappyeyeballs
        # re-raises the first error only if all errors print the same; otherwise it merges them
        # into a plain OSError and this type (and its `address`) would be lost.
        super().__init__(errno.EACCES, "destination address not allowed")
        self.address = address


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Parse a comma- or space-separated list of CIDRs, e.g. "127.0.0.1/32, ::1/128"."""
    networks: list[IPNetwork] = []
    for item in re.split(r"[\s,]+", text.strip()):
        if not item:
            continue
        try:
            # strict: "10.0.0.1/8" is more likely a typo than a wish to allow all of 10/8.
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise ValueError(f"invalid network {item!r}: {exc}") from None
    return tuple(networks)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 destination an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return ip.sixtofour


def is_address_allowed(ip: IPAddress, allowed: Iterable[IPNetwork]) -> bool:
    """Whether a webhook may be sent to `ip`: public addresses, or ones an allowed net contains."""
    allowed = tuple(allowed)
    # `in` is simply False across IP versions, so mixed lists need no filtering.
    if any(ip in net for net in allowed):
        return True
    if isinstance(ip, ipaddress.IPv4Address):
        return not any(ip in net for net in _FORBIDDEN_V4)
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return is_address_allowed(embedded, allowed)
    return ip in _GLOBAL_UNICAST_V6 and not any(ip in net for net in _FORBIDDEN_V6)


def _display(ip: IPAddress) -> str:
    """An address as people write it: Python 3.11 prints ::ffff:127.0.0.1 as ::ffff:7f00:1."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


def _guarded_socket_factory(
    allowed: tuple[IPNetwork, ...],
) -> aiohttp.SocketFactoryType:
    """A socket factory that refuses to create a socket for a forbidden destination."""

    def factory(addr_info: aiohttp.AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise _AddressNotAllowedError(str(sockaddr))
        # An IPv6 sockaddr may carry a zone ("fe80::1%eth0"); the zone does not change the verdict.
        host = str(sockaddr[0]).split("%", 1)[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise _AddressNotAllowedError(host) from None
        if not is_address_allowed(ip, allowed):
            raise _AddressNotAllowedError(_display(ip))
        return socket.socket(family, type_, proto)

    return factory


def create_session(
    allowed_networks: Sequence[IPNetwork], max_connections: int = 100, max_per_host: int = 16
) -> aiohttp.ClientSession:
    """The app-wide callback session, SSRF-guarded; call inside the running loop, caller closes."""
    asyncio.get_running_loop()  # fail here, clearly, rather than deep inside aiohttp
    connector = aiohttp.TCPConnector(
        socket_factory=_guarded_socket_factory(tuple(allowed_networks)),
        # One slow receiver may hold at most `max_per_host` of the pool: the rest stays free
        # for everyone else's callbacks.
        limit=max_connections,
        limit_per_host=max_per_host,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # No HTTP(S)_PROXY / netrc from the environment: a proxy would dial the receiver for
        # us, out of the guard's sight.
        trust_env=False,
        # Receivers belong to different clients: nothing they set may travel to later calls.
        cookie_jar=aiohttp.DummyCookieJar(),
        # We never use the body, so never inflate it (no decompression bombs).
        auto_decompress=False,
        # `deliver` bounds every attempt with the remaining budget; aiohttp's own defaults
        # (300 s total, 30 s connect) would only blur which limit fired.
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None),
    )


def _signing_key(secret: str) -> bytes:
    """The HMAC key for a secret: base64-decoded after "whsec_", else its UTF-8 bytes."""
    if secret.startswith(_SECRET_PREFIX):
        encoded = secret[len(_SECRET_PREFIX) :]
        try:
            # Secrets are often shared without base64 padding.
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            # Never echo the secret itself.
            raise ValueError("callback secret starts with 'whsec_' but is not base64") from None
    else:
        key = secret.encode("utf-8")
    if not key:
        raise ValueError("callback secret is empty")
    return key


def _find_non_finite(payload: Any) -> str | None:
    """Path of the first NaN/infinity in an already-serializable payload, if any."""
    # orjson writes NaN and infinities as null without complaint; a forecast silently turned
    # into null is worse than a failed delivery. Called only after orjson accepted the payload,
    # so it is acyclic and shallow (orjson refuses both), and iteration needs no depth guard.
    # Each entry links to its parent instead of carrying its path: building a path string per
    # element would cost (key length x elements), and only the path of a hit is ever needed.
    stack: list[tuple[Any, Any, Any]] = [(payload, None, None)]  # (value, key, parent entry)
    while stack:
        entry = stack.pop()
        value = entry[0]
        if isinstance(value, float):
            if not math.isfinite(value):
                return _path_of(entry)
        elif isinstance(value, dict):
            stack.extend((item, key, entry) for key, item in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((item, i, entry) for i, item in enumerate(value))
    return None


def _path_of(entry: tuple[Any, Any, Any]) -> str:
    parts: list[str] = []
    while entry[2] is not None:
        key = entry[1]
        parts.append(f"[{key}]" if isinstance(key, int) else f".{str(key)[:40]}")
        entry = entry[2]
    return "$" + "".join(reversed(parts))


def _serialize(payload: dict[str, Any]) -> tuple[bytes | None, str | None]:
    """(body, None) or (None, reason)."""
    try:
        body = orjson.dumps(payload)
    except orjson.JSONEncodeError as exc:  # also covers TypeError: it subclasses it
        return None, f"payload is not JSON-serializable: {exc}"
    bad_path = _find_non_finite(payload)
    if bad_path is not None:
        return None, f"payload is not JSON-serializable: non-finite number at {bad_path}"
    return body, None


def _check_url(url: str) -> str | None:
    """Reason the URL cannot be a callback target, or None."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        return f"invalid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"unsupported URL scheme {parts.scheme!r}"
    host = parts.hostname
    if not host:
        return "invalid URL: no host"
    # "127.1", "2130706433", "0177.0.0.1": legacy numeric forms of an IPv4 address. aiohttp
    # 3.14 refuses them with an "invalid URL"; say what it really is.
    if _NON_CANONICAL_IPV4.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"address {host} is not allowed (not a canonical IPv4 address)"
    return None


def _refused_address(exc: BaseException) -> str | None:
    """The address named by the guard somewhere in an exception's chain, if it refused one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _AddressNotAllowedError):
            return current.address
        seen.add(id(current))
        if isinstance(current, aiohttp.ClientConnectorError):
            current = current.os_error
        else:
            current = current.__cause__ or current.__context__
    return None


def _safe_error(error: str | None, url: str) -> str | None:
    """An error text fit for logs and answers: exception texts may quote the whole URL."""
    if error is None:
        return None
    kind = error.split(":", 1)[0]
    return scrub(error, url, fallback=f"{kind} (details withheld: they quote the URL)")


@dataclass(frozen=True)
class _Attempt:
    ok: bool
    error: str | None
    retry: bool


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to `limit` bytes of the body: StreamReader.read(n) may return fewer, so loop."""
    buffer = bytearray()
    while len(buffer) < limit:
        chunk = await response.content.read(limit - len(buffer))
        if not chunk:
            break
        buffer += chunk
    return bytes(buffer)


class CallbackSender:
    """Delivers JSON payloads to webhook URLs over a shared, guarded session."""

    def __init__(
        self, session: aiohttp.ClientSession, timeout: float, secret: str | None = None
    ) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"callback timeout must be a positive number, got {timeout!r}")
        self._session = session
        self._timeout = float(timeout)
        self._key = None if secret is None else _signing_key(secret)

    async def deliver(
        self, url: str, payload: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> DeliveryResult:
        """POST `payload` to `url` (with extra `headers`); never raises (except CancelledError)."""
        # Only scheme, host and port are ever logged or answered: userinfo, paths and queries
        # may hold the client's tokens.
        origin = redact_url(url)
        attempts = 0
        try:
            body, error = _serialize(payload)
            if body is None:
                return self._failed(origin, url, error, attempts)
            error = _check_url(url)
            if error is not None:
                return self._failed(origin, url, error, attempts)

            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._timeout
            # One id for all attempts: receivers deduplicate retries by it.
            message_id = f"msg_{uuid.uuid4().hex}"
            backoff = _FIRST_BACKOFF
            last_error: str | None = None
            while True:
                attempts += 1
                try:
                    outcome = await self._attempt(url, body, message_id, deadline, headers)
                except TimeoutError:
                    # round(): a budget computed as 0.1 + 0.2 should print as 0.3
                    error = f"timed out after {round(self._timeout, 3)!r} s"
                    if last_error is not None:
                        error += f" (previous attempt: {last_error})"
                    return self._failed(origin, url, error, attempts)
                if outcome.ok:
                    logger.debug("callback to %s delivered (attempt %d)", origin, attempts)
                    return DeliveryResult(ok=True, error=None, attempts=attempts)
                last_error = outcome.error
                # Retry only if a backoff still leaves time for another attempt.
                if not outcome.retry or loop.time() + backoff >= deadline:
                    return self._failed(origin, url, outcome.error, attempts)
                logger.info(
                    "callback to %s attempt %d failed (%s); retrying in %.1f s",
                    origin,
                    attempts,
                    _safe_error(outcome.error, url),
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff *= 2
        except Exception as exc:  # the prediction must never fail because of its callback
            # The traceback may quote the URL: only at debug level, where secrets are expected.
            logger.debug("callback to %s: unexpected error", origin, exc_info=True)
            logger.error("callback to %s: unexpected error %s", origin, type(exc).__name__)
            return DeliveryResult(
                ok=False, error=f"internal error: {type(exc).__name__}", attempts=attempts
            )

    def _failed(self, origin: str, url: str, error: str | None, attempts: int) -> DeliveryResult:
        # The payload is deliberately not logged: it is the client's data.
        error = _safe_error(error, url)
        logger.warning("callback to %s failed after %d attempt(s): %s", origin, attempts, error)
        return DeliveryResult(ok=False, error=error, attempts=attempts)

    def _headers(
        self, body: bytes, message_id: str, extra: Mapping[str, str] | None
    ) -> dict[str, str]:
        headers = {**(extra or {}), "Content-Type": "application/json"}
        if self._key is not None:
            # Standard Webhooks: HMAC-SHA256 over "{id}.{timestamp}.{body}", fresh timestamp
            # per attempt so receivers' replay windows hold for late retries too.
            timestamp = str(int(time.time()))
            signed = b".".join((message_id.encode(), timestamp.encode(), body))
            digest = hmac.new(self._key, signed, hashlib.sha256).digest()
            headers["webhook-id"] = message_id
            headers["webhook-timestamp"] = timestamp
            headers["webhook-signature"] = "v1," + base64.b64encode(digest).decode("ascii")
        return headers

    async def _attempt(
        self,
        url: str,
        body: bytes,
        message_id: str,
        deadline: float,
        extra_headers: Mapping[str, str] | None = None,
    ) -> _Attempt:
        """One POST; raises TimeoutError when the budget runs out before the status arrives."""
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._session.post(
                    url,
                    data=body,
                    headers=self._headers(body, message_id, extra_headers),
                    allow_redirects=False,
                )
        except aiohttp.ClientSSLError as exc:
            return _Attempt(ok=False, error=f"TLS error: {exc}", retry=False)
        except aiohttp.ClientConnectorError as exc:
            refused = _refused_address(exc)
            if refused is not None:
                return _Attempt(ok=False, error=f"address {refused} is not allowed", retry=False)
            if isinstance(exc, aiohttp.ClientConnectorDNSError):
                return _Attempt(ok=False, error=f"cannot resolve host {exc.host}", retry=True)
            if isinstance(exc.os_error, ConnectionRefusedError):
                return _Attempt(ok=False, error="connection refused", retry=True)
            reason = exc.os_error.strerror or str(exc.os_error)
            return _Attempt(ok=False, error=f"connection failed: {reason}", retry=True)
        except aiohttp.InvalidURL as exc:
            return _Attempt(ok=False, error=f"invalid URL: {exc}", retry=False)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            # The receiver may have got the request; the stable webhook-id lets it deduplicate.
            return _Attempt(ok=False, error=f"connection lost: {exc}", retry=True)
        except aiohttp.ClientError as exc:  # malformed answer, non-HTTP URL, ...
            return _Attempt(ok=False, error=f"{type(exc).__name__}: {exc}", retry=False)

        try:
            status = response.status
            try:
                # The status decided the outcome already; the (bounded) body is read so a small
                # answer leaves the connection reusable, and is logged for operators.
                async with asyncio.timeout_at(deadline):
                    answer = await _read_at_most(response, _MAX_RESPONSE_BYTES)
                logger.debug("callback answer HTTP %d: %r", status, answer[:200])
            except (aiohttp.ClientError, OSError):  # OSError includes TimeoutError
                pass  # a body that is slow or broken after the status does not change it
        finally:
            # Closes the connection instead of pooling it when the body was not read in full.
            response.release()

        if 200 <= status < 300:
            return _Attempt(ok=True, error=None, retry=False)
        if 300 <= status < 400:
            return _Attempt(ok=False, error=f"redirect (HTTP {status}) not followed", retry=False)
        # 429 and 5xx are the receiver's passing trouble; any other 4xx will not change.
        retry = status == 429 or 500 <= status < 600
        return _Attempt(ok=False, error=f"HTTP {status}", retry=retry)
