"""Hot swap under load: 32 clients keep predicting while the served version flips between two
good versions every 0.5 s and bad versions are tried in between. Nothing may be lost or wrong.

The duration is `HOT_SWAP_SECONDS` (default 8; `make soak`: 30); however short, the test asserts
that it saw at least BAD_EVERY good swaps and one round of bad reloads. Every answer is checked
against what the very version it names computes for that window, and, when no good reload
overlapped the request, that it is the version the last completed reload installed (a swap is
effective at once and a failed reload changes nothing).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import mlflow
import numpy as np
import orjson
import pytest

from gateway.errors import RELOAD_PREFIX
from tests.helpers import (
    JSON,
    MODEL_NAME,
    BadVersions,
    Registry,
    TrainedVersions,
    point_forecasts,
    real_windows,
    record_figures,
    run_gateway,
)

HOT_SWAP_SECONDS = float(os.environ.get("HOT_SWAP_SECONDS", "8"))
CLIENTS = 32
WINDOWS_PER_CLIENT = 8
RELOAD_EVERY = 0.5  # seconds between good reloads
BAD_EVERY = 6  # after every 6th good reload (about every 3 s), try both bad versions
REL_TOL = 1e-5
GOOD_ALIASES = ("staging", "Production")


@dataclass(frozen=True)
class Answer:
    window: int
    sent: float  # time.monotonic() just before the request went out
    received: float  # ... and once the whole answer was read
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Reload:
    alias: str
    sent: float
    received: float
    status: int
    body: dict[str, Any]
    health_after: dict[str, Any] | None  # /health read right after a failed reload


async def _client(
    session: aiohttp.ClientSession,
    url: str,
    k: int,
    bodies: list[bytes],
    stop: asyncio.Event,
    answers: list[Answer],
) -> None:
    i = 0
    while not stop.is_set():
        window = k + CLIENTS * (i % WINDOWS_PER_CLIENT)  # each client has its own windows
        i += 1
        sent = time.monotonic()
        async with session.post(f"{url}/predict", data=bodies[window], headers=JSON) as r:
            raw = await r.read()
            status = r.status
        received = time.monotonic()
        body = orjson.loads(raw) if raw.startswith(b"{") else {"raw": raw[:200].decode()}
        answers.append(Answer(window, sent, received, status, body))


async def _reloader(
    session: aiohttp.ClientSession,
    url: str,
    stop: asyncio.Event,
    reloads: list[Reload],
    deadline: float,
) -> None:
    good = 0
    try:
        while time.monotonic() < deadline:
            # The cadence is the load pattern, not a synchronization: each reload is awaited.
            await asyncio.sleep(RELOAD_EVERY)
            aliases = ["Production" if good % 2 == 0 else "staging"]
            good += 1
            if good % BAD_EVERY == 0:
                aliases += ["broken", "short_window"]
            for alias in aliases:
                sent = time.monotonic()
                async with session.post(f"{url}/reload", json={"alias": alias}) as r:
                    body = orjson.loads(await r.read())
                    status = r.status
                received = time.monotonic()
                health = None
                if status != 200:
                    async with session.get(f"{url}/health") as h:
                        health = orjson.loads(await h.read())
                reloads.append(Reload(alias, sent, received, status, body, health))
    finally:
        stop.set()  # the clients stop with the reloader, also when it fails


async def _run_load(
    url: str, bodies: list[bytes], seconds: float
) -> tuple[list[Answer], list[Reload], float]:
    answers: list[Answer] = []
    reloads: list[Reload] = []
    stop = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=CLIENTS + 4)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(
            _reloader(session, url, stop, reloads, started + seconds),
            *(_client(session, url, k, bodies, stop, answers) for k in range(CLIENTS)),
        )
        elapsed = time.monotonic() - started
    return answers, reloads, elapsed


def test_hot_swap_under_load(
    registry: Registry,
    trained: TrainedVersions,
    bad_versions: BadVersions,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    n = CLIENTS * WINDOWS_PER_CLIENT
    candidates = real_windows(2 * n, seed=500)
    # What each version gives for each window, computed here from the registry's own copies.
    versions = (trained.staging, trained.production)
    predicted = [
        point_forecasts(mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{v}"), candidates)
        for v in versions
    ]
    # Only windows on which the two versions disagree by more than twice the tolerance: on the
    # others an answer from the wrong version could pass as the right one.
    v1, v2 = predicted
    distinguishable = np.flatnonzero(np.abs(v1 - v2) > 2 * REL_TOL * np.maximum(v1, v2))
    assert len(distinguishable) >= n, f"only {len(distinguishable)} usable windows"
    keep = distinguishable[:n]
    windows = candidates[keep]
    expected = {v: p[keep] for v, p in zip(versions, predicted, strict=True)}
    assert len({w.tobytes() for w in windows}) == n  # distinct windows
    bodies = [orjson.dumps({"X": w.tolist()}) for w in windows]
    alias_of = {trained.staging: "staging", trained.production: "Production"}

    with run_gateway({"MLFLOW_TRACKING_URI": registry.uri}, tmp_path) as gw:
        assert gw.health()["model_version"] == trained.staging
        answers, reloads, elapsed = asyncio.run(_run_load(gw.url, bodies, HOT_SWAP_SECONDS))
        assert gw.process.poll() is None, gw.log()[-3000:]

    # --- reloads: good ones answer 200 with their version, bad ones 500 and change nothing
    good = [r for r in reloads if r.alias in GOOD_ALIASES]
    bad = [r for r in reloads if r.alias not in GOOD_ALIASES]
    good_failed = [(r.alias, r.status, r.body) for r in good if r.status != 200]
    assert not good_failed, good_failed[:5]
    for r in good:
        version = trained.production if r.alias == "Production" else trained.staging
        assert r.body == {"status": "reloaded", "model_alias": r.alias, "model_version": version}
    served_before: dict[str, Any] = {"model_alias": "staging", "model_version": trained.staging}
    bad_accepted = []
    for r in reloads:
        if r.alias in GOOD_ALIASES:
            served_before = {"model_alias": r.alias, "model_version": r.body["model_version"]}
            continue
        if r.status != 500 or not r.body["detail"].startswith(RELOAD_PREFIX):
            bad_accepted.append((r.alias, r.status, r.body))
        assert r.health_after is not None
        if {k: r.health_after[k] for k in served_before} != served_before:
            bad_accepted.append((r.alias, "health after", r.health_after))
    assert not bad_accepted, bad_accepted[:5]

    # --- predictions: all 200, right version, right value
    failed = [(a.status, a.body) for a in answers if a.status != 200]
    wrong_version = [
        a.body
        for a in answers
        if a.status == 200
        and (
            a.body["model_version"] not in expected
            or a.body["model_alias"] != alias_of[a.body["model_version"]]
        )
    ]
    wrong_value = [
        (a.window, a.body)
        for a in answers
        if a.status == 200
        and a.body["model_version"] in expected
        and not np.isclose(
            a.body["pred_btc_close_next"],
            expected[a.body["model_version"]][a.window],
            rtol=REL_TOL,
            atol=0,
        )
    ]
    # A request that no good reload overlapped must carry the version the last one installed:
    # it was sent after that reload had answered and answered before the next one was sent.
    ends = [r.received for r in good]
    stale = []
    checked = 0
    for a in answers:
        i = bisect_right(ends, a.sent)  # good reloads completed before this request was sent
        if i < len(good) and good[i].sent < a.received:
            continue  # a swap may have happened while this request was in flight
        want = good[i - 1].body["model_version"] if i else trained.staging
        checked += 1
        if a.status == 200 and a.body["model_version"] != want:
            stale.append((a.body["model_version"], want))
    by_version = {v: sum(1 for a in answers if a.body.get("model_version") == v) for v in expected}

    latencies = sorted(a.received - a.sent for a in answers)
    reload_s = [r.received - r.sent for r in reloads]
    completions = sorted(a.received for a in answers)
    longest_gap = max(np.diff(completions), default=0.0)
    per_second = np.histogram(completions, bins=max(1, int(elapsed)))[0]
    figures = {
        "seconds": round(elapsed, 1),
        "clients": CLIENTS,
        "distinct_windows": n,
        "predictions": len(answers),
        "predictions_per_second": round(len(answers) / elapsed, 1),
        "slowest_second_predictions": int(per_second.min()),
        "longest_gap_between_answers_s": round(float(longest_gap), 3),
        "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
        "latency_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1),
        "answers_by_version": by_version,
        "reloads_tried": len(reloads),
        "good_reloads": len(good),
        "bad_reloads_tried": len(bad),
        "reload_latency_median_ms": round(1000 * statistics.median(reload_s), 1),
        "reload_latency_max_ms": round(1000 * max(reload_s), 1),
        "answers_checked_for_freshness": checked,
        "lost_non_200": len(failed),
        "wrong_version": len(wrong_version),
        "wrong_value": len(wrong_value),
        "stale": len(stale),
    }
    record_figures(tmp_path_factory.getbasetemp(), "hot_swap", figures)

    assert not failed, failed[:5]
    assert not wrong_version, wrong_version[:5]
    assert not wrong_value, wrong_value[:5]
    assert not stale, stale[:5]
    # Both versions really served, under a load that never paused.
    assert by_version[trained.staging] > 0 and by_version[trained.production] > 0, by_version
    # The first load of a version is a TensorFlow load under full load (seconds); the others
    # are memory-cached swaps. At least one round of bad versions must have been tried.
    assert len(good) >= BAD_EVERY and len(bad) >= 2, (len(good), len(bad))
    assert checked > len(answers) / 4, checked
    assert per_second.min() > 0, per_second
