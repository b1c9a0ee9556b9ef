"""Steady resources: many predictions whose callbacks all fail (the receiver answers 500, so every
delivery retries until its budget is spent) must not make the gateway's open files, memory or
threads grow. The gateway process is sampled from outside (psutil) while the load runs.

`STEADY_PREDICTIONS` (default 3,000; `make soak`: 10,000) sets the number.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import pytest

from tests.helpers import (
    JSON,
    Registry,
    TrainedVersions,
    real_windows,
    record_figures,
    run_gateway,
)
from tests.receiver import run_receiver

STEADY_PREDICTIONS = int(os.environ.get("STEADY_PREDICTIONS", "3000"))
CONCURRENCY = 64
CALLBACK_TIMEOUT = 0.3  # short budget: each failing delivery ends quickly (two attempts)
SAMPLE_EVERY = 0.25  # seconds
FD_SLACK = 16  # a few sockets opening or closing at the sampling instant
THREAD_SLACK = 2
RSS_GROWTH_MB = 40.0  # allowed in the second half; a leak of ~1 KB per request would be ~5 MB


@dataclass(frozen=True)
class Sample:
    done: int  # predictions answered when sampled
    fds: int
    rss_kb: int
    threads: int


def read_sample(pid: int, done: int) -> Sample:
    process = psutil.Process(pid)
    with process.oneshot():
        return Sample(
            done=done,
            fds=process.num_fds(),
            rss_kb=process.memory_info().rss // 1024,
            threads=process.num_threads(),
        )


@dataclass
class Sampler:
    """Samples the process every SAMPLE_EVERY seconds in a thread (a fixed cadence, not a wait
    for anything), tagging each sample with the progress of the load."""

    pid: int
    progress: list[int] = field(default_factory=lambda: [0])
    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_EVERY):
            self.samples.append(read_sample(self.pid, self.progress[0]))


async def run_load(
    url: str, bodies: list[bytes], total: int, progress: list[int]
) -> list[tuple[int, dict[str, Any]]]:
    answers: list[tuple[int, dict[str, Any]]] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            async with session.post(
                f"{url}/predict", data=bodies[i % len(bodies)], headers=JSON
            ) as r:
                answers.append((r.status, orjson.loads(await r.read())))
            progress[0] += 1

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
    return answers


def test_resources_level_off_under_failing_callbacks(
    registry: Registry,
    trained: TrainedVersions,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    env = {"MLFLOW_TRACKING_URI": registry.uri, "CALLBACK_TIMEOUT": str(CALLBACK_TIMEOUT)}
    windows = real_windows(128, seed=900)
    with run_gateway(env, tmp_path) as gw, run_receiver("error") as receiver:
        bodies = [
            orjson.dumps({"X": w.tolist(), "callback_url": receiver.url, "metadata": {"i": i}})
            for i, w in enumerate(windows)
        ]
        pid = gw.process.pid
        idle_before = read_sample(pid, 0)
        sampler = Sampler(pid)
        thread = threading.Thread(target=sampler.run, daemon=True)
        thread.start()
        started = time.monotonic()
        try:
            answers = asyncio.run(run_load(gw.url, bodies, STEADY_PREDICTIONS, sampler.progress))
        finally:
            sampler.stop.set()
            thread.join(10)
        elapsed = time.monotonic() - started
        final = read_sample(pid, len(answers))
        assert gw.process.poll() is None, gw.log()[-3000:]
        callback_attempts = len(receiver.received)

    failed = [(status, body) for status, body in answers if status != 200]
    # Every delivery failed, and every prediction still answered, saying why.
    delivered = [
        body
        for status, body in answers
        if status == 200 and (body["posted_to_callback"] or not body.get("callback_error"))
    ]
    samples = sampler.samples
    warm = [s for s in samples if s.done <= STEADY_PREDICTIONS * 0.1] or samples[:1]
    first_half = [s for s in samples if s.done <= STEADY_PREDICTIONS / 2]
    last = [s for s in samples if s.done >= STEADY_PREDICTIONS * 0.9] or samples[-1:]
    fds_warm = max(s.fds for s in warm)
    fds_end = max(s.fds for s in last)
    threads_warm = max(s.threads for s in warm)
    threads_end = max(s.threads for s in last)
    rss_mid_mb = max(s.rss_kb for s in first_half) / 1024
    rss_end_mb = max(s.rss_kb for s in [*last, final]) / 1024
    figures = {
        "predictions": len(answers),
        "seconds": round(elapsed, 1),
        "predictions_per_second": round(len(answers) / elapsed, 1),
        "concurrency": CONCURRENCY,
        "callback_attempts_received": callback_attempts,
        "failed_callbacks_injected": len(answers) - len(delivered),
        "samples": len(samples),
        "fds_idle_before": idle_before.fds,
        "fds_after_first_10pct": fds_warm,
        "fds_last_10pct_max": fds_end,
        "fds_max": max(s.fds for s in samples),
        "fds_idle_after": final.fds,
        "threads_idle_before": idle_before.threads,
        "threads_after_first_10pct": threads_warm,
        "threads_last_10pct_max": threads_end,
        "rss_mb_idle_before": round(idle_before.rss_kb / 1024, 1),
        "rss_mb_first_half_max": round(rss_mid_mb, 1),
        "rss_mb_end_max": round(rss_end_mb, 1),
        "rss_mb_growth_second_half": round(rss_end_mb - rss_mid_mb, 1),
        "lost_non_200": len(failed),
    }
    record_figures(tmp_path_factory.getbasetemp(), "steady_resources", figures)

    assert len(answers) == STEADY_PREDICTIONS
    assert not failed, failed[:5]
    assert not delivered, delivered[:5]
    assert callback_attempts >= STEADY_PREDICTIONS  # the receiver really was called
    assert len(samples) >= 10, "too few samples to tell a trend"
    assert fds_end <= fds_warm + FD_SLACK, figures
    assert threads_end <= threads_warm + THREAD_SLACK, figures
    assert rss_end_mb - rss_mid_mb < RSS_GROWTH_MB, figures
