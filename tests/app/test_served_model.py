"""The served-model holder (gateway/served_model.py) with a stand-in source, and the app's
lifespan owning every thread: pure unit tests, no registry, no TensorFlow."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.errors import ReloadFailed
from gateway.metrics import Metrics
from gateway.served_model import ServedModel, ServedModels
from tests.helpers import wait_for
from tests.in_process import StandInSource, serve_in_process, settings_from


class FailingLoads(StandInSource):
    """Loads of the versions in `broken` fail, as a version that cannot load does."""

    def __init__(self, broken: set[str]) -> None:
        super().__init__()
        self.broken = broken

    def load(self, alias: str, version: str) -> ServedModel:
        if version in self.broken:
            self.loads.append(version)
            raise ReloadFailed(f"version {version} could not be loaded: broken")
        return super().load(alias, version)


@pytest.fixture
async def threads() -> AsyncIterator[tuple[ThreadPoolExecutor, ThreadPoolExecutor]]:
    with ThreadPoolExecutor(1) as loader, ThreadPoolExecutor(1) as poller:
        yield loader, poller


def holder(
    source: StandInSource, threads: tuple[ThreadPoolExecutor, ThreadPoolExecutor]
) -> ServedModels:
    return ServedModels(source, settings_from({}), Metrics().served_events(), *threads)


@pytest.mark.anyio
async def test_a_burst_of_reloads_of_one_alias_costs_one_load(
    threads: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
) -> None:
    source = StandInSource()
    source.gate.clear()
    models = holder(source, threads)
    burst = [asyncio.create_task(models.reload("Production")) for _ in range(8)]
    await asyncio.sleep(0.05)
    source.gate.set()
    served = await asyncio.gather(*burst)
    assert {(m.alias, m.version) for m in served} == {("Production", "2")}
    assert source.loads == ["2"]
    assert models.current is served[0]


@pytest.mark.anyio
async def test_a_failed_reload_keeps_the_serving_model(
    threads: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
) -> None:
    source = FailingLoads(broken={"3"})
    source.aliases["broken"] = "3"
    models = holder(source, threads)
    serving = await models.reload("staging")
    for alias, reason in (("broken", "could not be loaded"), ("nope", "not found")):
        with pytest.raises(ReloadFailed, match=reason):
            await models.reload(alias)
        assert models.current is serving


@pytest.mark.anyio
async def test_switching_between_two_aliases_loads_each_version_once(
    threads: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
) -> None:
    source = StandInSource()
    models = holder(source, threads)
    for alias in ("staging", "Production", "staging", "Production"):
        model = await models.reload(alias)
        assert (model.alias, model.version) == (alias, source.aliases[alias])
    assert source.loads == ["1", "2"]


@pytest.mark.anyio
async def test_a_poll_follows_the_alias_and_does_not_retry_a_version_it_refused(
    threads: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
) -> None:
    source = FailingLoads(broken={"5"})
    models = holder(source, threads)
    await models.reload("staging")
    await models.poll_once()
    assert source.loads == ["1"]  # the alias did not move
    source.aliases["staging"] = "5"
    await models.poll_once()
    await models.poll_once()
    assert source.loads == ["1", "5"]  # refused once, not retried
    assert models.current is not None and models.current.version == "1"
    source.aliases["staging"] = "2"
    await models.poll_once()
    assert models.current.version == "2"


def test_building_the_app_starts_nothing_and_the_lifespan_closes_what_it_opened(
    tmp_path: Path,
) -> None:
    def ours() -> set[str]:
        prefixes = ("model-load", "registry-poll", "model-predict", "prediction-log")
        return {t.name for t in threading.enumerate() if t.name.startswith(prefixes)}

    before = ours()
    create_app(settings_from({}), source=StandInSource())
    assert ours() == before
    with serve_in_process({"PREDICTION_LOG": str(tmp_path / "predictions.jsonl")}) as client:
        assert client.post("/reload").status_code == 200
        assert ours() - before  # the loader and the prediction log run now
    # The pools shut down without waiting (a hung registry must not hold the shutdown up):
    # their idle threads end just after.
    wait_for(lambda: ours() == before, 10, f"the lifespan's threads to end: {ours() - before}")
