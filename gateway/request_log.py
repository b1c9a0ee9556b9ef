"""ASGI middleware: a request id, one access-log line and the request metrics per request."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import Metrics

access_log = logging.getLogger("gateway.access")
_MAX_ID_LENGTH = 128


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            # Echoed into headers and logs: only a short, printable id is taken as given.
            if 0 < len(text) <= _MAX_ID_LENGTH and text.isprintable():
                return text
            break
    return uuid.uuid4().hex


class RequestLog:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        routes: frozenset[str],
        current_version: Callable[[], str | None],
        enabled: bool = True,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.current_version = current_version
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            path = scope["path"]
            # Unknown paths share one label: label values must not grow without bound.
            route = path if path in self.routes else "other"
            method = scope["method"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            if self.enabled:
                version = state.get("model_version") or self.current_version()
                access_log.info(
                    "%s %s %d %.2fms version=%s request_id=%s",
                    method,
                    path,
                    status,
                    elapsed * 1000,
                    version,
                    request_id,
                    extra={
                        "request_id": request_id,
                        "method": method,
                        "path": path,
                        "status": status,
                        "latency_ms": round(elapsed * 1000, 3),
                        "model_version": version,
                    },
                )
