"""The pictures a person reads at a glance: forecasts against persistence, with the interval."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(rows: int, cols: int, **kwargs: Any) -> tuple[Figure, Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, **kwargs)
    # Closed at once: the caller logs it; pyplot must not keep every report alive.
    plt.close(fig)
    return fig, axes


def forecast_report(
    times: pd.DatetimeIndex,
    actual: np.ndarray,
    last_close: np.ndarray,
    point: np.ndarray,
    lower: np.ndarray | None,
    upper: np.ndarray | None,
    metrics: dict[str, float],
    title: str,
) -> Figure:
    """Three panels: the forecast beside persistence and the band; the monthly MAE ratio to
    persistence; the distribution of both forecasts' percentage errors."""
    fig, (top, middle, bottom) = _figure(
        3, 1, figsize=(11, 10), gridspec_kw={"height_ratios": [3, 2, 2]}
    )
    ratio, coverage = metrics["mae_ratio_to_persistence"], metrics.get("interval_coverage")
    fig.suptitle(
        f"{title}\n{len(actual)} windows {times[0]:%Y-%m-%d} .. {times[-1]:%Y-%m-%d}: MAE "
        f"{metrics['mae']:,.2f} USD = {ratio:.4f} x persistence (DM p = "
        f"{metrics['dm_pvalue_vs_persistence']:.3f})"
        + (f", 80% interval covers {coverage:.3f}" if coverage == coverage else ""),
        fontsize=10,
    )
    if lower is not None and upper is not None:
        top.fill_between(times, lower, upper, color="tab:orange", alpha=0.25, label="80% interval")
    top.plot(times, actual, color="black", linewidth=1, label="actual close")
    top.plot(times, last_close, color="tab:blue", linewidth=0.8, alpha=0.8, label="persistence")
    top.plot(times, point, color="tab:red", linewidth=0.8, label="forecast")
    top.set_ylabel("USD")
    top.legend(loc="upper left", fontsize=8)
    top.set_title("Next close: forecast, persistence (last close) and the interval", fontsize=9)

    frame = pd.DataFrame(
        {"model": np.abs(point - actual), "persistence": np.abs(last_close - actual)}, index=times
    )
    monthly = frame.groupby(frame.index.strftime("%Y-%m")).mean()
    monthly_ratio = monthly["model"] / monthly["persistence"]
    colors = ["tab:green" if r <= 1 else "tab:red" for r in monthly_ratio]
    middle.bar(monthly_ratio.index, monthly_ratio.to_numpy() - 1, bottom=1, color=colors)
    middle.axhline(1, color="black", linewidth=0.8)
    middle.set_ylabel("MAE / persistence MAE")
    middle.set_title("By month (below 1: better than persistence)", fontsize=9)
    middle.tick_params(axis="x", labelrotation=90, labelsize=7)

    bins = np.linspace(-8, 8, 81)
    bottom.hist(100 * (point - actual) / actual, bins=bins, alpha=0.6, label="forecast")
    bottom.hist(100 * (last_close - actual) / actual, bins=bins, alpha=0.6, label="persistence")
    bottom.set_xlabel("error, % of the actual close")
    bottom.set_ylabel("windows")
    bottom.legend(fontsize=8)
    bottom.set_title("Residuals", fontsize=9)
    fig.tight_layout()
    return fig


def backtest_report(table: pd.DataFrame, pooled: dict[str, float], title: str) -> Figure:
    """Per period: MAE ratio to persistence and interval coverage, one line per seed."""
    fig, (left, right) = _figure(1, 2, figsize=(12, 4))
    fig.suptitle(
        f"{title}: pooled MAE ratio {pooled['mae_ratio_to_persistence']:.4f}, coverage "
        f"{pooled['interval_coverage']:.3f} (EWMA-FHS {pooled['ewma_interval_coverage']:.3f}), "
        f"pinball vs EWMA-FHS "
        f"{pooled['interval_pinball_loss'] / pooled['ewma_interval_pinball_loss']:.3f}",
        fontsize=10,
    )
    for seed, rows in table.groupby("seed"):
        left.plot(
            rows["period_start"], rows["mae_ratio_to_persistence"], marker="o", label=f"seed {seed}"
        )
        right.plot(
            rows["period_start"], rows["interval_coverage"], marker="o", label=f"seed {seed}"
        )
    left.axhline(1, color="black", linewidth=0.8)
    left.set_title("MAE / persistence MAE per period", fontsize=9)
    right.axhline(0.8, color="black", linewidth=0.8)
    right.set_title("80% interval coverage per period", fontsize=9)
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def live_report(
    title: str,
    curves: list[tuple[str, pd.DatetimeIndex, np.ndarray, np.ndarray, np.ndarray | None]],
    level: float,
    rolling: int = 30,
) -> Figure:
    """The live picture. `curves`: (label, candle times, |forecast error|, |persistence error|,
    interval hits or None) per line drawn, e.g. a shadow version and the served version on the
    windows both forecast. Top: cumulative MAE over cumulative persistence MAE (below 1: ahead
    of persistence); bottom: interval coverage over the last `rolling` windows."""
    fig, (top, bottom) = _figure(2, 1, figsize=(11, 7), sharex=True)
    fig.suptitle(title, fontsize=10)
    for label, times, errors, persistence, hits in curves:
        ratio = np.cumsum(errors) / np.maximum(np.cumsum(persistence), 1e-12)
        top.plot(times, ratio, linewidth=1, label=f"{label}: {ratio[-1]:.4f} after {len(times)}")
        if hits is not None and len(hits):
            window = min(rolling, len(hits))
            covered = pd.Series(hits.astype(float), index=times).rolling(window).mean()
            bottom.plot(times, covered, linewidth=1, label=label)
    top.axhline(1, color="black", linewidth=0.8)
    top.set_ylabel("cumulative MAE / persistence")
    top.set_title("Cumulative MAE against persistence (below 1: ahead of it)", fontsize=9)
    top.legend(fontsize=8)
    bottom.axhline(level, color="black", linewidth=0.8)
    bottom.set_ylim(0, 1)
    bottom.set_ylabel(f"coverage, last {rolling}")
    bottom.set_title(f"{level:.0%} interval coverage over the last {rolling} windows", fontsize=9)
    bottom.tick_params(axis="x", labelrotation=45, labelsize=7)
    if bottom.lines:
        bottom.legend(fontsize=8)
    fig.tight_layout()
    return fig
