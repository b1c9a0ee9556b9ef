"""alias -> version -> loaded pyfunc, behind one immutable reference that is swapped whole.

A reload resolves the alias, loads the version off the event loop, checks its window contract
against the configured shape (gateway/contract.py), runs one smoke prediction and only then
swaps the reference: a failed reload never takes the serving model away. Reloads are
serialized; a request reads the reference once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gateway.contract import Serving, WindowContract, read_contract, serving
from gateway.errors import ReloadFailed
from gateway.metrics import Metrics
from gateway.redact import redact_url, scrub
from gateway.settings import Settings

log = logging.getLogger("gateway.model_store")

# Loaded pyfuncs kept in memory by version, so switching back and forth between two aliases
# costs a registry lookup, not a TensorFlow load.
_MEMORY_CACHE = 2


# The pyfunc's output columns (model_wrapper/pyfunc.py): versions logged before the interval
# return a plain [N] array of forecasts instead.
POINT, LOWER, UPPER = "pred_btc_close_next", "pred_interval_lower", "pred_interval_upper"


class Forecast(NamedTuple):
    value: float  # the next close, USD
    lower: float | None  # the interval's bounds, USD; None when the version gives none
    upper: float | None


@dataclass(frozen=True)
class ServedModel:
    alias: str
    version: str
    predict: Callable[[np.ndarray], np.ndarray]  # [N, T, F] float64 -> [N, 3] (see as_forecasts)
    interval_level: float | None = None
    contract: WindowContract | None = None  # None: the shape the settings name (a stand-in)
    runtime: str | None = None  # what runs the network, as the version reports it


def as_forecasts(output: Any) -> np.ndarray:
    """A pyfunc's answer as [N, 3] float64: forecast, lower, upper (NaN bounds: no interval)."""
    if hasattr(output, "columns"):  # a DataFrame, without importing pandas here
        nan = np.full(len(output), np.nan)
        return np.column_stack(
            [
                np.asarray(output[POINT], np.float64),
                np.asarray(output[LOWER], np.float64) if LOWER in output.columns else nan,
                np.asarray(output[UPPER], np.float64) if UPPER in output.columns else nan,
            ]
        )
    values = np.asarray(output, dtype=np.float64).reshape(-1)
    return np.column_stack([values, np.full((len(values), 2), np.nan)])


class ModelStore:
    def __init__(self, settings: Settings, metrics: Metrics, cache_dir: Path | None = None) -> None:
        self._settings = settings
        self._metrics = metrics
        self._current: ServedModel | None = None
        # The last version a registry poll failed to load: not retried until the alias moves.
        self._refused: tuple[str, str] | None = None
        self._lock = asyncio.Lock()
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="model-load")
        # Polls resolve the alias on a thread of their own: a poll stuck on a hung registry
        # must not make a /reload wait behind it.
        self._poller = ThreadPoolExecutor(1, thread_name_prefix="registry-poll")
        self._owns_cache = cache_dir is None
        self._cache_dir = cache_dir or Path(tempfile.mkdtemp(prefix="gateway-models-"))
        # version -> (pyfunc, how it is called), loader thread only
        self._loaded: OrderedDict[str, tuple[Any, Serving]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[ServedModel]] = {}  # alias -> reload under way

    @property
    def current(self) -> ServedModel | None:
        return self._current

    async def reload(self, alias: str | None = None, trigger: str = "api") -> ServedModel:
        """Serve the version behind `alias` (default: MODEL_ALIAS) or raise ReloadFailed.

        Reloads of an alias that is already being reloaded join that one: a burst of /reload
        calls costs one load.
        """
        alias = alias or self._settings.model_alias
        pending = self._pending.get(alias)
        if pending is None:
            pending = asyncio.ensure_future(self._reload(alias, trigger))
            self._pending[alias] = pending
            pending.add_done_callback(self._forget_pending(alias))
        # shield: one caller going away must not cancel the load the others wait for.
        return await asyncio.shield(pending)

    def _forget_pending(self, alias: str) -> Callable[[asyncio.Future[ServedModel]], None]:
        def forget(done: asyncio.Future[ServedModel]) -> None:
            if self._pending.get(alias) is done:
                del self._pending[alias]
            if not done.cancelled():
                done.exception()  # retrieved: no "never retrieved" warning if all callers left

        return forget

    async def _reload(self, alias: str, trigger: str) -> ServedModel:
        async with self._lock:
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            try:
                model = await loop.run_in_executor(self._loader, self._load, alias)
            except ReloadFailed:
                self._metrics.reloads.labels(trigger, "failure").inc()
                self._metrics.load_failures.inc()
                raise
            self._current = model
            self._metrics.reloads.labels(trigger, "success").inc()
            self._metrics.served(model.alias, model.version)
        log.info(
            "serving %s@%s version %s (%.2f s)",
            self._settings.registered_model_name,
            alias,
            model.version,
            time.perf_counter() - started,
        )
        return model

    async def ensure_model_ready(self) -> None:
        """Start-up: try MODEL_ALIAS every retry interval until loaded or the timeout passes."""
        s = self._settings
        deadline = time.monotonic() + s.model_load_timeout
        attempt = 0
        while self._current is None:
            attempt += 1
            try:
                await self.reload(s.model_alias, trigger="startup")
                return
            except ReloadFailed as e:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.error(
                        "giving up loading %s@%s after %d attempts (MODEL_LOAD_TIMEOUT=%gs): %s; "
                        "the server keeps running, POST /reload to try again",
                        s.registered_model_name,
                        s.model_alias,
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
            version = await loop.run_in_executor(self._poller, self._resolve, current.alias)
        except ReloadFailed as e:
            self._metrics.polls.labels("error").inc()
            log.warning("registry poll for @%s failed: %s", current.alias, e.reason)
            return
        if version == current.version or (current.alias, version) == self._refused:
            self._metrics.polls.labels("unchanged").inc()
            return
        self._metrics.polls.labels("moved").inc()
        log.info("@%s moved from version %s to %s", current.alias, current.version, version)
        try:
            await self.reload(current.alias, trigger="poll")
        except ReloadFailed as e:
            self._refused = (current.alias, version)
            log.error(
                "keeping version %s: the version @%s now points at cannot be served: %s",
                current.version,
                current.alias,
                e.reason,
            )

    def close(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)
        self._poller.shutdown(wait=False, cancel_futures=True)
        if self._owns_cache:
            shutil.rmtree(self._cache_dir, ignore_errors=True)

    # Everything below runs on the loader thread.

    def _load(self, alias: str) -> ServedModel:
        version = self._resolve(alias)
        loaded = self._loaded.get(version)
        if loaded is None:
            loaded = self._load_version(version)
            self._loaded[version] = loaded
            while len(self._loaded) > _MEMORY_CACHE:
                self._loaded.popitem(last=False)
            _collect_and_freeze()
        self._loaded.move_to_end(version)
        pyfunc, how = loaded
        level = (pyfunc.metadata.metadata or {}).get("forecast", {}).get("interval_level")
        return ServedModel(
            alias=alias,
            version=version,
            predict=how.predict,
            interval_level=float(level) if level is not None else None,
            contract=how.contract,
            runtime=how.runtime,
        )

    def _resolve(self, alias: str) -> str:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        s = self._settings
        name = s.registered_model_name
        client = MlflowClient(
            tracking_uri=s.mlflow_tracking_uri, registry_uri=s.mlflow_tracking_uri
        )
        try:
            return str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as e:
            # A missing alias is INVALID_PARAMETER_VALUE, not RESOURCE_DOES_NOT_EXIST.
            if e.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
                raise ReloadFailed(
                    f"alias '{alias}' of model '{name}' not found in the registry"
                ) from None
            raise ReloadFailed(_registry_failure(s.mlflow_tracking_uri, e)) from None
        except Exception as e:
            raise ReloadFailed(_registry_failure(s.mlflow_tracking_uri, e)) from None

    def _load_version(self, version: str) -> tuple[Any, Serving]:
        import mlflow

        s = self._settings
        name = s.registered_model_name
        # Versions are immutable, so one download per version; load_model("models:/...")
        # would download into a new temp folder on every call and never remove it.
        local = self._cache_dir / name / version
        try:
            if not (local / "MLmodel").exists():
                staging = Path(tempfile.mkdtemp(dir=self._cache_dir, prefix=".download-"))
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{name}/{version}",
                    dst_path=str(staging),
                    tracking_uri=s.mlflow_tracking_uri,
                )
                local.parent.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(local, ignore_errors=True)
                staging.rename(local)
            meta = mlflow.models.Model.load(str(local)).metadata or {}
            want = (s.seq_len_required, s.n_features_required)
            contract, set_aside = read_contract(meta)
            if set_aside:
                log.warning("version %s: %s", version, set_aside)
            mismatch = contract.mismatch(version, *want)
            if mismatch:
                raise ReloadFailed(mismatch)
            pyfunc = mlflow.pyfunc.load_model(str(local))
            # Windows reach the model as float64; versions whose signature names float32
            # (logged before the wrapper took any dtype) get float32 through their predict.
            how = serving(
                contract, pyfunc, lambda x: as_forecasts(pyfunc.predict(x.astype(np.float32)))
            )
            # The smoke window goes the way requests will: through the served path.
            forecasts = how.predict(np.ones((1, *want)))
            if forecasts.shape != (1, 3) or not np.isfinite(forecasts[:, 0]).all():
                raise ReloadFailed(
                    f"version {version} failed its smoke prediction: expected one finite "
                    f"price, got {forecasts!r}"[:300]
                )
        except ReloadFailed:
            raise
        except Exception as e:
            reason = _short(e, s.mlflow_tracking_uri)
            raise ReloadFailed(f"version {version} could not be loaded: {reason}") from None
        return pyfunc, how


def _collect_and_freeze() -> None:
    """After a load: free what it and any evicted version left, then freeze what lives on.

    TensorFlow, Keras and MLflow leave ~500k long-lived objects behind, and every full
    collection walks them all: ~250 ms with the event loop stalled, several times a minute under
    load (the p99). Freezing moves them out of the collector's sight; what requests allocate is
    still collected as usual. But frozen objects are never collected: without the unfreeze and
    the collection first, each load's garbage and every evicted version's reference cycles
    would stay in memory for good. One full collection per load is the price.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _registry_failure(uri: str, e: BaseException) -> str:
    # The client wraps transport errors in an MlflowException whose text repeats the whole
    # request; operators need the cause.
    text = str(e)
    for needle, cause in (
        ("Connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("Name or service not known", "unknown host"),
        ("Max retries exceeded", "no answer"),
    ):
        if needle in text:
            return f"registry unreachable at {redact_url(uri)}: {cause}"
    return f"registry error at {redact_url(uri)}: {_short(e, uri)}"


def _short(e: BaseException, uri: str, limit: int = 300) -> str:
    """The error's text, on one line, without the tracking URI's credentials."""
    text = " ".join(str(e).split()) or type(e).__name__
    text = scrub(text, uri, fallback=f"{type(e).__name__} (details withheld: they quote the URI)")
    return text if len(text) <= limit else text[: limit - 3] + "..."
