"""The shadow alias (SHADOW_ALIAS): a second version that forecasts what clients ask, after they
were answered, and whose forecasts only the prediction log and the metrics ever see.

The shadow version is loaded and followed exactly as the served one (its own ServedModels: contract
check, smoke test, registry polls, hot swap, on threads of its own), so a shadow that fails to load
never touches the served model. A mirrored request costs its route one `put_nowait` on a bounded
queue (SHADOW_SAMPLE of them are mirrored): a thread of the shadow's own gathers what arrived over
a few milliseconds, runs the shadow on it as one batch and logs each forecast (role `shadow`, the
served line's request id). Whatever the shadow does (raise, answer NaN, be slow, be absent), the
client's answer and callback were already what they would be without it: a window the shadow could
not forecast is counted in `gateway_shadow_failures_total{reason}`, never retried.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import random
import threading
import time
from typing import Any, NamedTuple

import numpy as np

from gateway.metrics import Metrics
from gateway.prediction_log import Entry, PredictionLog
from gateway.served_model import ServedModel, ServedModels

log = logging.getLogger("gateway.shadow")

QUEUE_SIZE = 10_000
# How long the shadow's thread lets mirrored windows gather into a batch. Long, on purpose: the
# shadow shares the served model's CPU and GIL, and one forecast of 256 windows costs about what
# 10 lone ones do; its forecasts are scored against closes that come a candle later anyway.
BATCH_WAIT_S = 0.25
MAX_BATCH = 256


class Mirrored(NamedTuple):
    request_id: str
    x: np.ndarray  # [T, F] float64, checked against the served version's contract
    served_value: float  # the served forecast, USD
    candle_time: str | None


class Shadow:
    def __init__(
        self,
        models: ServedModels,
        metrics: Metrics,
        prediction_log: PredictionLog | None,
        sample: float = 1.0,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.models = models
        self._metrics = metrics
        self._prediction_log = prediction_log
        self._sample = sample
        self._queue: queue.Queue[Mirrored | None] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Forecasts what is queued, for at most `timeout` seconds, then stops the thread."""
        if self._thread is None:
            return
        # On a queue still full after the timeout the thread, a daemon, goes with the process.
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None

    def health(self) -> dict[str, Any]:
        model = self.models.current
        return {
            "model_alias": model.alias if model else self.models.alias,
            "model_version": model.version if model else None,
            "model_loaded": model is not None,
        }

    def mirror(
        self, request_id: str, x: np.ndarray, served_value: float, candle_time: str | None
    ) -> None:
        """On the event loop, after the answer was made: never blocks, never raises."""
        if self._sample < 1.0 and random.random() >= self._sample:
            return
        try:
            self._queue.put_nowait(Mirrored(request_id, x, served_value, candle_time))
        except queue.Full:
            self._metrics.shadow_failures.labels("queue_full").inc()

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            time.sleep(BATCH_WAIT_S)
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                self._forecast(batch)
            except Exception:  # the shadow's thread must outlive anything its version does
                log.exception("the shadow failed unexpectedly on %d windows", len(batch))
                self._metrics.shadow_failures.labels("error").inc(len(batch))
            if stop:
                return

    def _forecast(self, batch: list[Mirrored]) -> None:
        model = self.models.current
        if model is None:
            self._metrics.shadow_failures.labels("not_loaded").inc(len(batch))
            return
        started = time.perf_counter()
        try:
            rows = np.asarray(model.predict(np.stack([m.x for m in batch])), dtype=np.float64)
        except Exception as e:
            self._metrics.shadow_failures.labels("error").inc(len(batch))
            log.warning("shadow version %s refused %d windows: %s", model.version, len(batch), e)
            return
        if rows.shape != (len(batch), 3):
            self._metrics.shadow_failures.labels("error").inc(len(batch))
            return
        seconds = time.perf_counter() - started
        answered = 0
        for mirrored, (value, lower, upper) in zip(batch, rows.tolist(), strict=True):
            if not math.isfinite(value):
                self._metrics.shadow_failures.labels("no_forecast").inc()
                continue
            answered += 1
            self._metrics.shadow_difference.observe(abs(value - mirrored.served_value))
            self._log(model, mirrored, value, lower, upper, seconds / len(batch))
        self._metrics.forecast("shadow", model.version, answered)

    def _log(
        self,
        model: ServedModel,
        mirrored: Mirrored,
        value: float,
        lower: float,
        upper: float,
        seconds: float,
    ) -> None:
        if self._prediction_log is None:
            return
        interval = None
        if math.isfinite(lower) and math.isfinite(upper) and model.interval_level is not None:
            interval = {"lower": lower, "upper": upper, "level": model.interval_level}
        answer = {
            "model_alias": model.alias,
            "model_version": model.version,
            "pred_btc_close_next": value,
            "pred_interval": interval,
        }
        column = model.contract.close_column if model.contract is not None else None
        self._prediction_log.record(
            Entry(
                time.time(),
                mirrored.request_id,
                "shadow",
                mirrored.x,
                column,
                answer,
                mirrored.candle_time,
                seconds,
            )
        )
