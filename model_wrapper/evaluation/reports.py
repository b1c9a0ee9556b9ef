"""The pictures a person reads at a glance: forecasts against persistence, with the interval.

Every report is built by a function that returns the matplotlib Figure (the runs log it); each
panel's Axes carries a label (`Axes.get_label()`: "full_period", "recent", "returns",
"by_month", "residuals", "by_period_mae", "by_period_coverage", "cumulative", "coverage") so
that tests can read what was drawn. Bars per month or period are labelled with their window
count; one with fewer than FEW_WINDOWS is grey and hatched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# A month or period scored on fewer windows than this is drawn as such: its ratio is noise.
FEW_WINDOWS = 20
RECENT_DAYS = 90
FEW_LABEL = f"fewer than {FEW_WINDOWS} windows"
_FEW_STYLE = {"color": "lightgrey", "hatch": "//", "edgecolor": "dimgrey"}


@dataclass(frozen=True)
class Forecasts:
    """Aligned per-window arrays: the target candle's time, its close, the window's last close,
    the point forecast and the interval (None for versions without one)."""

    times: pd.DatetimeIndex
    actual: np.ndarray
    last_close: np.ndarray
    point: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None
    level: float = 0.8


def _figure(**kwargs: Any) -> Figure:
    # A bare Figure: no pyplot, so no global figure list to leak into and no display backend.
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


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
    fig = _figure(figsize=(13, 13))
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


def full_period_panel(ax: Axes, f: Forecasts) -> None:
    if f.lower is not None and f.upper is not None:
        ax.fill_between(
            f.times, f.lower, f.upper, color="tab:orange", alpha=0.25,
            label=f"{f.level:.0%} interval",
        )  # fmt: skip
    ax.plot(f.times, f.actual, color="black", linewidth=1, label="actual close")
    ax.plot(f.times, f.last_close, color="tab:blue", linewidth=0.8, alpha=0.8, label="persistence")
    ax.plot(f.times, f.point, color="tab:red", linewidth=0.8, label="forecast")
    ax.set_ylabel("USD")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Next close: forecast, persistence (last close) and the interval", fontsize=9)


def recent_panel(ax: Axes, f: Forecasts, days: int = RECENT_DAYS) -> None:
    """The last `days` before the last target: few enough points to see the forecast. No
    persistence line: it is the actual close one candle earlier."""
    keep = f.times > f.times[-1] - pd.Timedelta(days=days)
    times = f.times[keep]
    if f.lower is not None and f.upper is not None:
        ax.fill_between(
            times, f.lower[keep], f.upper[keep], color="tab:orange", alpha=0.3,
            label=f"{f.level:.0%} interval",
        )  # fmt: skip
    ax.plot(times, f.actual[keep], color="black", linewidth=1, marker="o", markersize=2.5,
            label="actual close")  # fmt: skip
    ax.plot(times, f.point[keep], color="tab:red", linewidth=0.9, marker=".", markersize=4,
            label="forecast")  # fmt: skip
    ax.set_ylabel("USD")
    ax.legend(loc="upper left", fontsize=8)
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    ax.set_title(
        f"Last {days} days ({int(keep.sum())} windows): the forecast, the close that came and "
        "the interval",
        fontsize=9,
    )


def returns_panel(ax: Axes, f: Forecasts) -> None:
    """Forecast against actual next log return, in %: persistence forecasts 0 (the vertical
    line); a perfect forecast lies on the diagonal."""
    known = np.isfinite(f.actual)
    forecast = 100 * np.log(f.point[known] / f.last_close[known])
    actual = 100 * np.log(f.actual[known] / f.last_close[known])
    ax.scatter(forecast, actual, s=6, alpha=0.5, color="tab:red", label="windows")
    ax.axvline(0, color="tab:blue", linewidth=1, label="persistence (forecast 0)")
    ax.axline((0, 0), slope=1, color="black", linewidth=0.8, linestyle="--",
              label="forecast = actual")  # fmt: skip
    ax.set_xlabel("forecast next log return, %")
    ax.set_ylabel("actual next log return, %")
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(f"Returns: forecast against actual ({int(known.sum())} windows)", fontsize=9)


def monthly_panel(ax: Axes, f: Forecasts) -> None:
    frame = pd.DataFrame(
        {"model": np.abs(f.point - f.actual), "persistence": np.abs(f.last_close - f.actual)},
        index=f.times,
    ).dropna()
    months = frame.groupby(frame.index.strftime("%Y-%m"))
    means = months.mean()
    ratio = (means["model"] / means["persistence"]).to_numpy()
    counts = months.size().to_numpy()
    period_bars(ax, list(means.index), ratio, counts, reference=1.0, compare=True)
    ax.set_ylabel("MAE / persistence MAE")
    ax.set_title(
        "By month (below 1: better than persistence; at each bar's end: its windows)", fontsize=9
    )


def residuals_panel(ax: Axes, f: Forecasts) -> None:
    bins = np.linspace(-8, 8, 81).tolist()
    ax.hist(100 * (f.point - f.actual) / f.actual, bins=bins, alpha=0.6, label="forecast")
    ax.hist(100 * (f.last_close - f.actual) / f.actual, bins=bins, alpha=0.6, label="persistence")
    ax.set_xlabel("error, % of the actual close")
    ax.set_ylabel("windows")
    ax.legend(fontsize=8)
    ax.set_title("Residuals", fontsize=9)


def period_bars(
    ax: Axes,
    labels: list[str],
    values: np.ndarray,
    counts: np.ndarray,
    reference: float,
    compare: bool,
    more_handles: tuple[Any, ...] = (),
) -> None:
    """One bar per period from `reference` to its value, labelled with its window count. With
    `compare`, green at or below the reference and red above; a period of fewer than
    FEW_WINDOWS windows is grey and hatched, whatever its value. The legend names what is drawn
    (and `more_handles`)."""
    from matplotlib.patches import Patch

    few = counts < FEW_WINDOWS
    normal = {"color": "tab:green", "label": "better than persistence"}
    worse = {"color": "tab:red", "label": "worse than persistence"}
    if not compare:
        normal = worse = {"color": "tab:blue", "label": ""}
    styles = [
        _FEW_STYLE if is_few else (worse if v > reference else normal)
        for v, is_few in zip(values, few, strict=True)
    ]
    bars = ax.bar(
        labels,
        np.asarray(values, dtype=np.float64) - reference,
        bottom=reference,
        color=[s["color"] for s in styles],
        hatch=[s.get("hatch") for s in styles],
        edgecolor=[s.get("edgecolor", s["color"]) for s in styles],
    )
    ax.bar_label(
        bars, labels=[str(int(n)) for n in counts], fontsize=7, padding=1,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5},
    )  # fmt: skip
    ax.axhline(reference, color="black", linewidth=0.8)
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    handles = list(more_handles)
    seen = {s["label"] for s, is_few in zip(styles, few, strict=True) if not is_few}
    for style in (normal, worse):
        if style["label"] and style["label"] in seen:
            handles.append(Patch(color=style["color"], label=style["label"]))
    if few.any():
        handles.append(Patch(facecolor=_FEW_STYLE["color"], hatch=_FEW_STYLE["hatch"],
                             edgecolor=_FEW_STYLE["edgecolor"], label=FEW_LABEL))  # fmt: skip
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="best")


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

    fig = _figure(figsize=(13, 13 if forecasts is not None else 5))
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
    fig = _figure(figsize=(13, 12 if forecasts is not None else 7))
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
