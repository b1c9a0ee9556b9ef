"""The batch doors MLflow users go through, one window per row: `mlflow.pyfunc.spark_udf` on an
embedded Spark (`local[2]`), `mlflow.models.evaluate` on a registered version's URI, the `score`
entry point through `mlflow run`, and the candles door on a machine holding only mlflow, numpy
and pandas (a fresh venv), each against the in-process pyfunc or the gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from gateway.client import GatewayClient
from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.evaluation.windows_table import WINDOW_COLUMNS
from model_wrapper.model.features import candle_windows
from model_wrapper.model.transforms import OUTPUT_COLUMNS, POINT
from tests.helpers import (
    MODEL_NAME,
    SEQ_LEN,
    LiveGateway,
    Registry,
    TrainedVersions,
    real_windows,
    relog_version,
    require_debian_tool,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

ROOT = Path(__file__).resolve().parents[2]
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
VENV_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
WINDOWS = real_windows(40, seed=321)
# 300 hourly candles: 269 complete windows, the last one's next close unknown.
CANDLES = synthetic_candles(300, seed=99).rename_axis("timestamp")


@pytest.fixture(scope="module")
def model(trained: TrainedVersions) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{trained.staging}")


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    require_debian_tool("java", "default-jre-headless")
    from pyspark.sql import SparkSession

    from model_wrapper.scoring.spark import spark_session

    session: SparkSession = spark_session("local[2]")
    try:
        yield session
    finally:
        session.stop()
        SparkSession._instantiatedSession = None  # type: ignore[attr-defined]


def window_frame(spark: SparkSession, windows: np.ndarray) -> DataFrame:
    """Spark rows of (time, X): X an array<array<double>> window, as a data scientist has them."""
    import pyarrow as pa

    n, t, f = windows.shape
    x = pa.FixedSizeListArray.from_arrays(
        pa.FixedSizeListArray.from_arrays(pa.array(windows.reshape(-1)), f), t
    )
    return spark.createDataFrame(pa.table({"time": pa.array(np.arange(n)), "X": x}))


def test_spark_udf_scores_one_window_per_row(
    spark: SparkSession, model: mlflow.pyfunc.PyFuncModel, trained: TrainedVersions
) -> None:
    from pyspark.sql.functions import struct

    rows = window_frame(spark, WINDOWS)
    assert rows.schema["X"].dataType.simpleString() == "array<array<double>>"
    udf = mlflow.pyfunc.spark_udf(
        spark, f"models:/{MODEL_NAME}/{trained.staging}", env_manager="local"
    )
    expected = model.predict(WINDOWS).to_numpy()
    # By name (a struct) and by position: both hand the model a column of windows.
    for call in (udf(struct("X")), udf("X")):
        got = rows.withColumn("f", call).select("time", "f.*").toPandas().sort_values("time")
        assert list(got.columns[1:]) == list(OUTPUT_COLUMNS)
        np.testing.assert_allclose(got[list(OUTPUT_COLUMNS)].to_numpy(), expected, rtol=1e-6)


def test_mlflow_evaluate_runs_on_the_registered_uri(
    model: mlflow.pyfunc.PyFuncModel, trained: TrainedVersions
) -> None:
    x = WINDOWS[:-1]
    target = WINDOWS[1:, -1, 3]  # the next window's last close: a stand-in for what came
    data = pd.DataFrame({"X": list(x), "target": target})
    with mlflow.start_run():
        result = mlflow.models.evaluate(
            f"models:/{MODEL_NAME}/{trained.staging}",
            data=data,
            targets="target",
            predictions=POINT,
            model_type="regressor",
        )
    forecast = model.predict(x)[POINT].to_numpy()
    assert result.metrics["example_count"] == len(x)
    np.testing.assert_allclose(
        result.metrics["mean_absolute_error"], np.abs(forecast - target).mean(), rtol=1e-6
    )
    np.testing.assert_allclose(
        result.metrics["root_mean_squared_error"],
        np.sqrt(((forecast - target) ** 2).mean()),
        rtol=1e-6,
    )


def test_the_score_entry_point_writes_one_row_per_window(
    registry: Registry,
    trained: TrainedVersions,
    model: mlflow.pyfunc.PyFuncModel,
    tmp_path: Path,
) -> None:
    require_debian_tool("java", "default-jre-headless")
    csv, output = tmp_path / "candles.csv", tmp_path / "scores.parquet"
    CANDLES.to_csv(csv)
    experiment = "btc-lstm-scoring"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT")}
    done = subprocess.run(
        [MLFLOW, "run", str(ROOT), "-e", "score", "--env-manager", "local",
         "--experiment-name", experiment,
         "-P", f"model=models:/{MODEL_NAME}@staging", "-P", f"data={csv}",
         "-P", f"output={output}", "-P", "spark_master=local[2]"],
        env=env | {"MLFLOW_TRACKING_URI": registry.uri, "PATH": VENV_PATH},
        cwd=ROOT, timeout=600, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    scores = pd.read_parquet(output)
    times, windows = candle_windows(CANDLES, SEQ_LEN)
    assert list(scores.columns) == list(WINDOW_COLUMNS)
    assert len(scores) == len(windows) == len(CANDLES) - SEQ_LEN - 20 + 1
    scores = scores.sort_values("time").reset_index(drop=True)
    assert list(pd.DatetimeIndex(scores["time"]).tz_localize(None)) == list(times.tz_localize(None))
    expected = model.predict(CANDLES, params={"input": "candles"})
    np.testing.assert_allclose(
        scores[list(OUTPUT_COLUMNS)].to_numpy(), expected.to_numpy(), rtol=1e-6
    )
    close = CANDLES["close"].to_numpy()
    np.testing.assert_allclose(scores["last_close"], close[SEQ_LEN + 19 :])
    np.testing.assert_allclose(scores["actual_close"][:-1], close[SEQ_LEN + 20 :])
    assert pd.isna(scores["actual_close"].iloc[-1])  # the close after the last candle: unknown
    spacing = CANDLES.index[-1] - CANDLES.index[-2]
    assert (pd.to_datetime(scores["target_time"]) - pd.to_datetime(scores["time"]) == spacing).all()
    client = MlflowClient()
    (run,) = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], "tags.run_kind = 'scoring'"
    )
    assert run.data.tags["model_version"] == trained.staging
    assert run.data.metrics["scored_windows"] == len(windows)
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.source and dataset.dataset.digest
    assert [t.value for t in dataset.tags if t.key == "mlflow.data.context"] == ["scoring"]


@pytest.fixture(scope="module")
def windows_only_version(
    registry: Registry, trained: TrainedVersions, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A version as they were logged before the candles door: a signature without params."""
    local = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{MODEL_NAME}/{trained.staging}", dst_path=str(tmp_path_factory.mktemp("old"))
        )
    )
    parts = local / "artifacts"
    name = "BTC_LSTM_windows_only"
    outputs = Schema([ColSpec("double", c) for c in OUTPUT_COLUMNS])
    version = relog_version(parts, ModelSignature(inputs=None, outputs=outputs), name)
    return f"models:/{name}/{version}"


def test_a_version_without_the_candles_door_is_refused_by_score_in_one_line(
    windows_only_version: str, tmp_path: Path
) -> None:
    csv = tmp_path / "candles.csv"
    CANDLES.to_csv(csv)
    done = subprocess.run(
        [sys.executable, "-m", "scripts.score", "--model", windows_only_version,
         "--data", str(csv), "--output", str(tmp_path / "out.parquet")],
        cwd=ROOT, timeout=300, capture_output=True, text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert line == (
        f"error: {windows_only_version} takes windows only: it was logged before versions "
        "carried their feature code and took candles (its signature has no 'input' param). "
        f"Give it today's code with `mlflow run . -e wrap -P source={windows_only_version}`, "
        "then score the new version"
    )
    assert not (tmp_path / "out.parquet").exists()


FRESH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import mlflow, pandas as pd
    candles = pd.read_csv(sys.argv[2], parse_dates=["timestamp"]).rename(
        columns={"timestamp": "time"})
    forecasts = mlflow.pyfunc.load_model(sys.argv[1]).predict(
        candles, params={"input": "candles"})
    print(json.dumps({"time": str(forecasts.index[-1]), **forecasts.iloc[-1].to_dict()}))
    """
)


def test_the_candles_door_needs_only_mlflow_numpy_and_pandas(
    registry: Registry, trained: TrainedVersions, live_gateway: LiveGateway, tmp_path: Path
) -> None:
    """A machine without this project: a venv of mlflow, numpy and pandas (uv, from PyPI or its
    cache), candles from a CSV, the version from the registry. Its last forecast is the
    gateway's answer for the same candles."""
    venv = tmp_path / "venv"
    uv = str(Path(sys.executable).with_name("uv"))
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    pins = [f"{p}=={installed_version(p)}" for p in ("mlflow", "numpy", "pandas")]
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *pins],
        check=True, timeout=600,
    )  # fmt: skip
    listed = subprocess.run(
        [uv, "pip", "list", "--python", str(venv / "bin" / "python")],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "tensorflow" not in listed and "btc-lstm-gateway" not in listed
    csv = tmp_path / "candles.csv"
    CANDLES.to_csv(csv)
    script = tmp_path / "forecast.py"
    script.write_text(FRESH_SCRIPT)
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(script), f"models:/{MODEL_NAME}/{trained.staging}",
         str(csv)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"MLFLOW_TRACKING_URI": registry.uri, "PATH": os.environ["PATH"],
             "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    with GatewayClient(live_gateway.url) as client:
        answer = client.predict(CANDLES)
    assert answer.model_version == trained.staging
    assert pd.Timestamp(fresh["time"]) == CANDLES.index[-1]
    np.testing.assert_allclose(fresh[POINT], answer.pred_btc_close_next, rtol=1e-6)
    assert answer.pred_interval is not None
    np.testing.assert_allclose(
        [fresh["pred_interval_lower"], fresh["pred_interval_upper"]],
        [answer.pred_interval.lower, answer.pred_interval.upper],
        rtol=1e-6,
    )
