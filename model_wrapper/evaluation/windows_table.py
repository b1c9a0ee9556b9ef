"""The per-window table: one row per forecast window, in the columns every entry point that
scores windows logs (`evaluate` and `backtest` here, `score` too), so that tables from different
runs can be stacked, joined and plotted without renaming.

`time` is the window's last candle, `target_time` the candle it forecasts; `actual_close` is
NaN (null in Parquet) where that candle's close is not known yet.
"""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model_wrapper.data.windows import Windows
from model_wrapper.model.transforms import LOWER, POINT, UPPER

WINDOW_COLUMNS = ("time", "target_time", "last_close", POINT, LOWER, UPPER, "actual_close")
# Where the runs put the table, relative to the run's artifact root.
WINDOWS_ARTIFACT = "predictions/windows.parquet"


def windows_table(
    time: Any,
    target_time: Any,
    last_close: Any,
    forecast: Mapping[str, Any] | pd.DataFrame,
    actual_close: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The table, in WINDOW_COLUMNS order and then `extra`'s columns, one row per window in the
    order given. `forecast` is a pyfunc's answer (a DataFrame) or its columns; a version that
    returns no interval gives NaN bounds. `actual_close` None means none is known yet."""
    n = len(last_close)
    columns: dict[str, Any] = {
        "time": _utc(time),
        "target_time": _utc(target_time),
        "last_close": np.asarray(last_close, dtype=np.float64),
    }
    for name in (POINT, LOWER, UPPER):
        values = forecast[name] if name in forecast else np.full(n, np.nan)
        columns[name] = np.asarray(values, dtype=np.float64).reshape(-1)
    columns["actual_close"] = (
        np.full(n, np.nan) if actual_close is None else np.asarray(actual_close, dtype=np.float64)
    )
    for name, values in (extra or {}).items():
        if name in columns:
            raise ValueError(f"extra column {name!r} is one of WINDOW_COLUMNS")
        columns[name] = np.broadcast_to(np.asarray(values), (n,)).copy()
    lengths = {name: len(values) for name, values in columns.items()}
    if set(lengths.values()) != {n}:
        raise ValueError(f"every column needs one value per window ({n}): {lengths}")
    return pd.DataFrame(columns)


def scored_windows_table(
    windows: Windows,
    candle_times: pd.DatetimeIndex,
    forecast: Mapping[str, Any] | pd.DataFrame,
    extra: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The table of windows whose next close is known (make_windows' windows), with `time`
    found in `candle_times`, the index of the candles they were made from."""
    positions = candle_times.get_indexer(windows.times)
    if (positions < 1).any():
        raise ValueError("every target candle needs the candle before it in `candle_times`")
    return windows_table(
        candle_times[positions - 1],
        windows.times,
        windows.last_close,
        forecast,
        windows.next_close,
        extra,
    )


def log_windows_table(table: pd.DataFrame, artifact: str = WINDOWS_ARTIFACT) -> None:
    """Logs `table` as Parquet into the active MLflow run at `artifact`."""
    import mlflow

    folder, name = posixpath.split(artifact)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        table.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=folder or None)


def _utc(values: Any) -> pd.DatetimeIndex:
    times = pd.DatetimeIndex(values)
    return times.tz_localize("UTC") if times.tz is None else times.tz_convert("UTC")
