"""Windows to the network's input and its outputs to prices: what the network saw in training
is exactly what it sees in serving (training scales with `scale_windows` too).

Columns are positions in features.FEATURE_NAMES.
"""

from __future__ import annotations

from typing import Any

import numpy as np

OPEN, HIGH, LOW, CLOSE, VOLUME = 0, 1, 2, 3, 4
SMA_7, SMA_21, EMA_12, EMA_26, MACD, MACD_SIGNAL = 9, 10, 11, 12, 13, 14
# Runs of adjacent columns, so that the transform works on blocks, in place.
PRICE_RUNS = (slice(OPEN, CLOSE + 1), slice(SMA_7, EMA_26 + 1))
PRICE_LEVELS = tuple(j for run in PRICE_RUNS for j in range(run.start, run.stop))
PRICE_DIFFS = slice(MACD, MACD_SIGNAL + 1)
POINT, LOWER, UPPER = "pred_btc_close_next", "pred_interval_lower", "pred_interval_upper"
OUTPUT_COLUMNS = (POINT, LOWER, UPPER)


def transform_windows(arr: np.ndarray) -> np.ndarray:
    """Make windows independent of the price level before standard scaling.

    Prices become log distances from the window's last close, MACD a fraction of it, and
    volume its log relative to the window's mean log volume; ratios, RSI and volatility
    are already level-free. So a network trained at 20k USD still reads a window at 70k.

    float64 [N, T, F] -> float64 [N, T, F], a view of memory laid out [T, F, N] (see
    `_transformed`).
    """
    return _transformed(arr).transpose(2, 0, 1)


def scale_windows(arr: np.ndarray, mean: Any, scale: Any) -> np.ndarray:
    """Checked float64 [N, T, F] windows -> the network's input, still float64: the level-free
    transform, then the standard scaling fitted in training (`mean`, `scale` per feature).

    The answer is a view of memory laid out [T, F, N], the order the NumPy forward pass reads
    (`astype` keeps it); its values are those of the plain [N, T, F] computation, bit for bit.
    """
    out = _transformed(arr)
    out -= np.asarray(mean, dtype=np.float64)[:, np.newaxis]
    out /= np.asarray(scale, dtype=np.float64)[:, np.newaxis]
    return out.transpose(2, 0, 1)


def _transformed(arr: np.ndarray) -> np.ndarray:
    """`transform_windows` as [T, F, N]: with windows on the last axis every feature is a
    contiguous run, where NumPy's loops over a few columns of [N, T, F] pay per row (~2x the
    time of the whole transform at N = 1,000)."""
    out = np.empty((arr.shape[1], arr.shape[2], arr.shape[0]))
    out[...] = arr.transpose(1, 2, 0)
    last_close = arr[:, -1, CLOSE]
    for run in (*PRICE_RUNS, PRICE_DIFFS):
        out[:, run] /= last_close
    for run in PRICE_RUNS:
        np.log(out[:, run], out=out[:, run])
    # Per window, as [N, T]: the mean sums in the same order as on the [N, T, F] layout.
    log_volume = np.log1p(arr[:, :, VOLUME])
    log_volume -= log_volume.mean(axis=1, keepdims=True)
    out[:, VOLUME] = log_volume.T
    return out


def forecast_prices(
    last_close: np.ndarray, outputs: np.ndarray, scaler: dict[str, Any], forecast: dict[str, Any]
) -> dict[str, np.ndarray]:
    """The network's scaled outputs [N, K] -> prices in USD, by OUTPUT_COLUMNS.

    With K = 3 the outputs are the 0.1/0.5/0.9 quantiles of the next log return. The point
    forecast is the median times `shrinkage` (0 is persistence, 1 the raw median), as far as
    validation found it earns; the interval is the outer quantiles moved apart by
    `interval_widen` (conformalized quantile regression, calibrated on validation; negative
    narrows). A network with one output (older recipes) gives the point forecast only.
    """
    log_return = outputs * float(scaler["target_scale"]) + float(scaler["target_mean"])
    shrinkage = float(forecast.get("shrinkage", 1.0))
    with np.errstate(over="ignore", invalid="ignore"):
        if log_return.shape[1] == 1:
            return {POINT: last_close * np.exp(shrinkage * log_return[:, 0])}
        low, mid, high = np.sort(log_return, axis=1).T
        widen = float(forecast["interval_widen"])
        return {
            POINT: last_close * np.exp(shrinkage * mid),
            LOWER: last_close * np.exp(np.minimum(low - widen, mid)),
            UPPER: last_close * np.exp(np.maximum(high + widen, mid)),
        }
