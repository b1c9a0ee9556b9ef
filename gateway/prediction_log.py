"""The prediction log (PREDICTION_LOG): one JSON line per answered prediction, an inference table
to score served forecasts against the closes that came (scripts/scorecard.py).

It never slows or fails a prediction. The route only puts a tuple on a bounded queue; one thread
formats and writes. When the disk is slow the queue fills and new lines are dropped; when it is
full (or over a file-size limit) the line is dropped; both are counted in
gateway_prediction_log_dropped_total{reason}. A line is written whole or not at all.

The file rotates by size: `path` -> `path.1` -> ... -> `path.<backups>`, the oldest deleted.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson

from gateway.metrics import Metrics

log = logging.getLogger("gateway.prediction_log")

QUEUE_SIZE = 10_000


class Entry(NamedTuple):
    """One forecast to log: what the route (or the shadow) hands over, formatted off the loop."""

    when: float  # unix time
    request_id: str
    role: str  # "served", or "shadow" for the shadow alias's forecast of the same window
    x: np.ndarray  # [T, F] float64, as the body had it
    close_column: int | None  # where the window's close is (from the version's contract)
    answer: Mapping[str, Any]  # model_alias, model_version, pred_btc_close_next, pred_interval
    candle_time: str | None  # ISO 8601 UTC time of the window's last candle, if the client said
    latency_s: float | None


class RotatingLineFile:
    """Appends whole lines to `path`, rotating it past `max_bytes`.

    Not logging's RotatingFileHandler: its buffered text stream can keep half a line after a
    failed write and append it later, so a full disk could leave broken or resurrected lines
    that were already counted as dropped. Here each line is one write() on an unbuffered file,
    and a short write is cut back off.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int, mode: int = 0o600) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.mode = mode  # of each new file: the log holds clients' forecasts, private by default
        self._fd: int | None = None

    def write(self, line: bytes) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.mode)
        # The size is read each time (not tracked): a copy-truncate by an outside tool is seen.
        size = os.fstat(self._fd).st_size
        if size and size + len(line) > self.max_bytes:
            self._rotate()
            return self.write(line)
        written = os.write(self._fd, line)
        if written != len(line):
            # The disk filled (or the file-size limit was reached) in the middle of the line.
            os.ftruncate(self._fd, size)
            raise OSError(errno.ENOSPC, f"short write to {self.path}")

    def _rotate(self) -> None:
        self.close()
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class PredictionLog:
    def __init__(
        self,
        path: Path,
        metrics: Metrics,
        max_bytes: int,
        backups: int,
        include_inputs: bool = False,
        queue_size: int = QUEUE_SIZE,
        mode: int = 0o600,
    ) -> None:
        self.path = path
        self.include_inputs = include_inputs
        self._file = RotatingLineFile(path, max_bytes, backups, mode)
        self._queue: queue.Queue[Entry | None] = queue.Queue(queue_size)
        self._written = metrics.prediction_log_lines
        self._dropped_full_queue = metrics.prediction_log_dropped.labels("queue_full")
        self._dropped_write_error = metrics.prediction_log_dropped.labels("write_error")
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def record(self, entry: Entry) -> None:
        """Called on the event loop (and the shadow's thread): never blocks, never raises."""
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self._dropped_full_queue.inc()

    def close(self, timeout: float = 10.0) -> None:
        """Writes what is queued (for at most `timeout` seconds), then stops the thread."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._thread = None

    def line(self, entry: Entry) -> bytes:
        x, answer, column = entry.x, entry.answer, entry.close_column
        fields: dict[str, Any] = {
            "time": datetime.fromtimestamp(entry.when, UTC).isoformat(timespec="milliseconds"),
            "request_id": entry.request_id,
            "role": entry.role,
            "model_alias": answer["model_alias"],
            "model_version": answer["model_version"],
            # The close the forecast starts from: what matches the line to its candle when the
            # client gave no candle_time (null for a version whose features name no close).
            "last_close": float(x[-1, column]) if column is not None else None,
        }
        if entry.candle_time is not None:
            fields["candle_time"] = entry.candle_time
        if self.include_inputs:
            fields["X"] = x
        else:
            # SHA-256 of the float32 window as the model saw it (C order, little-endian).
            fields["x_sha256"] = hashlib.sha256(x.astype("<f4").tobytes()).hexdigest()
        fields["pred_btc_close_next"] = answer["pred_btc_close_next"]
        fields["pred_interval"] = answer.get("pred_interval")
        if entry.latency_s is not None:
            fields["latency_ms"] = round(entry.latency_s * 1000, 3)
        return orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)

    def _run(self) -> None:
        warned = False
        while (entry := self._queue.get()) is not None:
            try:
                self._file.write(self.line(entry))
            except Exception as e:
                self._dropped_write_error.inc()
                # Once per failing stretch: a full disk must not also flood the logs.
                if not warned:
                    log.warning("prediction log %s: line dropped: %s", self.path, e)
                    warned = True
            else:
                self._written.inc()
                warned = False
        self._file.close()
