"""The panels every report draws from: forecasts against persistence, with the interval, and
bars per period labelled with their window counts (one with fewer than FEW_WINDOWS is grey and
hatched). Each takes the Axes to draw on; gateway-free and pyplot-free (bare Figures)."""

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


def figure(**kwargs: Any) -> Figure:
    # A bare Figure: no pyplot, so no global figure list to leak into and no display backend.
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


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
