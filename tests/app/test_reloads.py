"""Reloads are bounded work: one runs, one waits, others are refused; the memory cache is sized
by MODEL_CACHE_SIZE. The app in this process with stand-in versions."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from tests.helpers import (
    wait_for,
)
from tests.in_process import StandInSource, serve_in_process

# 1. Write-side limits ------------------------------------------------------------------------


def test_reloads_of_many_aliases_at_once_are_refused_past_the_bound() -> None:
    """One reload runs, one alias waits; a third alias is refused at once in the spec's form,
    and a reload of an alias already waiting joins it."""
    source = StandInSource({"staging": "1", "Production": "2", "canary": "3"})
    with serve_in_process(source=source) as client, ThreadPoolExecutor(4) as pool:
        source.gate.clear()  # loads are held back
        running = pool.submit(client.post, "/reload", json={"alias": "Production"})
        wait_for(lambda: source.resolves >= 2, 10, "the first reload to start")
        waiting = pool.submit(client.post, "/reload", json={"alias": "canary"})
        joined = pool.submit(client.post, "/reload", json={"alias": "canary"})
        time.sleep(0.2)
        refused = client.post("/reload", json={"alias": "staging"})
        source.gate.set()
        assert refused.status_code == 500
        assert refused.json()["detail"].startswith("모델 리로드 실패: ")
        assert "under way" in refused.json()["detail"]
        assert running.result(10).status_code == 200
        assert waiting.result(10).json()["model_version"] == "3"
        assert joined.result(10).json()["model_version"] == "3"
        assert source.loads.count("3") == 1


def test_the_memory_cache_is_sized_by_a_setting() -> None:
    # staging at start-up, then Production, staging, Production: with room for one version
    # every switch loads; with room for two, each version loads once.
    for size, loads in (("1", ["1", "2", "1", "2"]), ("2", ["1", "2"])):
        source = StandInSource()
        with serve_in_process({"MODEL_CACHE_SIZE": size}, source=source) as client:
            for alias in ("Production", "staging", "Production"):
                assert client.post("/reload", json={"alias": alias}).status_code == 200
        assert source.loads == loads, size


# 5. Secrets stay out in every spelling -------------------------------------------------------


# The Python client and the webhook check ------------------------------------------------------
