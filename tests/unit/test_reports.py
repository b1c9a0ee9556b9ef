"""The report figures, read from the matplotlib objects they are made of (not their pixels):
bars labelled with their window counts, short periods marked, the recent panel and the return
scatter drawing the forecasts they were given (no MLflow, no TensorFlow)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from model_wrapper.evaluation.live import figures, match
from model_wrapper.evaluation.live_runs import picture
from model_wrapper.evaluation.metrics import score_forecasts
from model_wrapper.evaluation.panels import FEW_LABEL, FEW_WINDOWS, RECENT_DAYS, Forecasts
from model_wrapper.evaluation.reports import backtest_report, forecast_report


def panels(fig: Figure) -> dict[str, Axes]:
    return {ax.get_label(): ax for ax in fig.axes}


def bars(ax: Axes) -> list[tuple[str, float, str | None, tuple[float, ...]]]:
    """(count label, top, hatch, face colour) of every bar, left to right."""
    (container,) = ax.containers
    labels = [t.get_text() for t in ax.texts]
    assert len(labels) == len(container.patches)
    return [
        (label, p.get_y() + p.get_height(), p.get_hatch(), tuple(p.get_facecolor()))
        for label, p in zip(labels, container.patches, strict=True)
    ]


def legend_texts(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def daily(n: int, seed: int = 0) -> Forecasts:
    """n daily windows from 2023-01-01, with a forecast that differs from persistence."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2023-01-01", periods=n, freq="D", tz="UTC")
    close = 20_000 * np.exp(np.cumsum(rng.normal(0, 0.03, n + 1)))
    last, actual = close[:-1], close[1:]
    point = last * np.exp(rng.normal(0, 0.01, n))
    return Forecasts(times, actual, last, point, last * 0.96, last * 1.04)


def report(f: Forecasts) -> Figure:
    metrics = score_forecasts(f.actual, f.last_close, f.point, f.lower, f.upper, f.level)
    return forecast_report(
        f.times, f.actual, f.last_close, f.point, f.lower, f.upper, metrics, "test"
    )


def monthly_ratio(f: Forecasts, month: int) -> float:
    m = f.times.month == month
    return float(
        np.mean(np.abs(f.point[m] - f.actual[m])) / np.mean(np.abs(f.last_close[m] - f.actual[m]))
    )


def test_monthly_bars_carry_their_window_counts_and_a_short_month_is_marked() -> None:
    f = daily(31 + 28 + 5)  # January, February, and five days of March
    drawn = bars(panels(report(f))["by_month"])
    assert [label for label, *_ in drawn] == ["31", "28", "5"]
    for (_, top, _, _), month in zip(drawn, (1, 2, 3), strict=True):
        assert top == pytest.approx(monthly_ratio(f, month), rel=1e-12)
    jan, feb, march = drawn
    assert march[2] == "//" and march[3] == to_rgba("lightgrey")
    for _, top, hatch, colour in (jan, feb):
        assert not hatch
        assert colour == to_rgba("tab:green" if top <= 1 else "tab:red")
    assert FEW_LABEL in legend_texts(panels(report(f))["by_month"])


@pytest.mark.parametrize(("february", "marked"), [(FEW_WINDOWS, False), (FEW_WINDOWS - 1, True)])
def test_the_mark_starts_below_twenty_windows(february: int, marked: bool) -> None:
    ax = panels(report(daily(31 + february)))["by_month"]
    (_, _, jan_hatch, _), (count, _, feb_hatch, _) = bars(ax)
    assert count == str(february) and not jan_hatch
    assert (feb_hatch == "//") == marked
    assert (FEW_LABEL in legend_texts(ax)) == marked


def test_the_recent_panel_and_the_return_scatter_draw_the_forecasts() -> None:
    f = daily(200)
    drawn = panels(report(f))
    recent = drawn["recent"]
    keep = f.times > f.times[-1] - pd.Timedelta(days=RECENT_DAYS)
    assert keep.sum() == RECENT_DAYS
    (forecast,) = [line for line in recent.lines if line.get_label() == "forecast"]
    np.testing.assert_array_equal(forecast.get_ydata(), f.point[keep])
    assert len(recent.collections) == 1  # the interval band

    returns = drawn["returns"]
    (points,) = [c for c in returns.collections if c.get_label() == "windows"]
    expected = np.column_stack(
        [100 * np.log(f.point / f.last_close), 100 * np.log(f.actual / f.last_close)]
    )
    np.testing.assert_allclose(points.get_offsets(), expected, rtol=1e-12)
    labels = {line.get_label(): line for line in returns.lines}
    assert list(labels["persistence (forecast 0)"].get_xdata()) == [0, 0]
    assert labels["forecast = actual"].get_slope() == 1
    assert {"full_period", "residuals"} <= set(drawn)


def test_backtest_bars_are_the_mean_over_seeds_with_counts_and_marks() -> None:
    starts = pd.to_datetime(["2023-01-01", "2023-07-01", "2024-01-01"], utc=True)
    table = pd.DataFrame(
        {
            "seed": [42] * 3 + [1] * 3,
            "period_start": list(starts) * 2,
            "n_windows": [181.0, 184.0, 7.0] * 2,
            "mae_ratio_to_persistence": [0.99, 1.01, 1.30, 0.97, 1.03, 1.10],
            "interval_coverage": [0.80, 0.83, 0.57, 0.78, 0.81, 0.43],
        }
    )
    pooled = {
        "mae_ratio_to_persistence": 1.0, "interval_coverage": 0.8,
        "ewma_interval_coverage": 0.8, "interval_pinball_loss": 1.0,
        "ewma_interval_pinball_loss": 1.0,
    }  # fmt: skip
    fig = backtest_report(table, pooled, "walk-forward", daily(120), "seed 42")
    drawn = panels(fig)
    for name, means in (
        ("by_period_mae", [0.98, 1.02, 1.20]),
        ("by_period_coverage", [0.79, 0.82, 0.50]),
    ):
        ax = drawn[name]
        got = bars(ax)
        assert [label for label, *_ in got] == ["181", "184", "7"]
        assert [top for _, top, _, _ in got] == pytest.approx(means)
        assert [hatch == "//" for _, _, hatch, _ in got] == [False, False, True]
        (seeds,) = [line for line in ax.lines if line.get_label() == "each seed"]
        assert len(seeds.get_ydata()) == 6
        assert {FEW_LABEL, "each seed"} <= set(legend_texts(ax))
    assert {"full_period", "recent", "returns"} <= set(drawn)
    alone = panels(backtest_report(table, pooled, "walk-forward"))
    assert set(alone) == {"by_period_mae", "by_period_coverage"}


def test_the_live_picture_shows_the_forecasts_at_the_candle_they_forecast() -> None:
    times = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    candles = pd.DataFrame({"close": [100.0, 110, 105, 120, 120, 130]}, index=times)
    lines = [
        {
            "time": f"{t + pd.Timedelta(hours=12):%Y-%m-%dT%H:%M:%S+00:00}",
            "request_id": f"r{i}",
            "role": "served",
            "model_alias": "Production",
            "model_version": "1",
            "candle_time": t.isoformat(),
            "pred_btc_close_next": 101.0 + i,
            "pred_interval": {"lower": 90.0 + i, "upper": 140.0, "level": 0.8},
        }
        for i, t in enumerate(times)  # the last one is pending: its next close has not come
    ]
    live = figures(match(json.loads(json.dumps(lines)), candles))[("1", "served")]
    drawn = panels(picture("BTC", live, None))
    assert {"cumulative", "coverage", "recent", "returns"} == set(drawn)
    assert not any(ax.containers for ax in drawn.values())  # no bars to label
    (forecast,) = [line for line in drawn["recent"].lines if line.get_label() == "forecast"]
    assert list(forecast.get_xdata()) == list(times[1:])  # the next candle, not the window's
    np.testing.assert_array_equal(forecast.get_ydata(), [101.0, 102, 103, 104, 105])
