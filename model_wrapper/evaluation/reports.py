"""The pictures a person reads at a glance: forecasts against persistence, with the interval.

Every report is built by a function that returns the matplotlib Figure (the runs log it); each
panel's Axes carries a label (`Axes.get_label()`: "full_period", "recent", "returns",
"by_month", "residuals", "by_period_mae", "by_period_coverage", "cumulative", "coverage") so
that tests can read what was drawn. Bars per month or period are labelled with their window
count; one with fewer than FEW_WINDOWS is grey and hatched (the panels: panels.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from model_wrapper.evaluation.panels import (
    Forecasts,
    figure,
    full_period_panel,
    monthly_panel,
    period_bars,
    recent_panel,
    residuals_panel,
    returns_panel,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def forecast_report(
    times: pd.DatetimeIndex,
    actual: np.ndarray,
    last_close: np.ndarray,
    point: np.ndarray,
    lower: np.ndarray | None,
    upper: np.ndarray | None,
    metrics: dict[str, float],
    title: str,
    level: float = 0.8,
) -> Figure:
    """The whole period (forecast, persistence, band); the last RECENT_DAYS with the band; the
    forecast against the actual next log return; the MAE ratio to persistence by month; both
    forecasts' percentage errors."""
    f = Forecasts(times, actual, last_close, point, lower, upper, level)
    fig = figure(figsize=(13, 13))
    grid = fig.add_gridspec(3, 2, height_ratios=[3, 3, 2], width_ratios=[2, 1])
    ratio, coverage = metrics["mae_ratio_to_persistence"], metrics.get("interval_coverage")
    fig.suptitle(
        f"{title}\n{len(actual)} windows {times[0]:%Y-%m-%d} .. {times[-1]:%Y-%m-%d}: MAE "
        f"{metrics['mae']:,.2f} USD = {ratio:.4f} x persistence (DM p = "
        f"{metrics['dm_pvalue_vs_persistence']:.3f})"
        + (
            f", {level:.0%} interval covers {coverage:.3f}"
            if coverage is not None and coverage == coverage
            else ""
        ),
        fontsize=10,
    )
    full_period_panel(fig.add_subplot(grid[0, :], label="full_period"), f)
    recent_panel(fig.add_subplot(grid[1, 0], label="recent"), f)
    returns_panel(fig.add_subplot(grid[1, 1], label="returns"), f)
    monthly_panel(fig.add_subplot(grid[2, 0], label="by_month"), f)
    residuals_panel(fig.add_subplot(grid[2, 1], label="residuals"), f)
    return fig


def backtest_report(
    table: pd.DataFrame,
    pooled: dict[str, float],
    title: str,
    forecasts: Forecasts | None = None,
    forecasts_title: str = "",
) -> Figure:
    """Per period (bars: the mean over seeds, dots: each seed; labelled with the period's
    windows): the MAE ratio to persistence and the interval coverage. With `forecasts` (the
    pooled forecasts of one seed), the whole period, the last RECENT_DAYS and the returns."""
    from matplotlib.lines import Line2D

    fig = figure(figsize=(13, 13 if forecasts is not None else 5))
    rows = 3 if forecasts is not None else 1
    grid = fig.add_gridspec(
        rows, 2, height_ratios=[2, 3, 3][:rows], width_ratios=[1, 1] if rows == 1 else [2, 1]
    )
    fig.suptitle(
        f"{title}: pooled MAE ratio {pooled['mae_ratio_to_persistence']:.4f}, coverage "
        f"{pooled['interval_coverage']:.3f} (EWMA-FHS {pooled['ewma_interval_coverage']:.3f}), "
        f"pinball vs EWMA-FHS "
        f"{pooled['interval_pinball_loss'] / pooled['ewma_interval_pinball_loss']:.3f}",
        fontsize=10,
    )
    periods = table.assign(period=pd.DatetimeIndex(table["period_start"]).strftime("%Y-%m-%d"))
    by_period = periods.groupby("period", sort=True)
    labels = list(by_period.groups)
    counts = by_period["n_windows"].first().to_numpy()
    level = forecasts.level if forecasts is not None else 0.8
    for key, name, reference, compare, what in (
        ("mae_ratio_to_persistence", "by_period_mae", 1.0, True, "MAE / persistence MAE"),
        ("interval_coverage", "by_period_coverage", level, False, f"{level:.0%} interval coverage"),
    ):
        ax = fig.add_subplot(grid[0, 0 if name == "by_period_mae" else 1], label=name)
        several = table["seed"].nunique() > 1
        dots = Line2D([], [], color="black", marker=".", linestyle="", label="each seed")
        means = by_period[key].mean().to_numpy()
        period_bars(ax, labels, means, counts, reference, compare, (dots,) if several else ())
        if several:
            # Beside the bar's middle, where its count is written; one column per seed.
            seeds = list(dict.fromkeys(table["seed"]))
            offset = dict(zip(seeds, np.linspace(0.12, 0.32, len(seeds)), strict=True))
            where = {label: i for i, label in enumerate(labels)}
            x = [
                where[p] + offset[s]
                for p, s in zip(periods["period"], periods["seed"], strict=True)
            ]
            ax.plot(x, periods[key], "k.", markersize=4, label="each seed", zorder=3)
        ax.set_title(f"{what} per period (at each bar's end: its windows)", fontsize=9)
    if forecasts is not None:
        full = fig.add_subplot(grid[1, :], label="full_period")
        full_period_panel(full, forecasts)
        if forecasts_title:
            full.set_title(forecasts_title, fontsize=9)
        recent_panel(fig.add_subplot(grid[2, 0], label="recent"), forecasts)
        returns_panel(fig.add_subplot(grid[2, 1], label="returns"), forecasts)
    return fig


def live_report(
    title: str,
    curves: list[tuple[str, pd.DatetimeIndex, np.ndarray, np.ndarray, np.ndarray | None]],
    level: float,
    rolling: int = 30,
    forecasts: Forecasts | None = None,
) -> Figure:
    """The live picture. `curves`: (label, candle times, |forecast error|, |persistence error|,
    interval hits or None) per line drawn, e.g. a shadow version and the served version on the
    windows both forecast. Top: cumulative MAE over cumulative persistence MAE (below 1: ahead
    of persistence); then interval coverage over the last `rolling` windows; with `forecasts`
    (the version's own), the last RECENT_DAYS with the band and the returns."""
    fig = figure(figsize=(13, 12 if forecasts is not None else 7))
    rows = 3 if forecasts is not None else 2
    grid = fig.add_gridspec(rows, 2, height_ratios=[2, 2, 3][:rows], width_ratios=[2, 1])
    top = fig.add_subplot(grid[0, :], label="cumulative")
    bottom = fig.add_subplot(grid[1, :], label="coverage", sharex=top)
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
    if forecasts is not None and len(forecasts.times):
        recent_panel(fig.add_subplot(grid[2, 0], label="recent"), forecasts)
        returns_panel(fig.add_subplot(grid[2, 1], label="returns"), forecasts)
    return fig
