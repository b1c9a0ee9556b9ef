"""The per-window table every scoring entry point logs: its columns, its times, a close not known
yet kept null through Parquet (no MLflow, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.data.windows import make_windows
from model_wrapper.evaluation.windows_table import (
    WINDOW_COLUMNS,
    scored_windows_table,
    windows_table,
)
from model_wrapper.model.transforms import LOWER, POINT, UPPER

SEQ_LEN = 12


def test_the_columns_are_the_shared_ones_then_the_extra() -> None:
    assert WINDOW_COLUMNS == (
        "time", "target_time", "last_close", "pred_btc_close_next", "pred_interval_lower",
        "pred_interval_upper", "actual_close",
    )  # fmt: skip
    times = pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")
    forecast = pd.DataFrame({POINT: [1.0, 2.0, 3.0], LOWER: [0.5, 1.5, 2.5], UPPER: [2.0] * 3})
    table = windows_table(
        times, times + pd.Timedelta(days=1), [10.0, 11.0, 12.0], forecast, [11.0, 12.0, np.nan],
        {"fold": 4, "seed": [1, 1, 2]},
    )  # fmt: skip
    assert tuple(table.columns) == (*WINDOW_COLUMNS, "fold", "seed")
    assert table["fold"].tolist() == [4, 4, 4] and table["seed"].tolist() == [1, 1, 2]
    assert table[POINT].tolist() == [1.0, 2.0, 3.0] and table[LOWER].tolist() == [0.5, 1.5, 2.5]
    assert str(table["time"].dt.tz) == "UTC"


def test_a_version_without_interval_and_an_unknown_close_give_nan() -> None:
    naive = pd.date_range("2024-01-01", periods=2, freq="h")  # no zone: taken as UTC
    table = windows_table(naive, naive + pd.Timedelta(hours=1), [1.0, 2.0], {POINT: [1.5, 2.5]})
    assert table[[LOWER, UPPER, "actual_close"]].isna().all().all()
    assert table["time"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")


def test_misaligned_columns_and_clashing_extras_are_refused() -> None:
    times = pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")
    with pytest.raises(ValueError, match="one value per window"):
        windows_table(times, times, [1.0, 2.0, 3.0], {POINT: [1.0, 2.0]})
    with pytest.raises(ValueError, match="WINDOW_COLUMNS"):
        windows_table(times, times, [1.0, 2.0, 3.0], {POINT: [1.0] * 3}, extra={"time": 1})


def test_an_unknown_close_is_null_in_parquet(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")
    table = windows_table(
        times, [*times[1:], pd.NaT], [1.0, 2.0, 3.0], {POINT: [1.0] * 3}, [2.0, 3.0, np.nan]
    )
    path = tmp_path / "windows.parquet"
    table.to_parquet(path, index=False)
    stored = pq.read_table(path)
    assert stored.column("actual_close").null_count == 1
    assert stored.column("target_time").null_count == 1
    back = pd.read_parquet(path)
    assert tuple(back.columns) == WINDOW_COLUMNS
    assert back["actual_close"].isna().tolist() == [False, False, True]
    pd.testing.assert_series_equal(back["time"], table["time"], check_dtype=False)


def test_scored_windows_know_their_last_candle_and_the_close_that_came() -> None:
    candles = synthetic_candles(120, seed=4)
    windows = make_windows(candles, SEQ_LEN).select(slice(-30, None))
    rng = np.random.default_rng(0)
    forecast = {POINT: rng.normal(size=30), LOWER: rng.normal(size=30), UPPER: rng.normal(size=30)}
    table = scored_windows_table(windows, candles.index, forecast)
    assert len(table) == len(windows) == 30
    assert table["time"].is_monotonic_increasing and table["time"].is_unique
    close = candles["close"]
    # Each window ends on the candle before its target; both closes come from the candles.
    np.testing.assert_array_equal(table["target_time"], windows.times)
    assert table["time"].iloc[-1] == candles.index[-2]
    assert table["target_time"].iloc[-1] == candles.index[-1]
    np.testing.assert_allclose(table["last_close"], close[table["time"]].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        table["actual_close"], close[table["target_time"]].to_numpy(), rtol=1e-12
    )
    np.testing.assert_array_equal(table[POINT], forecast[POINT])
