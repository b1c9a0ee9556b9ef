"""Log the repository's current wrapper around an already trained version: no training.

The new version keeps the source's network, scaler and metadata (forecast settings, data and
training period), so what was measured about the source still describes it. The run and the
version record where they came from, and the new version's outputs are compared with the
source's on the input example before any alias moves.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.models import Model

from model_wrapper.errors import UsageError
from model_wrapper.model.contract import check_windows
from model_wrapper.registry.aliases import move_alias
from model_wrapper.registry.publish import log_forecaster
from model_wrapper.registry.uris import resolve_version

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

# Version tags about the network and its data, which a new wrapper leaves true.
CARRIED_TAGS = ("data_source", "data_digest", "train_start", "train_end")
CARRIED_TAG_PREFIX = "holdout_"
# Outputs within this relative difference of the source's count as the same forecast.
SAME_OUTPUTS_RTOL = 1e-5


@dataclass(frozen=True)
class Rewrapped:
    name: str
    version: str
    run_id: str
    source_uri: str  # models:/NAME/N, resolved from the alias if one was given
    source_run_id: str | None
    max_abs_diff: float  # USD, over every output column on the input example
    same_outputs: bool
    alias_set: bool


def source_version(uri: str) -> ModelVersion:
    """The registered version behind models:/NAME/N or models:/NAME@alias."""
    name, version = resolve_version(uri)
    return MlflowClient().get_model_version(name, version)


def rewrap(
    source: str,
    registered_model_name: str | None = None,
    alias: str | None = None,
    experiment: str | None = None,
) -> Rewrapped:
    """Log pyfunc.py around the network, scaler and metadata of `source` and register it under
    the source's registered model (or `registered_model_name`); `alias` moves to it only if its
    outputs equal the source's."""
    import keras

    client = MlflowClient()
    src = source_version(source)
    source_uri = f"models:/{src.name}/{src.version}"
    name = registered_model_name or src.name
    source_run = client.get_run(src.run_id) if src.run_id else None
    if experiment:
        mlflow.set_experiment(experiment)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(source_uri, dst_path=tmp))
        parts = _artifacts(local, source_uri)
        metadata = json.loads(parts["metadata"].read_text())
        scaler = json.loads(parts["scaler"].read_text())
        example = _input_example(local, metadata)
        expected = _outputs(mlflow.pyfunc.load_model(str(local)), example)
        network = keras.saving.load_model(parts["keras_model"], compile=False)
        tags = {
            "run_kind": "wrap",
            "source_model_uri": source_uri,
            "source_run_id": src.run_id or "",
            "mlflow.note.content": (
                f"Wrapper re-logged around {source_uri} (trained in run {src.run_id}) without "
                "training: its network, scaler and metadata, and this repository's pyfunc.py. "
                "The source run's parameters and metrics are copied here under `source.`."
            ),
        }
        with mlflow.start_run(tags=tags) as run:
            mlflow.set_tags(tags)  # also when the run already existed (`mlflow run`)
            if source_run is not None:
                mlflow.log_params({f"source.{k}": v for k, v in source_run.data.params.items()})
                mlflow.log_metrics({f"source.{k}": v for k, v in source_run.data.metrics.items()})
            version = log_forecaster(
                network,
                scaler,
                list(metadata["feature_names"]),
                example,
                registered_model_name=name,
                alias=None,
                extra_metadata=metadata,
                tags={
                    **{k: v for k, v in src.tags.items() if _carried(k)},
                    "wrapped_from_version": str(src.version),
                    "wrapped_from_run_id": src.run_id or "",
                    "source_model_uri": source_uri,
                },
            )
            got = _outputs(mlflow.pyfunc.load_model(f"models:/{name}/{version}"), example)
            diff, same = _compare(got, expected)
            mlflow.log_metric("max_abs_diff_vs_source", diff)
    client.update_model_version(
        name,
        version,
        description=(
            f"Re-wrapped from {source_uri} (run {src.run_id}) with the current pyfunc.py, no "
            f"training: outputs on the input example differ from the source's by at most "
            f"{diff:.3g} USD. Source: {src.description or '(no description)'}"
        ),
    )
    if alias and same:
        move_alias(name, alias, version, moved_by="wrap")
    return Rewrapped(
        name=name,
        version=version,
        run_id=run.info.run_id,
        source_uri=source_uri,
        source_run_id=src.run_id,
        max_abs_diff=diff,
        same_outputs=same,
        alias_set=bool(alias) and same,
    )


def _carried(tag: str) -> bool:
    return tag in CARRIED_TAGS or tag.startswith(CARRIED_TAG_PREFIX)


def _artifacts(local: Path, uri: str) -> dict[str, Path]:
    """The source's network, scaler and metadata files, by their pyfunc artifact names."""
    flavor = Model.load(str(local / "MLmodel")).flavors.get("python_function", {})
    paths = {key: local / entry["path"] for key, entry in flavor.get("artifacts", {}).items()}
    missing = sorted({"keras_model", "scaler", "metadata"} - paths.keys())
    if missing:
        raise UsageError(f"{uri} is not a forecaster logged by this project: it has no {missing}")
    return paths


def _input_example(local: Path, metadata: dict[str, Any]) -> np.ndarray:
    """The source's input example as [1, T, F] float32 (a synthetic window if it has none)."""
    seq_len, n_features = int(metadata["seq_len"]), int(metadata["n_features"])
    example: Any = Model.load(str(local / "MLmodel")).load_input_example(str(local))
    if example is None:
        from model_wrapper.data.synthetic import synthetic_candles
        from model_wrapper.model.features import window_from_candles

        example = [window_from_candles(synthetic_candles(seq_len + 60, seed=0), seq_len)]
    windows = check_windows(example, seq_len, n_features, list(metadata["feature_names"]))
    return windows[:1].astype(np.float32)


def _outputs(pyfunc: Any, example: np.ndarray) -> dict[str, np.ndarray]:
    from model_wrapper.evaluation.evaluate import forecast_columns

    # float32 [N, T, F]: what every version's signature so far accepts.
    return forecast_columns(pyfunc.predict(example))


def _compare(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> tuple[float, bool]:
    """The largest absolute difference over the columns both answer, and whether they agree."""
    columns = sorted(got.keys() & expected.keys())
    if not columns:
        return float("inf"), False
    diff = max(float(np.max(np.abs(got[c] - expected[c]))) for c in columns)
    same = all(np.allclose(got[c], expected[c], rtol=SAME_OUTPUTS_RTOL, atol=0) for c in columns)
    return diff, same and got.keys() == expected.keys()
