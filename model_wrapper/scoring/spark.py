"""Batch scoring on Spark: candles -> every complete window -> the registered version through
`mlflow.pyfunc.spark_udf` -> Parquet, one row per window (evaluation.windows_table's columns).

The windows come from the version's own feature code (its candles door, logged with it), so the
scores are what that version answers through any other door. The model runs on Spark's
executors, as MLflow loads it there: an embedded `local[*]` Spark by default, or a cluster named
by its master URL.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from model_wrapper.data.sources import DataSource
from model_wrapper.errors import UsageError
from model_wrapper.evaluation.windows_table import WINDOW_COLUMNS, windows_table
from model_wrapper.model.forecaster import INPUT_PARAM
from model_wrapper.model.transforms import OUTPUT_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa
    from mlflow.pyfunc import PyFuncModel
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[*]"
SCORING = "scoring"  # the run_kind tag of a scoring run


@dataclass(frozen=True)
class Scored:
    output: str
    rows: int
    seconds: float  # from candles to the Parquet written
    run_id: str


def candle_windows_of(model: PyFuncModel, uri: str) -> Any:
    """The version's candles door, or a UsageError for a version logged before it had one."""
    params = model.metadata.get_params_schema()  # type: ignore[no-untyped-call]
    names = {spec.name for spec in params.params} if params is not None else set()
    wrapper = model.unwrap_python_model()  # type: ignore[no-untyped-call]
    windows_from_candles = getattr(wrapper, "windows_from_candles", None)
    if INPUT_PARAM not in names or windows_from_candles is None:
        raise UsageError(
            f"{uri} takes windows only: it was logged before versions carried their feature code "
            f"and took candles (its signature has no {INPUT_PARAM!r} param). Give it today's code "
            f"with `mlflow run . -e wrap -P source={uri}`, then score the new version"
        )
    return windows_from_candles


def window_rows(model: PyFuncModel, uri: str, candles: pd.DataFrame) -> pa.Table:
    """One row per complete window: the table's columns but the forecasts, and `X`, the window
    ([T, F] doubles) the udf reads. A window's target is the candle after its last; for the
    last window, not yet known, one candle spacing after it."""
    import pyarrow as pa

    times, windows = candle_windows_of(model, uri)(candles)
    index = pd.DatetimeIndex(candles.index)
    close = candles["close"].to_numpy(dtype=np.float64)
    last = index.get_indexer(times)  # each window's last candle
    known = last + 1 < len(index)
    following = np.where(known, last + 1, last)
    spacing = index[-1] - index[-2]
    table = windows_table(
        times,
        pd.DatetimeIndex(np.where(known, index[following], index[last] + spacing)),
        close[last],
        {},
        np.where(known, close[following], np.nan),
    ).drop(columns=list(OUTPUT_COLUMNS))
    _, seq_len, n_features = windows.shape
    x = pa.FixedSizeListArray.from_arrays(
        pa.FixedSizeListArray.from_arrays(pa.array(windows.reshape(-1)), n_features), seq_len
    )
    return pa.Table.from_pandas(table, preserve_index=False).append_column("X", x)


def spark_session(master: str) -> SparkSession:
    from pyspark.sql import SparkSession

    if master.startswith("local"):
        # Embedded Spark's Python workers run this interpreter (the one with MLflow and the
        # model's packages), not whatever `python3` is first on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(master)
        .appName("btc-lstm-score")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )


def score(
    model_uri: str,
    data: DataSource,
    output: str,
    spark_master: str = DEFAULT_MASTER,
    experiment: str | None = None,
) -> Scored:
    """Score every complete window of `data` with `model_uri` on Spark, write Parquet to
    `output` (a directory, replaced) and log a `run_kind=scoring` run."""
    import mlflow
    from pyspark.sql.functions import struct

    from model_wrapper.registry.uris import resolve_version

    started = time.perf_counter()
    # An alias is read once: the driver's windows and the executors' model are one version.
    name, version = resolve_version(model_uri)
    pinned = f"models:/{name}/{version}"
    model = mlflow.pyfunc.load_model(pinned)
    rows = window_rows(model, model_uri, data.candles)
    target = str(Path(output).resolve()) if "://" not in output else output
    spark = spark_session(spark_master)
    if experiment:
        mlflow.set_experiment(experiment)
    tags = {"run_kind": SCORING, "model_uri": model_uri, "model_version": version}
    with mlflow.start_run(tags=tags) as run:
        mlflow.set_tags(tags)  # also when `mlflow run` made the run
        params = {"model": model_uri, "output": target, "spark_master": spark_master}
        # `mlflow run` has logged its own parameters already (quoted as the shell got them).
        logged = mlflow.get_run(run.info.run_id).data.params
        mlflow.log_params({k: v for k, v in params.items() if k not in logged})
        data.log_input(SCORING)
        forecast = mlflow.pyfunc.spark_udf(spark, pinned, env_manager="local")
        windows = spark.createDataFrame(rows)
        scored = windows.withColumn("forecast", forecast(struct("X"))).select(
            *[f"forecast.{c}" if c in OUTPUT_COLUMNS else c for c in WINDOW_COLUMNS]
        )
        scored.write.mode("overwrite").parquet(target)
        written = spark.read.parquet(target).count()
        seconds = time.perf_counter() - started
        mlflow.log_metrics({"scored_windows": written, "seconds": seconds})
    return Scored(output=target, rows=written, seconds=seconds, run_id=run.info.run_id)
