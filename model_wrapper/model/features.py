"""OHLCV candles -> the 18 features per time step, the windows they make, and the window
clients send.

Pure numpy/pandas: no TensorFlow here, so clients can build windows cheaply. This file travels
inside every version (the candles door of its pyfunc), and the gateway's client loads it by path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURE_NAMES: tuple[str, ...] = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "return_1",  # close_t / close_{t-1} - 1
    "log_return_1",  # log(close_t / close_{t-1})
    "range_hl",  # (high - low) / close
    "body_oc",  # (close - open) / open
    "sma_7",
    "sma_21",
    "ema_12",
    "ema_26",
    "macd",  # ema_12 - ema_26
    "macd_signal",  # EMA 9 of macd
    "rsi_14",  # Wilder's RSI, 0..100
    "bb_width_20",  # (upper - lower) / middle of the 20-step, 2-sigma Bollinger bands
    "volatility_7",  # sample std of the last 7 log returns
)
N_FEATURES = len(FEATURE_NAMES)
DEFAULT_SEQ_LEN = 12
# sma_21 needs 21 closes; every other feature needs fewer.
WARMUP = 20
CANDLE_COLUMNS = ("open", "high", "low", "close", "volume")


class CandlesRefused(ValueError):
    """Candles the features cannot be computed from (a column missing, too few rows)."""


def compute_features(candles: pd.DataFrame) -> pd.DataFrame:
    """One row of FEATURE_NAMES per candle, the first WARMUP rows dropped (incomplete)."""
    missing = [c for c in CANDLE_COLUMNS if c not in candles.columns]
    if missing:
        raise CandlesRefused(f"candles lack columns {missing}; expected {list(CANDLE_COLUMNS)}")
    try:
        o, h, lo, c, v = (candles[name].astype("float64") for name in CANDLE_COLUMNS)
    except (TypeError, ValueError):
        raise CandlesRefused(f"candle columns {list(CANDLE_COLUMNS)} must be numbers") from None
    log_ret = np.log(c / c.shift(1))
    ema_12 = c.ewm(span=12, adjust=False).mean()
    ema_26 = c.ewm(span=26, adjust=False).mean()
    macd = ema_12 - ema_26
    delta = c.diff()
    # Wilder's smoothing is an EMA with alpha = 1/14.
    avg_gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    avg_loss = (-delta).clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    # 100 - 100 / (1 + gain/loss), written so that a run with no losses gives 100 and a flat
    # run (no gains, no losses) gives the neutral 50 instead of a division by zero.
    rsi = (100.0 * avg_gain / (avg_gain + avg_loss)).fillna(50.0)
    sma_20 = c.rolling(20).mean()
    # Bollinger bands use the population standard deviation.
    bb_width = 4.0 * c.rolling(20).std(ddof=0) / sma_20
    features = pd.DataFrame(
        {
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": v,
            "return_1": c / c.shift(1) - 1.0,
            "log_return_1": log_ret,
            "range_hl": (h - lo) / c,
            "body_oc": (c - o) / o,
            "sma_7": c.rolling(7).mean(),
            "sma_21": c.rolling(21).mean(),
            "ema_12": ema_12,
            "ema_26": ema_26,
            "macd": macd,
            "macd_signal": macd.ewm(span=9, adjust=False).mean(),
            "rsi_14": rsi,
            "bb_width_20": bb_width,
            "volatility_7": log_ret.rolling(7).std(ddof=1),
        },
        index=candles.index,
    )
    return features.iloc[WARMUP:]


def min_candles(seq_len: int) -> int:
    return seq_len + WARMUP


def candle_times(candles: pd.DataFrame) -> pd.Index:
    """The candles' times: a `time` column, else the index; refused unless strictly ascending."""
    times = pd.Index(candles["time"]) if "time" in candles.columns else candles.index
    if times.dtype == object or pd.api.types.is_string_dtype(times.dtype):
        try:
            times = pd.DatetimeIndex(pd.to_datetime(times, utc=True, format="ISO8601"))
        except (TypeError, ValueError):
            raise CandlesRefused(
                f"candle times must be timestamps (ISO 8601 text), got e.g. {times[0]!r}"
            ) from None
    if len(times) > 1:
        later = times[1:] > times[:-1]
        if not later.all():
            i = int(np.argmin(later)) + 1
            raise CandlesRefused(
                f"candle times must ascend strictly: row {i} ({times[i]}) follows {times[i - 1]}"
            )
    return times.rename("time")


def candle_windows(candles: pd.DataFrame, seq_len: int) -> tuple[pd.Index, np.ndarray]:
    """Every complete window in the candles: [N, seq_len, F] float64 features, and each window's
    last candle time (the window forecasts the close after it). Needs `min_candles(seq_len)`."""
    if len(candles) < min_candles(seq_len):
        raise CandlesRefused(
            f"need at least {min_candles(seq_len)} candles for a window of {seq_len} steps, "
            f"got {len(candles)}"
        )
    times = candle_times(candles)
    feats = compute_features(candles).to_numpy(dtype="float64")
    windows = np.lib.stride_tricks.sliding_window_view(feats, seq_len, axis=0)
    # sliding_window_view puts the window axis last: [N, F, T] -> [N, T, F], copied once.
    return times[WARMUP + seq_len - 1 :], np.ascontiguousarray(windows.transpose(0, 2, 1))


def window_from_candles(candles: pd.DataFrame, seq_len: int = DEFAULT_SEQ_LEN) -> list[list[float]]:
    """The `X` for /predict from the latest candles: seq_len rows of FEATURE_NAMES.

    EMA-based features look at the whole history given, so pass all the candles you have
    (at least `min_candles(seq_len)`); the answer forecasts the close after the last candle.
    """
    if len(candles) < min_candles(seq_len):
        raise CandlesRefused(
            f"need at least {min_candles(seq_len)} candles for a window of {seq_len} steps, "
            f"got {len(candles)}"
        )
    window = compute_features(candles).to_numpy(dtype="float64")[-seq_len:]
    return [[float(v) for v in row] for row in window]
