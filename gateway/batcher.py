"""Coalesces concurrent /predict calls into one [N, T, F] model call.

No waiting when idle: a lone request goes straight to the model. Under load, requests that
arrive while the model thread is busy form the next batch. Each batch reads the served model
once, so every answer carries the version that computed it.

A lone window, with the model idle and no other request in the server, may run on the event
loop itself: handing it to the model thread and back costs a wake-up of each thread and the GIL
changing hands twice, which for a model as small as this one is as much as the call. It runs
there only while that model's measured cost for one window stays within a bound
(INLINE_PREDICT_MAX_MS), so a slow version (a TensorFlow fallback, a big ensemble) keeps to the
thread and never stalls the loop; and never under load, where the thread batches the windows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gateway.errors import GatewayError, ModelNotLoaded, PredictFailed
from gateway.metrics import Metrics
from gateway.served_model import Forecast, ServedModel

log = logging.getLogger("gateway.batcher")

Prediction = tuple[Forecast, ServedModel]
# A window, the future its request awaits, and whether its client has gone (None: unknown).
_Item = tuple[np.ndarray, "asyncio.Future[Prediction]", Callable[[], bool] | None]


class ClientLeft(Exception):
    """The request's client went away before its window reached the model: nothing was run."""


# A model's one-window cost is a moving average of the process CPU time its calls take: all
# threads', so that a runtime that works on a pool of its own (TensorFlow's) is not taken for
# cheap, and not wall-clock time, which on a busy machine adds the waits for a core that the
# loop would have met anyway. Each timing counts at most _COST_CLAMP times the bound: one odd
# call (a garbage collection) moves the average past the bound for a call or two, not dozens.
_COST_WEIGHT = 0.2
_COST_CLAMP = 4.0


class Batcher:
    def __init__(
        self,
        current_model: Callable[[], ServedModel | None],
        metrics: Metrics,
        max_batch_size: int = 64,
        max_wait_s: float = 0.0,
        inline_max_s: float = 0.0,
        requests_in_flight: Callable[[], int] = lambda: 1,
    ) -> None:
        self._current_model = current_model
        self._metrics = metrics
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        # A lone window runs on the loop while its model's one-window cost is within this (0:
        # never); not when batches are asked to wait for company (max_wait_s).
        self._inline_max_s = inline_max_s if max_wait_s <= 0 else 0.0
        # Requests the server is handling now, this one included: with others about, inline
        # calls would run one window each on the loop, where the thread would batch them.
        self._requests_in_flight = requests_in_flight
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        # One thread runs the model: batches form while that thread is busy, and a model call
        # too slow to run inline never blocks the event loop.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="model-predict")
        self._worker: asyncio.Task[None] | None = None
        self._busy = False  # the worker holds a batch (forming it or on the model thread)
        # The served model's one-window cost (seconds, a moving average); unknown for a model
        # just swapped in, which therefore starts on the thread.
        self._cost: tuple[ServedModel, float] | None = None

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
            _, fut, _ = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(ModelNotLoaded())
        self._executor.shutdown(wait=True)

    async def predict(
        self, window: np.ndarray, client_gone: Callable[[], bool] | None = None
    ) -> Prediction:
        """The next close for one checked [T, F] float64 window, and the model that gave it.

        `client_gone` tells whether the request's client has left: a window still queued then
        is dropped before it costs model time, and the call raises ClientLeft."""
        model = self._current_model()
        if model is None:
            raise ModelNotLoaded()
        if self._may_inline(model):
            # Requests whose tasks the loop has just created have not counted themselves in
            # yet: let them run first, then look again.
            await asyncio.sleep(0)
            model = self._current_model()
            if model is not None and self._may_inline(model):
                return self._predict_inline(model, window)
        if model is None:
            raise ModelNotLoaded()
        fut: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((window, fut, client_gone))
        return await fut

    async def predict_block(self, windows: np.ndarray) -> tuple[np.ndarray, ServedModel]:
        """One model call on the model thread for N checked windows (gateway/oip.py): [N, 3] rows
        (NaN as the model gave them) and the model. The caller's request stays in flight until
        the call is done: no lone window runs on the loop meanwhile (_may_inline)."""
        model = self._current_model()
        if model is None:
            raise ModelNotLoaded()
        n = len(windows)
        self._metrics.batch_size.observe(n)
        loop = asyncio.get_running_loop()
        try:
            rows = np.asarray(await loop.run_in_executor(self._executor, model.predict, windows))
        except Exception as e:
            raise _as_predict_error(e) from None
        if rows.shape != (n, 3):
            raise PredictFailed(f"the model returned {len(rows)} forecasts for {n} windows")
        self._metrics.predictions.inc(n)
        return rows, model

    def _may_inline(self, model: ServedModel) -> bool:
        """The model idle, this request alone, and one window known to cost within the bound."""
        cost = self._cost
        return (
            self._inline_max_s > 0
            and not self._busy
            and self._queue.empty()
            and self._requests_in_flight() <= 1
            and cost is not None
            and cost[0] is model
            and cost[1] <= self._inline_max_s
        )

    def _record_cost(self, model: ServedModel, seconds: float) -> None:
        if self._inline_max_s <= 0:
            return
        seconds = min(seconds, _COST_CLAMP * self._inline_max_s)
        cost = self._cost
        if cost is None or cost[0] is not model:
            self._cost = (model, seconds)
        else:
            self._cost = (model, cost[1] + _COST_WEIGHT * (seconds - cost[1]))

    def _predict_inline(self, model: ServedModel, window: np.ndarray) -> Prediction:
        self._metrics.batch_size.observe(1)
        self._metrics.inline_calls.inc()
        started = time.process_time()
        try:
            out = model.predict(window[np.newaxis])
        except Exception as e:
            raise _as_predict_error(e) from None
        finally:
            self._record_cost(model, time.process_time() - started)
        try:
            (answer,) = self._answers(model, out, 1)
        except Exception:  # as on the thread: an unexpected failure is this request's alone
            log.exception("an inline prediction failed unexpectedly")
            raise PredictFailed("internal error while predicting") from None
        if isinstance(answer, GatewayError):
            raise answer
        return answer

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            self._busy = True
            try:
                if self._max_wait_s > 0:
                    await self._fill(batch)
                while len(batch) < self._max_batch_size and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                batch = [item for item in batch if self._still_wanted(item)]
                if batch:
                    try:
                        await self._run_batch(batch)
                    except Exception:  # never let one batch kill the worker
                        log.exception("batch of %d failed unexpectedly", len(batch))
                        for _, fut, _ in batch:
                            if not fut.done():
                                fut.set_exception(PredictFailed("internal error while predicting"))
            finally:
                self._busy = False

    @staticmethod
    def _still_wanted(item: _Item) -> bool:
        """False for a request already answered or whose client went away (told so)."""
        _, fut, gone = item
        if fut.done():
            return False
        if gone is not None and gone():
            fut.set_exception(ClientLeft())
            return False
        return True

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
            for _, fut, _ in batch:
                if not fut.done():
                    fut.set_exception(ModelNotLoaded())
            return
        loop = asyncio.get_running_loop()
        x = np.stack([window for window, _, _ in batch])
        self._metrics.batch_size.observe(len(batch))
        try:
            out, seconds = await loop.run_in_executor(self._executor, _timed, model.predict, x)
        except Exception as e:
            if len(batch) == 1:
                _resolve(batch[0][1], exception=_as_predict_error(e))
                return
            # One window the model refused must not fail the others: answer one by one.
            for item in batch:
                await self._run_batch([item])
            return
        if len(batch) == 1:
            self._record_cost(model, seconds)
        for (_, fut, _), answer in zip(batch, self._answers(model, out, len(batch)), strict=True):
            if isinstance(answer, GatewayError):
                _resolve(fut, exception=answer)
            else:
                _resolve(fut, result=answer)

    def _answers(
        self, model: ServedModel, out: np.ndarray, n: int
    ) -> list[Prediction | GatewayError]:
        """Each window's answer, or the error that window gets, from the model's [n, 3]."""
        rows = np.asarray(out, dtype=np.float64)
        if rows.shape != (n, 3):
            reason = f"the model returned {len(rows)} forecasts for {n} windows"
            return [PredictFailed(reason) for _ in range(n)]
        self._metrics.predictions.inc(n)
        answers: list[Prediction | GatewayError] = []
        for value, lower, upper in rows.tolist():
            if not np.isfinite(value):
                # the spec's answer is a number: never a 200 with null (JSON has no NaN)
                answers.append(PredictFailed("the model gave no finite forecast"))
            elif np.isfinite(lower) and np.isfinite(upper):
                answers.append((Forecast(value, lower, upper), model))
            else:
                answers.append((Forecast(value, None, None), model))
        return answers


def _timed(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> tuple[np.ndarray, float]:
    """On the model thread: the model's answer and its cost (process CPU seconds; see above)."""
    started = time.process_time()
    out = predict(x)
    return out, time.process_time() - started


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
