"""The registered model, end to end against a real `mlflow server`: registry load, the
wrapper's checks, promotion. (`mlflow run . -e train`: tests/e2e/test_tracking.py; `mlflow models
serve` and every input form: tests/e2e/test_input_contract.py.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.model.contract import input_contract
from model_wrapper.model.features import FEATURE_NAMES, window_from_candles
from model_wrapper.model.transforms import LOWER, OUTPUT_COLUMNS, POINT, UPPER
from model_wrapper.registry.aliases import move_alias, previous_holder
from tests.helpers import MODEL_NAME, SEQ_LEN, Outcome, TrainedVersions


def windows(n: int, seed: int = 100) -> np.ndarray:
    """n distinct real windows from synthetic candles."""
    candles = synthetic_candles(60 + n, seed=seed)
    return np.asarray(
        [window_from_candles(candles.iloc[: 40 + i], SEQ_LEN) for i in range(n)], np.float32
    )


@pytest.fixture(scope="module")
def staging_model(trained: TrainedVersions) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@staging")


def test_registered_model_records_its_shape(
    staging_model: mlflow.pyfunc.PyFuncModel, trained: TrainedVersions
) -> None:
    meta = staging_model.metadata
    assert meta.metadata["seq_len"] == SEQ_LEN
    assert meta.metadata["n_features"] == len(FEATURE_NAMES)
    assert meta.metadata["feature_names"] == list(FEATURE_NAMES)
    # No input schema: the wrapper's own check is the contract (tests/e2e/test_input_contract.py),
    # and the version declares it, as the wrapper defines it, for servers to enforce.
    assert meta.get_input_schema() is None
    assert meta.metadata["input_contract"] == input_contract(SEQ_LEN, 18, FEATURE_NAMES)
    version = MlflowClient().get_model_version(MODEL_NAME, trained.staging)
    assert version.tags["seq_len"] == str(SEQ_LEN)
    assert "staging" in version.aliases


def test_registered_model_equals_network_plus_scaler(
    staging_model: mlflow.pyfunc.PyFuncModel, tmp_path: Path
) -> None:
    import keras

    from model_wrapper.model.transforms import CLOSE, scale_windows

    local = Path(
        mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}@staging", dst_path=str(tmp_path))
    )
    artifacts = local / "artifacts"
    # The version serves from the NumPy weights logged beside the Keras file: the same answers.
    assert (artifacts / "numpy_weights.npz").is_file()
    assert staging_model.unwrap_python_model().backend == "numpy"
    network = keras.saving.load_model(artifacts / "network.keras", compile=False)
    scaler = json.loads((artifacts / "scaler.json").read_text())
    x = windows(8)
    forecast = staging_model.metadata.metadata["forecast"]
    scaled = scale_windows(x.astype(np.float64), scaler["mean"], scaler["scale"])
    out = np.asarray(network(scaled.astype(np.float32), training=False), dtype=np.float64)
    low, mid, high = np.sort(out * scaler["target_scale"] + scaler["target_mean"], axis=1).T
    last = x[:, -1, CLOSE]
    got = staging_model.predict(x)
    assert list(got.columns) == list(OUTPUT_COLUMNS) and len(got) == 8
    expected = last * np.exp(forecast["shrinkage"] * mid)
    np.testing.assert_allclose(got[POINT], expected, rtol=1e-4)
    widen = forecast["interval_widen"]
    np.testing.assert_allclose(got[LOWER], last * np.exp(np.minimum(low - widen, mid)), rtol=1e-4)
    np.testing.assert_allclose(got[UPPER], last * np.exp(np.maximum(high + widen, mid)), rtol=1e-4)
    assert (got[LOWER] < got[UPPER]).all()
    # A real forecast: near the last close.
    assert np.all(np.abs(got[POINT] / last - 1) < 0.2)
    assert len(set(np.round(got[UPPER], 6))) == 8


def test_wrapper_takes_one_window_or_many(staging_model: mlflow.pyfunc.PyFuncModel) -> None:
    forecaster = staging_model.unwrap_python_model()
    x = windows(3)
    many = forecaster.predict(None, x)
    one = forecaster.predict(None, x[1])
    assert one.shape == (1, 3)
    np.testing.assert_allclose(one.iloc[0], many.iloc[1], rtol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x: x[:, :5], "each window must be 12 time steps x 18 features, got 5 x 18"),
        (lambda x: x[:, :, :17], "each window must be 12 time steps x 18 features, got 12 x 17"),
        (lambda x: x[0, 0], "X must have shape [12, 18] or [N, 12, 18], got shape [18]"),
        (lambda x: np.where(np.arange(18) == 6, np.nan, x), "X must be finite numbers: found nan"),
        (lambda x: np.where(np.arange(18) == 6, np.inf, x), "X must be finite numbers: found inf"),
        (lambda x: np.where(np.arange(18) == 3, -5.0, x), "prices must be positive: found -5.0"),
        (lambda x: np.where(np.arange(18) == 0, 0.0, x), "feature 'open'"),
        (lambda x: np.where(np.arange(18) == 4, -1.0, x), "volume must not be negative"),
        (lambda x: x[:0], "X holds no window"),
    ],
)
def test_wrapper_refuses_bad_windows_with_a_clear_message(
    staging_model: mlflow.pyfunc.PyFuncModel, change: object, message: str
) -> None:
    forecaster = staging_model.unwrap_python_model()
    bad = change(windows(2).astype(np.float64))  # type: ignore[operator]
    with pytest.raises(MlflowException) as info:
        forecaster.predict(None, bad)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert message in info.value.message


def test_an_alias_move_records_the_previous_holder_and_promote_needs_evidence(
    trained: TrainedVersions, run_cli: Callable[..., Outcome]
) -> None:
    client = MlflowClient()
    assert move_alias(MODEL_NAME, "canary", trained.staging, moved_by="test") is None
    assert client.get_model_version_by_alias(MODEL_NAME, "canary").version == trained.staging
    assert move_alias(MODEL_NAME, "canary", trained.production, "test") == trained.staging
    assert client.get_model_version_by_alias(MODEL_NAME, "canary").version == trained.production
    assert previous_holder(MODEL_NAME, "canary", trained.production) == trained.staging
    assert (
        "by test"
        in client.get_model_version(MODEL_NAME, trained.production).tags["alias_moved.canary"]
    )
    # The CLI moves it only on evidence; without data, only when forced, and says so.
    command = ["scripts.promote", "--from-alias", "staging", "--to-alias", "canary"]
    refused = run_cli(*command)
    assert refused.returncode == 2
    assert "promote needs --data" in refused.stderr and "Traceback" not in refused.stderr
    assert client.get_model_version_by_alias(MODEL_NAME, "canary").version == trained.production
    forced = run_cli(*command, "--force", "true")
    assert forced.returncode == 0, forced.stderr
    version = client.get_model_version_by_alias(MODEL_NAME, "canary")
    assert version.version == trained.staging
    assert version.tags["promotion_forced"] == "true"
    assert "FORCED onto @canary" in version.description


def test_any_batch_size_equals_one_window_at_a_time(
    staging_model: mlflow.pyfunc.PyFuncModel,
) -> None:
    """Batches are padded to compiled sizes and split past 64: neither may change an answer."""
    forecaster = staging_model.unwrap_python_model()
    assert forecaster.backend == "numpy"  # what this project trains runs in NumPy
    x = windows(70)
    one_by_one = np.concatenate([forecaster.predict(None, w).to_numpy() for w in x])
    for n in (2, 5, 64, 70):
        got = forecaster.predict(None, x[:n]).to_numpy()
        np.testing.assert_allclose(got, one_by_one[:n], rtol=1e-5)


def test_the_unchecked_fast_path_answers_as_predict_does(
    staging_model: mlflow.pyfunc.PyFuncModel,
) -> None:
    """What a server that enforced the contract itself calls: [N, 3] floats, no DataFrame."""
    forecaster = staging_model.unwrap_python_model()
    x = windows(70).astype(np.float64)
    fast = forecaster.forecast_unchecked(x)
    assert fast.shape == (70, 3) and fast.dtype == np.float64
    np.testing.assert_array_equal(fast, forecaster.predict(None, x).to_numpy())
    # A window the network cannot read (finite, but it scales beyond float32) gets a NaN row
    # there, where predict refuses it: it never fails the other windows of a batch.
    unreadable = x[:3].copy()
    unreadable[1, :, 5] = 3e38  # return_1: no rule bounds it below float32's limit
    rows = forecaster.forecast_unchecked(unreadable)
    assert np.isnan(rows[1]).all()
    np.testing.assert_array_equal(rows[[0, 2]], fast[[0, 2]])
    with pytest.raises(MlflowException, match="beyond what the model can read"):
        forecaster.predict(None, unreadable)


def test_a_version_whose_point_forecast_is_persistence_says_so(trained: TrainedVersions) -> None:
    """A fit whose validation chose shrinkage 0 forecasts the last close: its tag and
    description say so; one that kept some of the network's median does not claim it."""
    client = MlflowClient()
    said = {}
    for version in (trained.staging, trained.production):
        mv = client.get_model_version(MODEL_NAME, version)
        model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}")
        shrinkage = model.metadata.metadata["forecast"]["shrinkage"]
        persistence = mv.tags.get("point_forecast") == "persistence"
        assert persistence == (shrinkage == 0), (version, shrinkage)
        assert mv.description.startswith("Its point forecast is persistence") == persistence
        said[version] = persistence
        if persistence:
            x = windows(5)
            np.testing.assert_allclose(
                model.predict(x)["pred_btc_close_next"], x[:, -1, 3], rtol=1e-12
            )
    # The session's two versions are one of each (seeded data, one epoch).
    assert sorted(said.values()) == [False, True]
