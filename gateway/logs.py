"""Logging set-up: plain text lines, or JSON lines (LOG_FORMAT=json) for log search tools."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import orjson

# Fields the access log attaches to its records (logging's `extra`).
ACCESS_FIELDS = ("request_id", "method", "path", "status", "latency_ms", "model_version")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ACCESS_FIELDS:
            if hasattr(record, field):
                line[field] = getattr(record, field)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RateLimitedLog:
    """A logger's lines at a bounded rate: at most `burst` per `period` seconds; the rest are
    counted and reported in one line once the next period begins. For lines a client can cause
    at will (refused connections, unparseable requests), which must not flood the logs."""

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 10,
        period: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._period = period
        self._clock = clock
        self._window_start = -period
        self._lines = 0
        self._suppressed = 0

    def log(
        self, level: int, message: str, *args: object, extra: Mapping[str, object] | None = None
    ) -> None:
        now = self._clock()
        if now - self._window_start >= self._period:
            if self._suppressed:
                self._logger.warning(
                    "%d more such lines suppressed in the last %g s", self._suppressed, self._period
                )
            self._window_start, self._lines, self._suppressed = now, 0, 0
        if self._lines >= self._burst:
            self._suppressed += 1
            return
        self._lines += 1
        self._logger.log(level, message, *args, extra=extra)

    def warning(self, message: str, *args: object) -> None:
        self.log(logging.WARNING, message, *args)
