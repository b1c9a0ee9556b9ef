"""Out-of-sample scoring of price forecasts: errors, persistence, Diebold–Mariano, intervals.

Pure numpy/scipy, no MLflow: `evidence.py` runs it on registered versions, `backtest.py` on the
recipe refitted period by period. Every function takes aligned arrays, one value per window.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

# RiskMetrics' daily decay: the EWMA-FHS baseline's volatility.
EWMA_LAMBDA = 0.94
# Standardised residuals the EWMA-FHS baseline needs before it trusts their quantiles; with
# fewer, it uses the normal quantiles.
FHS_MIN_RESIDUALS = 30
# Loss differences at most this fraction of the losses are a tie (diebold_mariano).
TIE_RELATIVE = 1e-9


def pinball(actual: np.ndarray, quantile: np.ndarray, q: float) -> np.ndarray:
    error = actual - quantile
    loss: np.ndarray = np.maximum(q * error, (q - 1.0) * error)
    return loss


def interval_pinball_loss(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float
) -> float:
    """Mean pinball loss (USD) of the interval's two bounds as the (1-level)/2 and (1+level)/2
    quantiles, averaged over both."""
    alpha = (1.0 - level) / 2
    both = pinball(actual, lower, alpha) + pinball(actual, upper, 1.0 - alpha)
    return float(np.mean(both) / 2)


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray) -> float:
    """Two-sided p-value that forecasts a and b have equal expected loss (1-step ahead).

    The mean loss difference over its Newey–West standard error (Bartlett kernel, lag
    floor(4 (n/100)^(2/9))), with Harvey, Leybourne and Newbold's small-sample correction and a
    Student-t with n-1 degrees of freedom. Losses that differ by no more than TIE_RELATIVE of
    their size are a tie (1.0): forecasts a hair apart (a version whose point forecast is
    persistence, to within rounding) would otherwise show "significant" differences of nothing.
    """
    a, b = np.asarray(loss_a, dtype=np.float64), np.asarray(loss_b, dtype=np.float64)
    d = a - b
    n = len(d)
    if n < 2:
        return math.nan
    if np.max(np.abs(d)) <= TIE_RELATIVE * np.mean(np.abs(a) + np.abs(b)) / 2:
        return 1.0
    centred = d - d.mean()
    lag = min(n - 1, math.floor(4 * (n / 100) ** (2 / 9)))
    variance = centred @ centred / n
    for k in range(1, lag + 1):
        variance += 2 * (1 - k / (lag + 1)) * (centred[k:] @ centred[:-k]) / n
    if not variance > 0:
        return 1.0 if np.allclose(d, d[0]) and abs(d[0]) < 1e-15 else 0.0
    statistic = d.mean() / math.sqrt(variance / n)
    h = 1
    statistic *= math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    return float(2 * stats.t.sf(abs(statistic), df=n - 1))


def ewma_fhs_interval(
    close: pd.Series, target_times: pd.DatetimeIndex, level: float, lam: float = EWMA_LAMBDA
) -> tuple[np.ndarray, np.ndarray]:
    """The EWMA filtered-historical-simulation interval for each target candle's close.

    Volatility is an EWMA of squared log returns (RiskMetrics); the interval's quantiles are
    those of all past returns divided by the volatility forecast made before each, scaled by
    the forecast for the target. Each interval uses only closes up to the candle before its
    target.
    """
    values = close.to_numpy(dtype=np.float64)
    returns = np.diff(np.log(values))  # returns[i] = log(close[i+1] / close[i])
    variance = np.empty(len(returns) + 1)
    variance[0] = np.var(returns[:FHS_MIN_RESIDUALS]) if len(returns) > 1 else 1e-4
    for i, r in enumerate(returns):
        variance[i + 1] = lam * variance[i] + (1 - lam) * r * r
    sigma = np.sqrt(variance)  # sigma[i]: forecast for returns[i], from returns before it
    residuals = returns / sigma[:-1]
    alpha = (1.0 - level) / 2
    positions = close.index.get_indexer(target_times)
    if (positions < 1).any():
        raise ValueError("every target candle needs the close before it in `close`")
    lower, upper = np.empty(len(positions)), np.empty(len(positions))
    normal = stats.norm.ppf([alpha, 1 - alpha])
    for k, j in enumerate(positions):
        # The target return is returns[j-1]; residuals up to returns[j-2] are known.
        known = residuals[FHS_MIN_RESIDUALS : j - 1]
        q = np.quantile(known, [alpha, 1 - alpha]) if len(known) >= FHS_MIN_RESIDUALS else normal
        lower[k], upper[k] = values[j - 1] * np.exp(q * sigma[j - 1])
    return lower, upper


def score_forecasts(
    actual: np.ndarray,
    last_close: np.ndarray,
    point: np.ndarray,
    lower: np.ndarray | None,
    upper: np.ndarray | None,
    level: float,
    ewma: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """The evaluation metrics, by the names the evaluation run logs."""
    err, persistence_err = point - actual, last_close - actual
    ape = np.abs(err) / actual
    moved = np.sign(actual - last_close)
    mae, persistence_mae = float(np.mean(np.abs(err))), float(np.mean(np.abs(persistence_err)))
    metrics = {
        "n_windows": float(len(actual)),
        "mae": mae,
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mape": float(100 * np.mean(ape)),
        # A forecast of no change counts as a miss, unless nothing moved either.
        "directional_accuracy": float(np.mean(np.sign(point - last_close) == moved)),
        "persistence_mae": persistence_mae,
        "persistence_rmse": float(np.sqrt(np.mean(persistence_err**2))),
        "mae_ratio_to_persistence": mae / persistence_mae if persistence_mae else math.nan,
        "dm_pvalue_vs_persistence": diebold_mariano(ape, np.abs(persistence_err) / actual),
    }
    if lower is not None and upper is not None:
        metrics |= {
            "interval_coverage": float(np.mean((lower <= actual) & (actual <= upper))),
            "interval_mean_width_pct": float(100 * np.mean((upper - lower) / last_close)),
            "interval_pinball_loss": interval_pinball_loss(actual, lower, upper, level),
        }
    else:
        metrics |= dict.fromkeys(
            ("interval_coverage", "interval_mean_width_pct", "interval_pinball_loss"), math.nan
        )
    if ewma is not None:
        metrics |= {
            "ewma_interval_coverage": float(np.mean((ewma[0] <= actual) & (actual <= ewma[1]))),
            "ewma_interval_pinball_loss": interval_pinball_loss(actual, *ewma, level),
        }
    return metrics


def compare_to_baseline(
    actual: np.ndarray,
    point: np.ndarray,
    baseline_point: np.ndarray,
    baseline_interval: tuple[np.ndarray, np.ndarray] | None,
    level: float,
) -> dict[str, Any]:
    baseline_mae = float(np.mean(np.abs(baseline_point - actual)))
    return {
        "baseline_mae": baseline_mae,
        "mae_ratio_to_baseline": float(np.mean(np.abs(point - actual))) / baseline_mae
        if baseline_mae
        else math.nan,
        "dm_pvalue_vs_baseline": diebold_mariano(
            np.abs(point - actual) / actual, np.abs(baseline_point - actual) / actual
        ),
        "baseline_interval_pinball_loss": interval_pinball_loss(actual, *baseline_interval, level)
        if baseline_interval is not None
        else math.nan,
    }
