"""Reload memory: cycling `/reload` through more versions than the gateway's cache holds must not
make the process grow with every load, and concurrent reloads of one alias load it once.

`RELOAD_SOAK_RELOADS` (default 8; `make soak`: 20) sets how many measured reloads the soak makes,
after a warm-up that loads every version twice.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest
from mlflow import MlflowClient

from tests.helpers import (
    MODEL_NAME,
    GatewayProcess,
    Registry,
    TrainedVersions,
    record_figures,
)

SOAK_MODEL = "BTC_LSTM_Soak"
ALIASES = ("a", "b", "c")  # three versions: one more than the gateway keeps loaded
RELOADS = int(os.environ.get("RELOAD_SOAK_RELOADS", "8"))
GROWTH_PER_RELOAD_MB = 5.0


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


@pytest.fixture(scope="module")
def soak_gateway(
    registry: Registry, trained: TrainedVersions, start_gateway: Callable[..., GatewayProcess]
) -> GatewayProcess:
    """A registered model of its own with three versions (copies of the session's two trained
    ones, so no training), served by a gateway that does not poll."""
    client = MlflowClient(registry.uri)
    if not client.search_registered_models(f"name = '{SOAK_MODEL}'"):
        for alias, source in zip(
            ALIASES, (trained.staging, trained.production, trained.staging), strict=True
        ):
            copy = client.copy_model_version(f"models:/{MODEL_NAME}/{source}", SOAK_MODEL)
            client.set_registered_model_alias(SOAK_MODEL, alias, copy.version)
    env = {
        "REGISTERED_MODEL_NAME": SOAK_MODEL,
        "MODEL_ALIAS": ALIASES[0],
        "MODEL_POLL_INTERVAL": "0",
    }
    return start_gateway(env)


def reload(gw: GatewayProcess, alias: str) -> dict[str, str]:
    r = gw.http.post("/reload", json={"alias": alias}, timeout=120)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_reload_cycling_does_not_grow_memory(soak_gateway: GatewayProcess, tmp_path: Path) -> None:
    gw = soak_gateway
    pid = gw.process.pid
    for alias in ALIASES[1:] + ALIASES:  # every version loaded, then each once more
        reload(gw, alias)
    # The cache now holds the last two: each next alias in turn is the evicted one, so every
    # measured reload loads a version from disk.
    start = rss_mb(pid)
    samples = [start]
    durations = []
    for i in range(RELOADS):
        began = time.perf_counter()
        answer = reload(gw, ALIASES[i % len(ALIASES)])
        durations.append(time.perf_counter() - began)
        assert answer["model_alias"] == ALIASES[i % len(ALIASES)]
        samples.append(rss_mb(pid))
    growth = (samples[-1] - start) / RELOADS
    record_figures(
        tmp_path,
        "reload_memory",
        {
            "reloads_measured": RELOADS,
            "rss_mb_after_warm_up": round(start, 1),
            "rss_mb_samples": [round(s, 1) for s in samples],
            "growth_mb_per_reload": round(growth, 2),
            "reload_seconds_median": round(sorted(durations)[len(durations) // 2], 2),
        },
    )
    assert growth <= GROWTH_PER_RELOAD_MB, f"{growth:.1f} MB per reload: {samples}"
    assert gw.health()["model_loaded"] is True


def test_concurrent_reloads_of_one_alias_load_it_once(
    soak_gateway: GatewayProcess, tmp_path: Path
) -> None:
    gw = soak_gateway
    reload(gw, "a")
    reload(gw, "b")  # the cache holds a and b: c must be loaded from disk
    loads_at_start = gw.log().count("loading version")

    def loads_of_c() -> int:
        # One line per load (a reload served from memory logs none); five reloads at once are
        # one running and one waiting behind it (the alias may move meanwhile): one load.
        return gw.log().count("loading version") - loads_at_start

    before = loads_of_c()

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(
                *(client.post(f"{gw.url}/reload", json={"alias": "c"}) for _ in range(5))
            )

    answers = asyncio.run(together())
    assert [r.status_code for r in answers] == [200] * 5
    assert len({r.json()["model_version"] for r in answers}) == 1
    record_figures(tmp_path, "reload_coalescing", {"requests": 5, "loads": loads_of_c() - before})
    assert loads_of_c() - before == 1
