"""ASGI middleware: a request id, one access-log line and the request metrics per request."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import Metrics
from gateway.redact import escape

access_log = logging.getLogger("gateway.access")
# Printable ASCII only: an id is echoed in a header (Latin-1 on the wire), sent on the callback
# (UTF-8) and logged, and all three must be the same bytes.
_GIVEN_ID = re.compile(rb"[ -~]{1,128}")
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def _given_request_id(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _GIVEN_ID.fullmatch(value):
                given: bytes = value
                return given
            break
    return None


class InFlight:
    """How many HTTP requests are being handled now (RequestLog counts them)."""

    def __init__(self) -> None:
        self.count = 0


class RequestLog:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        routes: frozenset[str],
        current_version: Callable[[Scope], str | None],
        enabled: bool = True,
        in_flight: InFlight | None = None,
    ) -> None:
        self.app = app
        self.in_flight = in_flight or InFlight()
        self.metrics = metrics
        self.routes = routes
        self.current_version = current_version
        self.enabled = enabled
        # Generated ids: a random per-process prefix and a counter, unique across replicas and
        # far cheaper per request than uuid4 (a system call for 16 random bytes each time).
        self._id_prefix = secrets.token_hex(8)
        self._id_counter = itertools.count(1)
        # prometheus-client's labels() takes a lock and a dict lookup: keep the children.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = _given_request_id(scope)
        if given is None:
            request_id = f"{self._id_prefix}{next(self._id_counter):016x}"
            id_header = (b"x-request-id", request_id.encode("ascii"))
        else:
            request_id = given.decode("ascii")
            id_header = (b"x-request-id", given)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        in_flight = self.in_flight
        in_flight.count += 1
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            in_flight.count -= 1
            elapsed = time.perf_counter() - started
            method = scope["method"]
            key = (scope["path"], method, status)
            children = self._children.get(key)
            if children is None:
                children = self._children_for(key)
            children[0].inc()
            children[1].observe(elapsed)
            if self.enabled and access_log.isEnabledFor(logging.INFO):
                self._log_line(scope, state, request_id, status, elapsed)

    def _children_for(self, key: tuple[str, str, int]) -> tuple[Any, Any]:
        """The metric children of one (path, method, status), made once and kept."""
        path, method, status = key
        # Unknown paths and methods share one label: label values must not grow without
        # bound, and neither may this cache.
        route = path if path in self.routes else "other"
        label_method = method if method in _METHODS else "other"
        children = self._children.get((route, label_method, status))
        if children is None:
            children = (
                self.metrics.requests.labels(route, label_method, str(status)),
                self.metrics.latency.labels(route),
            )
            self._children[(route, label_method, status)] = children
        if route == path and label_method == method:
            self._children[key] = children
        return children

    def _log_line(
        self, scope: Scope, state: dict[str, Any], request_id: str, status: int, elapsed: float
    ) -> None:
        method = scope["method"]
        version = state.get("model_version") or self.current_version(scope)
        # The path as sent (still percent-encoded), escaped: a decoded %0d%0a would start a
        # forged line.
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = escape(raw_path.decode("latin-1"))
        # makeRecord and handle, not info(): info() walks the stack to find its caller on
        # every line, for a file and line number no access-log format shows.
        record = access_log.makeRecord(
            access_log.name,
            logging.INFO,
            __file__,
            0,
            "%s %s %d %.2fms version=%s request_id=%s",
            (method, path, status, elapsed * 1000, version, request_id),
            None,
            extra={
                "request_id": request_id,
                "method": method,
                "path": path,
                "status": status,
                "latency_ms": round(elapsed * 1000, 3),
                "model_version": version,
            },
        )
        access_log.handle(record)
