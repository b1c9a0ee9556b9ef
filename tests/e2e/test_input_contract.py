"""One input contract through every pyfunc door: the wrapper called directly, PyFuncModel.predict
and a real `mlflow models serve`. The same windows give the same answer in every accepted form
(candles included); a bad shape gets one short message wherever it is refused. Spark,
`mlflow.models.evaluate` and the `score` entry point are in tests/e2e/test_batch_doors.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.model.contract import InputRefused, input_contract
from model_wrapper.model.features import (
    FEATURE_NAMES,
    WARMUP,
    candle_windows,
    window_from_candles,
)
from model_wrapper.model.transforms import OUTPUT_COLUMNS
from tests.helpers import (
    MODEL_NAME,
    SEQ_LEN,
    Registry,
    TrainedVersions,
    free_port,
    real_windows,
    stop_process,
    wait_for,
)

# `mlflow models serve` starts `uvicorn` by name: the venv's bin must be on PATH.
VENV_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
SHORT = 600  # characters: a refusal states what was expected and what came, not the input

X = real_windows(2)  # float64 [N, T, F]
XI = np.round(X).astype(np.int64)  # the same windows as integers (prices stay positive)
SHUFFLED = list(reversed(FEATURE_NAMES))


def frame(window: np.ndarray, columns: list[str] = SHUFFLED) -> pd.DataFrame:
    """One window as a DataFrame named by feature, its columns in another order."""
    return pd.DataFrame(window, columns=list(FEATURE_NAMES))[columns]


# form -> (value, the same numbers as float64 [N, T, F] in feature order)
FORMS: dict[str, tuple[Any, np.ndarray]] = {
    "ndarray float64 [N,T,F]": (X, X),
    "ndarray float32 [N,T,F]": (X.astype(np.float32), X.astype(np.float32).astype(np.float64)),
    "ndarray int64 [N,T,F]": (XI, XI.astype(np.float64)),
    "ndarray float64 [T,F]": (X[0], X[:1]),
    "ndarray float32 [T,F]": (X[0].astype(np.float32), X[:1].astype(np.float32).astype(np.float64)),
    "ndarray int64 [T,F]": (XI[0], XI[:1].astype(np.float64)),
    "nested lists float [N,T,F]": (X.tolist(), X),
    "nested lists float [T,F]": (X[0].tolist(), X[:1]),
    "nested lists int [T,F]": (XI[0].tolist(), XI[:1].astype(np.float64)),
    "DataFrame [T,F], named columns in another order": (frame(X[0]), X[:1]),
    # One window per row, as spark_udf and mlflow.models.evaluate hand rows over.
    "DataFrame, a window per row in X (arrays)": (pd.DataFrame({"X": list(X)}), X),
    "DataFrame, a window per row in X (lists), other columns": (
        pd.DataFrame({"time": ["2024-01-01", "2024-01-02"], "X": X.tolist()}),
        X,
    ),
    "DataFrame, a window per row in its only column": (pd.DataFrame({"0": list(X)}), X),
    "{'X': [N,T,F]}": ({"X": X}, X),
}
# What `mlflow models serve` users send; JSON numbers are float64 or int.
BODIES: dict[str, tuple[dict[str, Any], np.ndarray]] = {
    "inputs float [N,T,F]": ({"inputs": X.tolist()}, X),
    "inputs float [T,F]": ({"inputs": X[0].tolist()}, X[:1]),
    "inputs int [N,T,F]": ({"inputs": XI.tolist()}, XI.astype(np.float64)),
    "inputs int [T,F]": ({"inputs": XI[0].tolist()}, XI[:1].astype(np.float64)),
    "instances float [T,F]": ({"instances": X[0].tolist()}, X[:1]),
    "dataframe_split, named columns in another order": (
        {"dataframe_split": frame(X[0]).to_dict(orient="split")},
        X[:1],
    ),
    "dataframe_split, a window per row in X": (
        {"dataframe_split": {"columns": ["X"], "data": [[w] for w in X.tolist()]}},
        X,
    ),
    "inputs {X: [N,T,F]}": ({"inputs": {"X": X.tolist()}}, X),
}
# form -> (value, what the refusal must say)
BAD: dict[str, tuple[Any, str]] = {
    "[N,T,F-1]": (X[:, :, :17], "each window must be 12 time steps x 18 features, got 12 x 17"),
    "[T-7,F]": (X[0, :5], "each window must be 12 time steps x 18 features, got 5 x 18"),
    "[500,T,F-1]": (
        np.ones((500, SEQ_LEN, 17)),
        "each window must be 12 time steps x 18 features, got 12 x 17",
    ),
    "[F]": (X[0, 0], "X must have shape [12, 18] or [N, 12, 18], got shape [18]"),
    "text": ([["a"] * 18] * SEQ_LEN, "could not read it as a numeric array"),
    "no window": (np.zeros((0, SEQ_LEN, 18)), "X holds no window"),
    # The contract's value rules, at every door as well.
    "non-positive price": (
        np.where(np.arange(18) == 3, 0.0, X),
        "prices must be positive: found 0.0 at window 0, step 0, feature 'close'",
    ),
    "negative volume": (
        np.where(np.arange(18) == 4, -2.0, X),
        "volume must not be negative: found -2.0 at window 0, step 0, feature 'volume'",
    ),
    "beyond float32": (
        np.where(np.arange(18) == 7, 1e300, X),
        "|value| must be at most 3.40282e+38 (float32): found 1e+300 at window 0, step 0",
    ),
}


def expected_for(model: mlflow.pyfunc.PyFuncModel, canonical: np.ndarray) -> pd.DataFrame:
    return model.unwrap_python_model().predict(None, canonical)


def assert_same(got: Any, expected: pd.DataFrame, form: str) -> None:
    got = pd.DataFrame(got)
    assert list(got.columns) == list(OUTPUT_COLUMNS), form
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-6, err_msg=form)


@pytest.fixture(scope="module")
def model(trained: TrainedVersions) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{trained.staging}")


@pytest.fixture(scope="module")
def served(
    registry: Registry, trained: TrainedVersions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One `mlflow models serve` for every form."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [
        str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m",
        f"models:/{MODEL_NAME}/{trained.staging}", "--env-manager", "local",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.uri, "PATH": VENV_PATH}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, log_path.read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    try:
        wait_for(up, 120, "mlflow models serve")
        yield url
    finally:
        stop_process(process, 30)


def invoke(url: str, body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{url}/invocations", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_the_logged_signature_leaves_the_input_to_the_wrapper(
    model: mlflow.pyfunc.PyFuncModel,
) -> None:
    meta = model.metadata
    assert meta.get_input_schema() is None
    assert meta.get_output_schema().input_names() == list(OUTPUT_COLUMNS)
    # The shape, the names and the value rules still travel with the model.
    assert (meta.metadata["seq_len"], meta.metadata["n_features"]) == (SEQ_LEN, 18)
    assert meta.metadata["feature_names"] == list(FEATURE_NAMES)
    # One param, with windows as its default: what the input is.
    params = meta.get_params_schema()
    assert [(p.name, p.default) for p in params.params] == [("input", "windows")]
    declared = meta.metadata["input_contract"]
    assert declared == input_contract(SEQ_LEN, 18, FEATURE_NAMES)
    assert declared["shape"] == [-1, SEQ_LEN, 18] and declared["dtype"] == "float32"


@pytest.mark.parametrize("form", FORMS)
def test_every_form_gives_the_same_answer_directly_and_through_pyfunc(
    model: mlflow.pyfunc.PyFuncModel, form: str
) -> None:
    value, canonical = FORMS[form]
    expected = expected_for(model, canonical)
    assert_same(model.unwrap_python_model().predict(None, value), expected, f"direct {form}")
    assert_same(model.predict(value), expected, f"pyfunc {form}")


def test_every_form_gives_the_same_answer_through_mlflow_models_serve(
    model: mlflow.pyfunc.PyFuncModel, served: str
) -> None:
    for form, (body, canonical) in BODIES.items():
        status, text = invoke(served, body)
        assert status == 200, f"{form}: {text[:300]}"
        assert_same(json.loads(text)["predictions"], expected_for(model, canonical), form)


@pytest.mark.parametrize("form", BAD)
def test_a_bad_shape_gets_one_short_message_directly_and_through_pyfunc(
    model: mlflow.pyfunc.PyFuncModel, form: str
) -> None:
    value, message = BAD[form]
    for door, call in (
        ("direct", lambda: model.unwrap_python_model().predict(None, value)),
        ("pyfunc", lambda: model.predict(value)),
    ):
        with pytest.raises(MlflowException) as info:
            call()
        # The logged model loads its own copy of pyfunc.py: the class is the same by name.
        assert type(info.value).__name__ == InputRefused.__name__, door
        assert info.value.error_code == "INVALID_PARAMETER_VALUE"
        assert message in info.value.message and len(str(info.value)) < SHORT, door


def test_a_bad_shape_gets_one_short_message_through_mlflow_models_serve(served: str) -> None:
    for form, (value, message) in BAD.items():
        status, text = invoke(served, {"inputs": np.asarray(value).tolist()})
        assert status == 400, form
        assert len(text) < SHORT, f"{form}: {len(text)} characters"
        assert message in json.loads(text)["message"], form


def test_a_frame_with_other_columns_is_refused_naming_them(
    model: mlflow.pyfunc.PyFuncModel, served: str
) -> None:
    bad = frame(X[0]).rename(columns={"close": "Close"})
    with pytest.raises(MlflowException) as info:
        model.predict(bad)
    assert info.value.message == (
        "a DataFrame window needs the 18 feature names as columns: missing ['close']; "
        "unknown ['Close']"
    )
    status, text = invoke(served, {"dataframe_split": bad.to_dict(orient="split")})
    assert status == 400 and json.loads(text)["message"] == info.value.message


def test_the_scoring_server_cannot_rewrite_a_refusal() -> None:
    refusal = InputRefused("X holds no window: expected at least one")
    # What mlflow.pyfunc.scoring_server does to any MlflowException from predict.
    refusal.message = f"Failed to predict data '{'1.0, ' * 1000}'. \nError: {refusal.message}"
    assert refusal.message == "X holds no window: expected at least one"


def test_a_row_that_is_not_a_window_is_refused_naming_it(model: mlflow.pyfunc.PyFuncModel) -> None:
    for rows, message in (
        ([X[0], X[1][:5]], "row 1 of X must be a window of 12 time steps x 18 features, got 5"),
        ([X[0], None], "row 1 of X must be a window of 12 time steps x 18 features, got a"),
        ([[["a"] * 18] * SEQ_LEN], "row 0 of X must be a window of numbers, 12 x 18"),
        ([np.where(np.arange(18) == 4, -1.0, X[0])], "volume must not be negative"),
    ):
        with pytest.raises(MlflowException) as info:
            model.predict(pd.DataFrame({"X": rows}))
        assert message in info.value.message and len(str(info.value)) < SHORT


CANDLES = synthetic_candles(SEQ_LEN + WARMUP + 40, seed=7).rename_axis("time").reset_index()


def test_candles_give_a_forecast_per_complete_window(model: mlflow.pyfunc.PyFuncModel) -> None:
    got = model.predict(CANDLES, params={"input": "candles"})
    times, windows = candle_windows(CANDLES, SEQ_LEN)
    assert len(got) == len(CANDLES) - SEQ_LEN - WARMUP + 1 == 41
    assert list(got.index) == list(CANDLES["time"].iloc[SEQ_LEN + WARMUP - 1 :]) == list(times)
    assert_same(got, expected_for(model, windows), "candles")
    # The last row is the window the gateway's client cuts from the same candles (float32
    # products round a little differently in a batch of 41 and a batch of one).
    last = model.predict(np.asarray(window_from_candles(CANDLES, SEQ_LEN)))
    np.testing.assert_allclose(got.iloc[-1:].to_numpy(), last.to_numpy(), rtol=1e-6)


def test_bad_candles_get_one_clear_refusal(model: mlflow.pyfunc.PyFuncModel) -> None:
    shuffled = CANDLES.iloc[::-1]
    for value, params, message in (
        (CANDLES.iloc[:20], {"input": "candles"}, "need at least 32 candles for a window of 12"),
        (CANDLES.drop(columns="volume"), {"input": "candles"}, "candles lack columns ['volume']"),
        (shuffled, {"input": "candles"}, "candle times must ascend strictly: row 1"),
        (CANDLES.assign(time="yesterday"), {"input": "candles"}, "candle times must be timestamps"),
        (CANDLES, {"input": "prices"}, "params 'input' must be one of ['windows', 'candles']"),
        (CANDLES, None, "candles go in with params={'input': 'candles'}"),
        (X, {"input": "candles"}, "candles must be a DataFrame with columns time, open"),
    ):
        with pytest.raises(MlflowException) as info:
            model.predict(value, params=params)
        assert message in info.value.message, message
        assert len(str(info.value)) < SHORT


def test_candles_through_mlflow_models_serve(model: mlflow.pyfunc.PyFuncModel, served: str) -> None:
    split = CANDLES.assign(time=CANDLES["time"].map(lambda t: t.isoformat())).to_dict(
        orient="split", index=False
    )
    status, text = invoke(served, {"dataframe_split": split, "params": {"input": "candles"}})
    assert status == 200, text[:300]
    expected = model.predict(CANDLES, params={"input": "candles"})
    assert_same(json.loads(text)["predictions"], expected, "candles through serve")
