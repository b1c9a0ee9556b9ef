"""Prometheus metrics of one gateway app, in their own registry (so that building several apps
in one process, as tests do, never collides).

Several uvicorn workers: set PROMETHEUS_MULTIPROC_DIR to an empty directory before start; each
worker then writes its samples there and /metrics, whichever worker answers, reports the sum
over all of them (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

DIFFERENCE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self._registry = CollectorRegistry()
        self._multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        r = self._registry

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=r)

        # HTTP, as the request-log middleware sees it.
        self.requests = counter(
            "gateway_requests",
            "HTTP requests by route, method and status",
            "route",
            "method",
            "status",
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.connections_closed = counter(
            "gateway_connections_closed",
            "Connections the gateway refused or cut off, by reason",
            "reason",
        )
        # The model thread and the batcher's queue.
        self.predictions = counter("gateway_predictions", "Windows the model answered")
        self.batch_size = Histogram(
            "gateway_batch_size", "Windows per model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.inline_calls = counter(
            "gateway_inline_model_calls",
            "Model calls run on the event loop, not the model thread (INLINE_PREDICT_MAX_MS)",
        )
        self.queue_depth = Gauge(
            "gateway_batch_queue_depth",
            "Windows waiting for the model thread (not reported with several workers)",
            registry=r,
            multiprocess_mode="livesum",
        )
        # Which model is served, and how it got there.
        self.model_info = Gauge(
            "gateway_model_info",
            "The model being served (1) by alias and version",
            ["alias", "version"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.reloads = counter(
            "gateway_reloads",
            "Model reloads by trigger (api, poll, startup) and result",
            "trigger",
            "result",
        )
        self.polls = counter(
            "gateway_registry_polls", "Registry polls by result (unchanged, moved, error)", "result"
        )
        self.load_failures = counter(
            "gateway_model_load_failures", "Failed attempts to resolve or load a model"
        )
        # Callbacks and the prediction log (PREDICTION_LOG).
        self.callbacks = counter(
            "gateway_callbacks", "Callback deliveries by result (delivered, failed)", "result"
        )
        self.prediction_log_lines = counter(
            "gateway_prediction_log_lines", "Lines written to the prediction log"
        )
        self.prediction_log_dropped = counter(
            "gateway_prediction_log_dropped",
            "Prediction log lines dropped, by reason (queue_full: disk too slow; write_error)",
            "reason",
        )
        # The shadow alias (SHADOW_ALIAS) and what every version forecast.
        self.forecasts = counter(
            "gateway_forecasts", "Forecasts by role (served, shadow) and version", "role", "version"
        )
        self.shadow_failures = counter(
            "gateway_shadow_failures",
            "Mirrored windows the shadow did not forecast, and its failed loads, by reason",
            "reason",
        )
        self.shadow_difference = Histogram(
            "gateway_shadow_difference_usd",
            "|shadow forecast - served forecast| of one window, USD",
            buckets=DIFFERENCE_BUCKETS,
            registry=r,
        )
        self.shadow_info = Gauge(
            "gateway_shadow_info",
            "The shadow version loaded (1) by alias and version",
            ["alias", "version"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self._served: tuple[str, str] | None = None
        self._shadowed: tuple[str, str] | None = None
        self._forecast_children: dict[tuple[str, str], Any] = {}

    def forecast(self, role: str, version: str, n: int = 1) -> None:
        child = self._forecast_children.get((role, version))
        if child is None:
            child = self._forecast_children[(role, version)] = self.forecasts.labels(role, version)
        child.inc(n)

    def served_events(self) -> ServedEvents:
        return ServedEvents(self)

    def shadow_events(self) -> ShadowEvents:
        return ShadowEvents(self)

    def shadowed(self, alias: str, version: str) -> None:
        """`gateway_shadow_info` names the shadow version loaded, as `served` does the served."""
        if self._shadowed == (alias, version):
            return
        if self._shadowed is not None:
            self.shadow_info.labels(*self._shadowed).set(0)
            self.shadow_info.remove(*self._shadowed)
        self._shadowed = (alias, version)
        self.shadow_info.labels(alias, version).set(1)

    def served(self, alias: str, version: str) -> None:
        """`gateway_model_info` names the served (alias, version) alone: the series of what is
        no longer served goes (in multiprocess mode its file keeps a 0, which /metrics skips)."""
        if self._served == (alias, version):
            return
        if self._served is not None:
            self.model_info.labels(*self._served).set(0)
            self.model_info.remove(*self._served)
        self._served = (alias, version)
        self.model_info.labels(alias, version).set(1)

    def render(self) -> bytes:
        if self._multiprocess_dir:
            registry = CollectorRegistry()
            registry.register(SizedFilesCollector(self._multiprocess_dir))
            return generate_latest(registry)
        return generate_latest(self._registry)


class SizedFilesCollector(Collector):
    """prometheus-client's MultiProcessCollector, minus the files a starting worker has created
    but not yet sized (reading one raises struct.error, which made /metrics a 500 while a worker
    started; such a file holds no sample yet) and the model-info series no longer served."""

    def __init__(self, path: str) -> None:
        self._path = path

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            with contextlib.suppress(OSError):  # a dead worker's file, removed meanwhile
                if os.path.getsize(path) > 0:
                    files.append(path)
        metrics: list[Metric] = list(MultiProcessCollector.merge(files, accumulate=True))  # type: ignore[no-untyped-call]
        for metric in metrics:
            if metric.name in ("gateway_model_info", "gateway_shadow_info"):
                # A worker's file keeps every series it ever served, at 0 once it stopped.
                metric.samples = [s for s in metric.samples if s.value != 0]
        return metrics


@dataclass(frozen=True)
class ServedEvents:
    """What happens to the served version, as metrics (served_model.ModelEvents)."""

    metrics: Metrics

    def reloaded(self, trigger: str, succeeded: bool) -> None:
        self.metrics.reloads.labels(trigger, "success" if succeeded else "failure").inc()
        if not succeeded:
            self.metrics.load_failures.inc()

    def polled(self, result: str) -> None:
        self.metrics.polls.labels(result).inc()

    def serving(self, alias: str, version: str) -> None:
        self.metrics.served(alias, version)


@dataclass(frozen=True)
class ShadowEvents:
    """What happens to the shadow version: its failed loads count as shadow failures."""

    metrics: Metrics

    def reloaded(self, trigger: str, succeeded: bool) -> None:
        if not succeeded:
            self.metrics.shadow_failures.labels("load").inc()

    def polled(self, result: str) -> None:
        if result == "error":
            self.metrics.shadow_failures.labels("poll").inc()

    def serving(self, alias: str, version: str) -> None:
        self.metrics.shadowed(alias, version)
