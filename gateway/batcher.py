"""Coalesces concurrent /predict calls into one [N, T, F] model call.

No waiting when idle: a lone request goes straight to the model. Under load, requests that
arrive while the model thread is busy form the next batch. Each batch reads the served model
once, so every answer carries the version that computed it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gateway.errors import GatewayError, ModelNotLoaded, PredictFailed
from gateway.metrics import Metrics
from gateway.served_model import Forecast, ServedModel

log = logging.getLogger("gateway.batcher")

Prediction = tuple[Forecast, ServedModel]
_Item = tuple[np.ndarray, "asyncio.Future[Prediction]"]


class Batcher:
    def __init__(
        self,
        current_model: Callable[[], ServedModel | None],
        metrics: Metrics,
        max_batch_size: int = 64,
        max_wait_s: float = 0.0,
    ) -> None:
        self._current_model = current_model
        self._metrics = metrics
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        # One thread runs the model: TensorFlow calls never block the event loop, and
        # batches form while that thread is busy.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="model-predict")
        self._worker: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Requests waiting for the model thread."""
        return self._queue.qsize()

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        while not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(ModelNotLoaded())
        self._executor.shutdown(wait=True)

    async def predict(self, window: np.ndarray) -> Prediction:
        """The next close for one checked [T, F] float32 window, and the model that gave it."""
        if self._current_model() is None:
            raise ModelNotLoaded()
        fut: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((window, fut))
        return await fut

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._max_wait_s > 0:
                await self._fill(batch)
            while len(batch) < self._max_batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            # Requests whose client went away are dropped before they cost model time.
            batch = [item for item in batch if not item[1].done()]
            if batch:
                try:
                    await self._run_batch(batch)
                except Exception:  # never let one batch kill the worker
                    log.exception("batch of %d failed unexpectedly", len(batch))
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(PredictFailed("internal error while predicting"))

    async def _fill(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait_s
        while len(batch) < self._max_batch_size:
            left = deadline - loop.time()
            if left <= 0:
                return
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except TimeoutError:
                return

    async def _run_batch(self, batch: list[_Item]) -> None:
        model = self._current_model()
        if model is None:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(ModelNotLoaded())
            return
        loop = asyncio.get_running_loop()
        x = np.stack([window for window, _ in batch])
        self._metrics.batch_size.observe(len(batch))
        try:
            out = await loop.run_in_executor(self._executor, model.predict, x)
        except Exception as e:
            if len(batch) == 1:
                _resolve(batch[0][1], exception=_as_predict_error(e))
                return
            # One window the model refused must not fail the others: answer one by one.
            for item in batch:
                await self._run_batch([item])
            return
        rows = np.asarray(out, dtype=np.float64)
        if rows.shape != (len(batch), 3):
            for _, fut in batch:
                _resolve(
                    fut,
                    exception=PredictFailed(
                        f"the model returned {len(rows)} forecasts for {len(batch)} windows"
                    ),
                )
            return
        self._metrics.predictions.inc(len(batch))
        for (_, fut), (value, lower, upper) in zip(batch, rows.tolist(), strict=True):
            if not np.isfinite(value):
                # the spec's answer is a number: never a 200 with null (JSON has no NaN)
                _resolve(fut, exception=PredictFailed("the model gave no finite forecast"))
            elif np.isfinite(lower) and np.isfinite(upper):
                _resolve(fut, result=(Forecast(value, lower, upper), model))
            else:
                _resolve(fut, result=(Forecast(value, None, None), model))


def _resolve(
    fut: asyncio.Future[Prediction],
    result: Prediction | None = None,
    exception: BaseException | None = None,
) -> None:
    if fut.done():
        return
    if exception is not None:
        fut.set_exception(exception)
    else:
        fut.set_result(result)  # type: ignore[arg-type]


def _as_predict_error(e: Exception) -> GatewayError:
    # The wrapper raises MlflowException(INVALID_PARAMETER_VALUE) with a message that says
    # what was expected; anything else is still the spec's 400 "prediction failed".
    message = getattr(e, "message", None) or str(e) or type(e).__name__
    message = " ".join(str(message).split())
    return PredictFailed(message[:500])
