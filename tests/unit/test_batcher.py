"""The batcher alone, with a stand-in model function (a pure unit test of one module)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from gateway.batcher import Batcher
from gateway.errors import ModelNotLoaded, PredictFailed
from gateway.metrics import Metrics
from gateway.registry_source import as_forecasts
from gateway.served_model import Forecast, ServedModel


class RecordingModel:
    """Returns each window's first value; refuses windows whose first value is negative, as
    the wrapper refuses non-positive prices. Blocks until released so batches can form."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.release = threading.Event()
        self.release.set()
        self.calls = 0

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.release.wait(10)
        self.batch_sizes.append(len(x))
        if (x[:, 0, 0] < 0).any():
            raise ValueError("prices must be positive")
        value = x[:, 0, 0].astype(np.float64) * 2
        # forecast, interval lower and upper: what ServedModel.predict gives (as_forecasts)
        return np.column_stack([value, value - 1, value + 1])


def window(value: float) -> np.ndarray:
    w = np.ones((12, 18), np.float32)
    w[0, 0] = value
    return w


async def until(condition: object) -> None:
    """Poll a condition from the event loop (the model runs on another thread)."""
    for _ in range(5000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


def served(model: RecordingModel, version: str = "1") -> ServedModel:
    return ServedModel(alias="staging", version=version, predict=model.predict)


def test_concurrent_requests_coalesce_and_each_gets_its_own_answer() -> None:
    model = RecordingModel()

    async def scenario() -> list[tuple[Forecast, ServedModel]]:
        batcher = Batcher(lambda: served(model), Metrics(), max_batch_size=8)
        batcher.start()
        model.release.clear()  # the first call holds the model thread; the rest queue up
        first = asyncio.create_task(batcher.predict(window(1)))
        await until(lambda: model.calls == 1)
        rest = [asyncio.create_task(batcher.predict(window(i))) for i in range(2, 22)]
        await until(lambda: batcher.queued == 20)
        model.release.set()
        results = await asyncio.gather(first, *rest)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert [f.value for f, _ in results] == [2.0 * i for i in range(1, 22)]
    assert [(f.lower, f.upper) for f, _ in results] == [
        (2.0 * i - 1, 2.0 * i + 1) for i in range(1, 22)
    ]
    # One lone call, then the 20 queued ones in batches of at most 8.
    assert model.batch_sizes == [1, 8, 8, 4]


def test_a_refused_window_fails_alone_and_its_batch_mates_succeed() -> None:
    model = RecordingModel()

    async def scenario() -> list[object]:
        batcher = Batcher(lambda: served(model), Metrics(), max_batch_size=64)
        batcher.start()
        model.release.clear()
        blocker = asyncio.create_task(batcher.predict(window(1)))
        await until(lambda: model.calls == 1)
        values = [5, -1, 7, 9]
        tasks = [asyncio.create_task(batcher.predict(window(v))) for v in values]
        await until(lambda: batcher.queued == 4)
        model.release.set()
        out = await asyncio.gather(blocker, *tasks, return_exceptions=True)
        await batcher.stop()
        return out

    blocker, good1, bad, good2, good3 = asyncio.run(scenario())
    assert isinstance(bad, PredictFailed)
    assert bad.detail == "예측 실패: prices must be positive"
    answers = (blocker, good1, good2, good3)
    assert [r[0].value for r in answers] == [2.0, 10.0, 14.0, 18.0]  # type: ignore[index]
    # The batch of 4 failed, then ran one by one.
    assert model.batch_sizes == [1, 4, 1, 1, 1, 1]


def test_every_answer_in_a_batch_carries_the_model_that_computed_it() -> None:
    model = RecordingModel()
    current = {"model": served(model, "1")}

    async def scenario() -> list[tuple[Forecast, ServedModel]]:
        batcher = Batcher(lambda: current["model"], Metrics(), max_batch_size=64)
        batcher.start()
        model.release.clear()
        first = asyncio.create_task(batcher.predict(window(1)))
        await until(lambda: model.calls == 1)
        # Swapped while the first batch runs: the queued batch must read version 2, once.
        current["model"] = served(model, "2")
        rest = [asyncio.create_task(batcher.predict(window(i))) for i in range(2, 6)]
        await until(lambda: batcher.queued == 4)
        model.release.set()
        out = await asyncio.gather(first, *rest)
        await batcher.stop()
        return out

    results = asyncio.run(scenario())
    assert [m.version for _, m in results] == ["1", "2", "2", "2", "2"]


def test_no_model_means_503() -> None:
    async def scenario() -> None:
        batcher = Batcher(lambda: None, Metrics())
        batcher.start()
        try:
            with pytest.raises(ModelNotLoaded):
                await batcher.predict(window(1))
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_max_wait_gathers_a_batch_when_idle() -> None:
    model = RecordingModel()

    async def scenario() -> None:
        batcher = Batcher(lambda: served(model), Metrics(), max_batch_size=64, max_wait_s=0.2)
        batcher.start()
        tasks = [asyncio.create_task(batcher.predict(window(i))) for i in range(1, 6)]
        await asyncio.gather(*tasks)
        await batcher.stop()

    asyncio.run(scenario())
    assert model.batch_sizes == [5]


def test_outputs_without_an_interval_give_a_forecast_without_bounds() -> None:
    """Versions logged before intervals return a plain [N] array; newer ones a DataFrame."""
    import pandas as pd

    legacy = as_forecasts(np.array([1.0, 2.0]))
    assert legacy[:, 0].tolist() == [1.0, 2.0] and np.isnan(legacy[:, 1:]).all()
    frame = pd.DataFrame(
        {"pred_btc_close_next": [5.0], "pred_interval_lower": [4.0], "pred_interval_upper": [6.0]}
    )
    assert as_forecasts(frame).tolist() == [[5.0, 4.0, 6.0]]


class ThreadRecordingModel:
    """Records which thread ran each call; burns `cpu_s` of CPU time per call."""

    def __init__(self, cpu_s: float = 0.0) -> None:
        self.cpu_s = cpu_s
        self.threads: list[str] = []

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        until = time.process_time() + self.cpu_s
        while time.process_time() < until:
            pass
        if (x[:, 0, 0] < 0).any():
            raise ValueError("prices must be positive")
        value = x[:, 0, 0].astype(np.float64) * 2
        return np.column_stack([value, value - 1, value + 1])


@pytest.mark.anyio
async def test_a_lone_window_runs_on_the_loop_once_its_model_is_known_to_be_cheap() -> None:
    model = ThreadRecordingModel()
    metrics = Metrics()
    current = served(model)  # the store hands out one ServedModel per loaded version
    batcher = Batcher(lambda: current, metrics, inline_max_s=0.05)
    batcher.start()
    try:
        first = await batcher.predict(window(1))
        second = await batcher.predict(window(2))
        refused = await asyncio.gather(batcher.predict(window(-1)), return_exceptions=True)
    finally:
        await batcher.stop()
    # Unknown cost: the thread, which times it; then the loop, with the same answers and errors.
    loop_thread = threading.current_thread().name
    assert model.threads[0].startswith("model-predict")
    assert model.threads[1:] == [loop_thread, loop_thread]
    assert (first[0], second[0]) == (Forecast(2.0, 1.0, 3.0), Forecast(4.0, 3.0, 5.0))
    assert isinstance(refused[0], PredictFailed)
    assert refused[0].detail == "예측 실패: prices must be positive"
    assert metrics.inline_calls._value.get() == 2


@pytest.mark.anyio
async def test_a_model_costlier_than_the_bound_stays_on_the_thread() -> None:
    model = ThreadRecordingModel(cpu_s=0.005)
    current = served(model)
    batcher = Batcher(lambda: current, Metrics(), inline_max_s=0.001)
    batcher.start()
    try:
        for i in range(1, 6):
            await batcher.predict(window(i))
    finally:
        await batcher.stop()
    assert all(name.startswith("model-predict") for name in model.threads)
    assert len(model.threads) == 5


@pytest.mark.anyio
async def test_a_swapped_in_model_starts_on_the_thread() -> None:
    old, new = ThreadRecordingModel(), ThreadRecordingModel()
    current = {"model": served(old, "1")}
    batcher = Batcher(lambda: current["model"], Metrics(), inline_max_s=0.05)
    batcher.start()
    try:
        await batcher.predict(window(1))
        await batcher.predict(window(1))
        current["model"] = served(new, "2")
        answers = [await batcher.predict(window(1)) for _ in range(2)]
    finally:
        await batcher.stop()
    loop_thread = threading.current_thread().name
    assert old.threads[1] == loop_thread
    assert new.threads[0].startswith("model-predict") and new.threads[1] == loop_thread
    assert [m.version for _, m in answers] == ["2", "2"]


@pytest.mark.anyio
async def test_nothing_runs_on_the_loop_when_batches_wait_or_inline_is_off() -> None:
    for inline_max_s, max_wait_s in ((0.0, 0.0), (0.05, 0.001)):
        model = ThreadRecordingModel()
        current = served(model)
        batcher = Batcher(
            lambda c=current: c,  # type: ignore[misc]
            Metrics(),
            max_wait_s=max_wait_s,
            inline_max_s=inline_max_s,
        )
        batcher.start()
        try:
            for _ in range(3):
                await batcher.predict(window(1))
        finally:
            await batcher.stop()
        assert all(name.startswith("model-predict") for name in model.threads)


@pytest.mark.anyio
async def test_with_other_requests_in_flight_a_window_goes_to_the_thread() -> None:
    model = ThreadRecordingModel()
    current = served(model)
    in_flight = {"count": 1}
    batcher = Batcher(
        lambda: current, Metrics(), inline_max_s=0.05, requests_in_flight=lambda: in_flight["count"]
    )
    batcher.start()
    try:
        await batcher.predict(window(1))  # unknown cost: the thread
        await batcher.predict(window(1))  # alone: the loop
        in_flight["count"] = 3  # under load the thread batches instead
        await batcher.predict(window(1))
    finally:
        await batcher.stop()
    loop_thread = threading.current_thread().name
    assert model.threads[1] == loop_thread
    assert model.threads[2].startswith("model-predict")
