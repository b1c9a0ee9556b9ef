"""Which version is served: one immutable reference, swapped whole.

A reload asks the source (gateway/registry_source.py) for the version behind the alias, off the
event loop, and swaps the reference only once that version loaded and passed its smoke
prediction: a failed reload never takes the serving model away. A request reads the reference
once. Polls resolve the alias on a thread of their own.

Reloads are bounded work, whoever asks: one runs at a time and one more may wait. A reload of an
alias that is already waiting joins it; one of the alias being reloaded waits behind it (the
alias may have moved since that one resolved it) or joins it when the waiting place is taken;
a reload of any other alias then is refused at once (ReloadBusy). A waiting reload whose callers
have all gone is dropped before it runs.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol

import numpy as np

from gateway.aliases import shown
from gateway.contract import WindowContract
from gateway.errors import ReloadFailed
from gateway.settings import Settings

log = logging.getLogger("gateway.served_model")

_RELOADS_AT_ONCE = 2  # one running, one waiting


class ReloadBusy(ReloadFailed):
    """Refused at once: a reload runs and another waits (the spec's 500 for /reload)."""


class Forecast(NamedTuple):
    value: float  # the next close, USD
    lower: float | None  # the interval's bounds, USD; None when the version gives none
    upper: float | None


@dataclass(frozen=True)
class ServedModel:
    alias: str
    version: str
    # [N, T, F] float64 -> [N, 3] float64: forecast, lower, upper (NaN bounds: no interval)
    predict: Callable[[np.ndarray], np.ndarray]
    interval_level: float | None = None
    contract: WindowContract | None = None  # None: the shape the settings name (a stand-in)
    runtime: str | None = None  # what runs the network, as the version reports it
    example: tuple[tuple[float, ...], ...] | None = None  # a [T, F] window the version logged


@dataclass
class _Reload:
    """A reload under way: waiting for the loader, or (`started`) running on it."""

    alias: str
    future: asyncio.Future[ServedModel]
    callers: int = 0
    started: bool = False


class ModelEvents(Protocol):
    """Where the holder of a role reports what happens to it (gateway/metrics.py)."""

    def reloaded(self, trigger: str, succeeded: bool) -> None: ...

    def polled(self, result: str) -> None: ...

    def serving(self, alias: str, version: str) -> None: ...


class ModelSource(Protocol):
    """Where versions come from (both calls block; both raise ReloadFailed)."""

    def resolve(self, alias: str) -> str: ...

    def load(self, alias: str, version: str) -> ServedModel: ...


class ServedModels:
    """The served model, its reloads, start-up retries and registry polls.

    `loader` runs resolves and loads for reloads; `poller` runs the polls' resolves, so that a
    poll stuck on a hung registry never makes a /reload wait behind it. Both are the caller's.
    """

    def __init__(
        self,
        source: ModelSource,
        settings: Settings,
        events: ModelEvents,
        loader: Executor,
        poller: Executor,
        alias: str | None = None,
        role: str = "served",
    ) -> None:
        self._source = source
        self._settings = settings
        self._events = events
        self.alias = alias or settings.model_alias  # what an empty reload and start-up load
        self.role = role  # "served", or "shadow" (for the logs)
        self._loader = loader
        self._poller = poller
        self._current: ServedModel | None = None
        # The last version a registry poll failed to load: not retried until the alias moves.
        self._refused: tuple[str, str] | None = None
        self._lock = asyncio.Lock()
        self._loaded: OrderedDict[str, ServedModel] = OrderedDict()  # by version; loader only
        self._reloads: list[_Reload] = []  # the one running (first) and the one waiting

    @property
    def current(self) -> ServedModel | None:
        return self._current

    async def reload(self, alias: str | None = None, trigger: str = "api") -> ServedModel:
        """Serve the version behind `alias` (default: MODEL_ALIAS) or raise ReloadFailed
        (ReloadBusy when two reloads are under way already: see the module's docstring)."""
        alias = alias or self.alias
        job = self._job_for(alias, trigger)
        job.callers += 1
        try:
            # shield: one caller going away must not cancel the load the others wait for.
            return await asyncio.shield(job.future)
        finally:
            job.callers -= 1
            if job.callers == 0 and not job.started:
                job.future.cancel()  # nobody wants it any more, and it has not begun

    def _job_for(self, alias: str, trigger: str) -> _Reload:
        waiting = [job for job in self._reloads if not job.started]
        if waiting and waiting[0].alias == alias:
            return waiting[0]
        if len(self._reloads) < _RELOADS_AT_ONCE:
            job = _Reload(alias, asyncio.ensure_future(self._reload(alias, trigger)))
            job.future.add_done_callback(self._forget(job))
            self._reloads.append(job)
            return job
        running = [job for job in self._reloads if job.started and job.alias == alias]
        if running:
            return running[0]
        under_way = ", ".join(shown(job.alias) for job in self._reloads)
        raise ReloadBusy(f"two reloads are under way ({under_way}): try again once they are done")

    def _forget(self, job: _Reload) -> Callable[[asyncio.Future[ServedModel]], None]:
        def forget(done: asyncio.Future[ServedModel]) -> None:
            self._reloads.remove(job)
            if not done.cancelled():
                done.exception()  # retrieved: no "never retrieved" warning if all callers left

        return forget

    async def _reload(self, alias: str, trigger: str) -> ServedModel:
        async with self._lock:
            for job in self._reloads:
                if job.alias == alias and not job.started:
                    job.started = True
                    break
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            try:
                model = await loop.run_in_executor(self._loader, self._fetch, alias)
            except ReloadFailed:
                self._events.reloaded(trigger, succeeded=False)
                raise
            self._current = model
            self._events.reloaded(trigger, succeeded=True)
            self._events.serving(model.alias, model.version)
        log.info(
            "%s %s@%s version %s (%.2f s)",
            "serving" if self.role == "served" else f"loaded the {self.role}",
            self._settings.registered_model_name,
            alias,
            model.version,
            time.perf_counter() - started,
        )
        return model

    def _fetch(self, alias: str) -> ServedModel:
        """On the loader thread: the version behind `alias`, from memory or from the source."""
        version = self._source.resolve(alias)
        model = self._loaded.get(version)
        if model is None:
            log.info("loading version %s for @%s", version, alias)
            model = self._source.load(alias, version)
            self._loaded[version] = model
            while len(self._loaded) > self._settings.model_cache_size:
                self._loaded.popitem(last=False)
            _collect_and_freeze()
        self._loaded.move_to_end(version)
        return model if model.alias == alias else replace(model, alias=alias)

    async def ensure_model_ready(self) -> None:
        """Start-up: try the alias every retry interval until loaded or the timeout passes."""
        s = self._settings
        deadline = time.monotonic() + s.model_load_timeout
        attempt = 0
        while self._current is None:
            attempt += 1
            try:
                await self.reload(self.alias, trigger="startup")
                return
            except ReloadFailed as e:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.error(
                        "giving up loading %s@%s after %d attempts (MODEL_LOAD_TIMEOUT=%gs): %s; "
                        "the server keeps running, POST /reload to try again",
                        s.registered_model_name,
                        self.alias,
                        attempt,
                        s.model_load_timeout,
                        e.reason,
                    )
                    return
                log.warning(
                    "model not ready (attempt %d): %s; retrying in %gs",
                    attempt,
                    e.reason,
                    min(s.model_load_retry_interval, left),
                )
                await asyncio.sleep(min(s.model_load_retry_interval, left))

    async def follow_registry(self, interval: float) -> None:
        """Every `interval` seconds, serve the version the served alias points at now."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll_once()
            except Exception:  # the poller must outlive any one failure
                log.exception("registry poll failed unexpectedly")

    async def poll_once(self) -> None:
        current = self._current
        if current is None:
            return  # start-up retries or /reload are in charge until a model is served
        loop = asyncio.get_running_loop()
        try:
            version = await loop.run_in_executor(self._poller, self._source.resolve, current.alias)
        except ReloadFailed as e:
            self._events.polled("error")
            log.warning("registry poll for @%s failed: %s", current.alias, e.reason)
            return
        if version == current.version or (current.alias, version) == self._refused:
            self._events.polled("unchanged")
            return
        self._events.polled("moved")
        log.info("@%s moved from version %s to %s", current.alias, current.version, version)
        try:
            await self.reload(current.alias, trigger="poll")
        except ReloadBusy as e:
            log.warning("registry poll for @%s: %s; the next poll retries", current.alias, e.reason)
        except ReloadFailed as e:
            self._refused = (current.alias, version)
            log.error(
                "keeping version %s: the version @%s now points at cannot be served: %s",
                current.version,
                current.alias,
                e.reason,
            )


def _collect_and_freeze() -> None:
    """After a load: free what it and any evicted version left, then freeze what lives on.

    TensorFlow, Keras and MLflow leave hundreds of thousands of long-lived objects behind, and
    every full collection walks them all with the event loop stalled, several times a minute
    under load (the p99). Freezing moves them out of the collector's sight; what requests
    allocate is still collected as usual. But frozen objects are never collected: without the
    unfreeze and the collection first, each load's garbage and every evicted version's
    reference cycles would stay in memory for good. One full collection per load is the price.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
