"""Webhook delivery for predictions: one POST per callback, within a total time budget.

The gateway calls `CallbackSender.deliver` inline and reports the outcome in its response
(README, "POST /predict"). A delivery never fails the prediction, so `deliver` turns every
problem into a `DeliveryResult` instead of raising. Where it may connect is decided by the
session (`gateway.webhooks.policy.create_session`); how it signs, by `gateway.webhooks.signing`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from gateway.redact import redact_url, scrub
from gateway.webhooks.policy import refused_address
from gateway.webhooks.signing import Signer

__all__ = ["CallbackSender", "DeliveryResult"]

logger = logging.getLogger("gateway.webhooks")

# Only this much of a receiver's answer is read: we need its status, not its content, and a
# hostile receiver must not make us buffer megabytes.
_MAX_RESPONSE_BYTES = 4096
_FIRST_BACKOFF = 0.1  # seconds, doubled after every retryable failure

_NON_CANONICAL_IPV4 = re.compile(r"[0-9.]+")


@dataclass(frozen=True)
class DeliveryResult:
    """Outcome of one delivery (all its attempts)."""

    ok: bool  # True only if the receiver answered 2xx within the budget
    error: str | None  # short human-readable reason when not ok
    attempts: int


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
        self._signer = None if secret is None else Signer(secret)

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
        if self._signer is not None:
            headers.update(self._signer.headers(message_id, body))
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
            refused = refused_address(exc)
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
        except aiohttp.ClientResponseError as exc:
            # Its text quotes the URL in aiohttp's normalized spelling: the message alone.
            message = " ".join(str(exc.message).split())
            return _Attempt(ok=False, error=f"malformed answer: {message}", retry=False)
        except aiohttp.ClientError as exc:  # non-HTTP URL, ...
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
