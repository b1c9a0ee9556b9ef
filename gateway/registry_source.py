"""Where served versions come from: the MLflow registry.

Resolve an alias to a version, download the version once into a cache folder (versions are
immutable), read the window contract it declares and check it against the configured shape
(gateway/contract.py), load its pyfunc and run one smoke prediction.
Every call blocks (MLflow, TensorFlow): the holder (gateway/served_model.py) runs them on its
own threads, never on the event loop.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from gateway.aliases import shown
from gateway.contract import WindowContract, read_contract, serving
from gateway.errors import ReloadFailed
from gateway.redact import redact_url, scrub
from gateway.served_model import ServedModel
from gateway.settings import Settings

log = logging.getLogger("gateway.registry_source")

# The pyfunc's output columns (model_wrapper/model/transforms.py): versions logged before the
# interval return a plain [N] array of forecasts instead.
POINT, LOWER, UPPER = "pred_btc_close_next", "pred_interval_lower", "pred_interval_upper"


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


class RegistrySource:
    """The MLflow side of serving; `cache_dir` (created and removed by the caller) holds the
    downloaded versions."""

    def __init__(self, settings: Settings, cache_dir: Path) -> None:
        self._settings = settings
        self._cache_dir = cache_dir
        # The served role and the shadow load on threads of their own: one download at a time,
        # so that two loads of one version never rename folders under each other.
        self._downloading = threading.Lock()

    def resolve(self, alias: str) -> str:
        """The version `alias` points at now, or ReloadFailed. Only a real alias of the model
        resolves: MLflow would also read `latest` (settings and /reload refuse it) as the
        newest version, which no alias names."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        s = self._settings
        name = s.registered_model_name
        client = MlflowClient(
            tracking_uri=s.mlflow_tracking_uri, registry_uri=s.mlflow_tracking_uri
        )
        try:
            found = client.get_model_version_by_alias(name, alias)
        except MlflowException as e:
            # A missing alias is INVALID_PARAMETER_VALUE, not RESOURCE_DOES_NOT_EXIST.
            if e.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
                raise ReloadFailed(
                    f"alias {shown(alias)} of model '{name}' not found in the registry"
                ) from None
            raise ReloadFailed(_registry_failure(s.mlflow_tracking_uri, e)) from None
        except Exception as e:
            raise ReloadFailed(_registry_failure(s.mlflow_tracking_uri, e)) from None
        if alias not in (found.aliases or ()):
            raise ReloadFailed(f"alias {shown(alias)} of model '{name}' not found in the registry")
        return str(found.version)

    def load(self, alias: str, version: str) -> ServedModel:
        """`version`, checked and smoke-tested, ready to serve as `alias`; or ReloadFailed."""
        try:
            local = self._download(version)
            contract = self._read_contract(version, local)
            pyfunc = self._load_pyfunc(local)
            model = served(alias, version, pyfunc, contract, _input_example(local))
            self._smoke_test(model)
        except ReloadFailed:
            raise
        except Exception as e:
            reason = _short(e, self._settings.mlflow_tracking_uri)
            raise ReloadFailed(f"version {version} could not be loaded: {reason}") from None
        return model

    def _download(self, version: str) -> Path:
        # One download per version: load_model("models:/...") would download into a new temp
        # folder on every call and never remove it.
        local = self._cache_dir / self._settings.registered_model_name / version
        with self._downloading:
            if not (local / "MLmodel").exists():
                self._fetch_into(local, version)
        return local

    def _fetch_into(self, local: Path, version: str) -> None:
        import mlflow

        s = self._settings
        staging = Path(tempfile.mkdtemp(dir=self._cache_dir, prefix=".download-"))
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{s.registered_model_name}/{version}",
            dst_path=str(staging),
            tracking_uri=s.mlflow_tracking_uri,
        )
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(local, ignore_errors=True)
        # Renamed into place whole: a download cut short never looks like a version.
        staging.rename(local)

    def _read_contract(self, version: str, local: Path) -> WindowContract:
        import mlflow

        s = self._settings
        meta = mlflow.models.Model.load(str(local)).metadata or {}
        contract, set_aside = read_contract(meta)
        if set_aside:
            log.warning("version %s: %s", version, set_aside)
        mismatch = contract.mismatch(version, s.seq_len_required, s.n_features_required)
        if mismatch:
            raise ReloadFailed(mismatch)
        return contract

    def _load_pyfunc(self, local: Path) -> Any:
        import mlflow

        return mlflow.pyfunc.load_model(str(local))

    def _smoke_test(self, model: ServedModel) -> None:
        s = self._settings
        # The smoke window goes the way requests will: through the served path.
        forecasts = model.predict(np.ones((1, s.seq_len_required, s.n_features_required)))
        if forecasts.shape != (1, 3) or not np.isfinite(forecasts[:, 0]).all():
            raise ReloadFailed(
                f"version {model.version} failed its smoke prediction: expected one finite "
                f"price, got {forecasts!r}"[:300]
            )


def served(
    alias: str,
    version: str,
    pyfunc: Any,
    contract: WindowContract,
    example: tuple[tuple[float, ...], ...] | None = None,
) -> ServedModel:
    """A loaded pyfunc as the gateway serves it (`example`: a window it logged, for /docs)."""
    level = (pyfunc.metadata.metadata or {}).get("forecast", {}).get("interval_level")
    # Windows reach the model as float64; versions whose signature names float32 (logged before
    # the wrapper took any dtype) get float32 through their predict.
    how = serving(contract, pyfunc, lambda x: as_forecasts(pyfunc.predict(x.astype(np.float32))))
    return ServedModel(
        alias=alias,
        version=version,
        predict=how.predict,
        interval_level=float(level) if level is not None else None,
        contract=how.contract,
        runtime=how.runtime,
        example=example,
    )


def _input_example(local: Path) -> tuple[tuple[float, ...], ...] | None:
    """The first window of the version's logged input example ([1, T, F] or [T, F]), if any."""
    import mlflow

    try:
        example = mlflow.models.Model.load(str(local)).load_input_example(str(local))
        window = np.asarray(example, dtype=np.float64)
    except Exception:  # no example, or one that is not numbers: the document's own serves
        return None
    window = window[0] if window.ndim == 3 else window
    if window.ndim != 2 or not np.isfinite(window).all():
        return None
    return tuple(tuple(row) for row in window.tolist())


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
