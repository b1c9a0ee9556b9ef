"""What the connections of one server share: their counts by listener (the main port and the
probes' port), where refusals are reported, and the app as the probes' listener serves it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.logs import RateLimitedLog
from gateway.metrics import Metrics

PROBE_PATHS = frozenset(("/health", "/ready"))
PROBE_MAX_CONNECTIONS = 16  # the kubelet opens one connection per probe

log = logging.getLogger("gateway.connections")
access_log = logging.getLogger("gateway.access")


@dataclass
class Connections:
    """What the connections of one server share: their counts by listener, and where they
    report refusals (metrics, and logs at a bounded rate)."""

    metrics: Metrics
    access_log: bool = True  # ACCESS_LOG: a line for each refusal that got an answer
    open: dict[bool, int] = field(default_factory=lambda: {False: 0, True: 0})  # by is-probe
    _log: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(log))
    _access: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(access_log))

    def closed(self, reason: str, client: str, detail: str, status: int | None = None) -> None:
        """A connection refused or cut off; `status` is the answer it got, if any."""
        self.metrics.connections_closed.labels(reason).inc()
        if status is None:
            self._log.warning("%s: %s", client, detail)
            return
        # Answered without the app (so without its access-log middleware): the same line.
        self.metrics.requests.labels("other", "other", str(status)).inc()
        if self.access_log:
            self._access.log(
                logging.INFO,
                "- - %d %s client=%s",
                status,
                detail,
                client,
                extra={"status": status, "method": None, "path": None, "request_id": None},
            )


def probes_only(app: ASGIApp) -> ASGIApp:
    """The app as the probe listener serves it: GET /health and /ready, nothing else."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in PROBE_PATHS:
            body = orjson.dumps({"detail": "Not Found: the probe port serves /health and /ready"})
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return serve
