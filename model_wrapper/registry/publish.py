"""Log the wrapper as an MLflow model, register it, and move registry aliases.

Aliases only: MLflow's stages are deprecated.
"""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from model_wrapper.defaults import DEFAULT_MODEL_NAME
from model_wrapper.model.contract import input_contract
from model_wrapper.model.forecaster import INPUT_KINDS, INPUT_PARAM
from model_wrapper.model.runtime import NUMPY_WEIGHTS, verified_numpy_weights
from model_wrapper.model.transforms import OUTPUT_COLUMNS
from model_wrapper.registry.aliases import move_alias

if TYPE_CHECKING:
    import keras

# The models-from-code file MLflow runs to load a version, and the package it loads (logged
# with every version as `code_paths`: the version carries its own code, features included).
MODEL_PACKAGE = Path(__file__).resolve().parents[1] / "model"
PYFUNC_FILE = MODEL_PACKAGE / "pyfunc.py"
# What the model needs wherever it is served; pinned to what trained it.
REQUIREMENTS = ("mlflow", "tensorflow", "keras", "numpy")


def pip_requirements() -> list[str]:
    return [f"{name}=={installed_version(name)}" for name in REQUIREMENTS]


def signature() -> ModelSignature:
    """Outputs only. An input schema would be MLflow's check before the wrapper's, and no schema
    holds the contract: a TensorSpec has one shape ([T, F] or [N, T, F], not both) and one dtype
    (PyFuncModel.predict refuses float64 against float32 and the reverse), and its refusals
    repeat the whole input. The wrapper's check_windows is the one gate for every door; the
    window's shape, feature names and value rules are in the model's metadata
    (`input_contract`), and its shape in the input example. Its one param, `input`, says
    whether the input is windows (the default) or candles.
    """
    return ModelSignature(
        inputs=None,
        outputs=Schema([ColSpec("double", name) for name in OUTPUT_COLUMNS]),
        # MLflow passes only the params a signature declares (and drops others with a warning).
        params=ParamSchema([ParamSpec(INPUT_PARAM, "string", INPUT_KINDS[0])]),
    )


def log_forecaster(
    network: keras.Model,
    scaler: dict[str, Any],
    feature_names: list[str],
    input_example: np.ndarray,
    registered_model_name: str = DEFAULT_MODEL_NAME,
    alias: str | None = None,
    extra_metadata: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    description: str | None = None,
    moved_by: str = "train",
) -> str:
    """Log the pyfunc in the active run, register it, point `alias` (if named) at it; returns
    the version. No alias moves unless the caller names one: aliases move on evidence.

    `scaler` holds `mean` and `scale` per feature (after `transform_windows`) and
    `target_mean`/`target_scale` of the log-return target. `extra_metadata` (the forecast
    settings, the data and its period) goes into metadata.json and the MLmodel metadata;
    `tags` onto the version.
    """
    _, seq_len, n_features = input_example.shape
    metadata = {
        "seq_len": int(seq_len),
        "n_features": int(n_features),
        "feature_names": list(feature_names),
        "target": "next close in USD (network: scaled quantiles of the next log return)",
        **(extra_metadata or {}),
        # What the wrapper being logged enforces (after extra_metadata: a rewrapped version's
        # older declaration must not stand in for this code's).
        "input_contract": input_contract(seq_len, n_features, feature_names),
    }
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = {
            "keras_model": str(Path(tmp, "network.keras")),
            "scaler": str(Path(tmp, "scaler.json")),
            "metadata": str(Path(tmp, "metadata.json")),
        }
        network.save(artifacts["keras_model"])
        # Where NumPy runs this network exactly, servers load it without TensorFlow.
        weights = verified_numpy_weights(network, seq_len, n_features)
        if weights is not None:
            artifacts[NUMPY_WEIGHTS] = str(Path(tmp, "numpy_weights.npz"))
            np.savez(artifacts[NUMPY_WEIGHTS], **weights)
        Path(artifacts["scaler"]).write_text(json.dumps(scaler))
        Path(artifacts["metadata"]).write_text(json.dumps(metadata))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_FILE),
            code_paths=[str(MODEL_PACKAGE)],
            artifacts=artifacts,
            signature=signature(),
            input_example=input_example.astype(np.float32),
            pip_requirements=pip_requirements(),
            metadata=metadata,
            registered_model_name=registered_model_name,
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    # Tags make the shape visible in the registry UI without downloading the model.
    client.set_model_version_tag(registered_model_name, version, "seq_len", str(seq_len))
    client.set_model_version_tag(registered_model_name, version, "n_features", str(n_features))
    for key, value in (tags or {}).items():
        client.set_model_version_tag(registered_model_name, version, key, value)
    if description:
        client.update_model_version(registered_model_name, version, description=description)
    if alias:
        move_alias(registered_model_name, alias, version, moved_by=moved_by)
    return version
