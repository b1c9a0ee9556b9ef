"""The scoring math, checked against values computed by hand (no MLflow, no TensorFlow)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from model_wrapper.evaluation.metrics import (
    diebold_mariano,
    ewma_fhs_interval,
    interval_pinball_loss,
    score_forecasts,
)
from model_wrapper.model.transforms import LOWER, POINT, UPPER, forecast_prices
from model_wrapper.training.recipe import calibrate_interval, choose_shrinkage


def test_diebold_mariano_by_hand() -> None:
    # n = 4: Newey-West lag floor(4 * 0.04^(2/9)) = 1.
    a = np.array([1.0, 2.0, 3.0, 6.0])
    b = np.array([1.0, 1.0, 1.0, 1.0])
    # differences 0, 1, 2, 5: mean 2, centred -2, -1, 0, 3
    gamma0 = (4 + 1 + 0 + 9) / 4  # 3.5
    gamma1 = ((-1) * (-2) + 0 * (-1) + 3 * 0) / 4  # 0.5
    variance = gamma0 + 2 * (1 - 1 / 2) * gamma1  # 4.0
    dm = 2.0 / math.sqrt(variance / 4)  # 2.0
    corrected = dm * math.sqrt((4 + 1 - 2) / 4)  # HLN, h = 1
    expected = 2 * stats.t.sf(corrected, df=3)
    assert diebold_mariano(a, b) == pytest.approx(expected, rel=1e-12)
    assert diebold_mariano(b, a) == pytest.approx(expected, rel=1e-12)  # two-sided


def test_diebold_mariano_edges() -> None:
    same = np.array([0.1, 0.2, 0.3])
    assert diebold_mariano(same, same) == 1.0
    rng = np.random.default_rng(0)
    noise = rng.normal(size=500)
    assert diebold_mariano(noise**2, noise**2 + 1.0) < 1e-10  # constant gap: certain
    assert 0.05 < diebold_mariano(rng.normal(size=500) ** 2, rng.normal(size=500) ** 2) <= 1


def test_interval_metrics_by_hand() -> None:
    actual = np.array([100.0, 110.0, 90.0, 100.0])
    lower = np.array([95.0, 95.0, 95.0, 99.0])
    upper = np.array([105.0, 105.0, 105.0, 101.0])
    # pinball at 0.1 of the lower bound: 0.5, 1.5, 4.5, 0.1;
    # at 0.9 of the upper bound: 0.5, 4.5, 1.5, 0.1.
    expected = np.mean([(0.5 + 0.5) / 2, (1.5 + 4.5) / 2, (4.5 + 1.5) / 2, (0.1 + 0.1) / 2])
    assert interval_pinball_loss(actual, lower, upper, 0.8) == pytest.approx(expected)
    last = np.array([100.0, 100.0, 100.0, 100.0])
    m = score_forecasts(actual, last, np.array([101.0, 108.0, 95.0, 100.0]), lower, upper, 0.8)
    assert m["interval_coverage"] == 0.5
    assert m["interval_mean_width_pct"] == pytest.approx((10 + 10 + 10 + 2) / 4)
    assert m["mae"] == pytest.approx((1 + 2 + 5 + 0) / 4)
    assert m["persistence_mae"] == pytest.approx((0 + 10 + 10 + 0) / 4)
    assert m["mae_ratio_to_persistence"] == pytest.approx(2 / 5)
    # up, up, down, flat vs moved flat, up, down, flat: 3 of 4 agree.
    assert m["directional_accuracy"] == 0.75
    assert set(m) >= {"rmse", "mape", "persistence_rmse", "dm_pvalue_vs_persistence"}


def test_persistence_scores_exactly_one() -> None:
    actual = np.array([10.0, 12.0, 11.0, 13.0])
    last = np.array([11.0, 10.0, 12.0, 11.0])
    m = score_forecasts(actual, last, last.copy(), None, None, 0.8)
    assert m["mae_ratio_to_persistence"] == 1.0
    assert m["dm_pvalue_vs_persistence"] == 1.0
    assert math.isnan(m["interval_coverage"])


def test_ewma_fhs_uses_only_the_past() -> None:
    rng = np.random.default_rng(3)
    index = pd.date_range("2020-01-01", periods=300, freq="D", tz="UTC")
    close = pd.Series(100 * np.exp(np.cumsum(rng.standard_t(4, 300) * 0.02)), index=index)
    targets = index[200:260]
    lower, upper = ewma_fhs_interval(close, targets, 0.8)
    assert (lower < close.shift(1)[targets]).all() and (upper > close.shift(1)[targets]).all()
    coverage = np.mean((lower <= close[targets]) & (close[targets] <= upper))
    assert 0.6 <= coverage <= 0.95
    # Changing everything from a target on leaves that target's interval as it was.
    changed = close.copy()
    changed.iloc[230:] *= 3.0
    lower2, upper2 = ewma_fhs_interval(changed, targets, 0.8)
    np.testing.assert_array_equal(lower2[:31], lower[:31])
    np.testing.assert_array_equal(upper2[:31], upper[:31])
    assert not np.allclose(lower2[31:], lower[31:])


def test_shrinkage_and_calibration_choose_what_validation_says() -> None:
    last = np.full(4, 100.0)
    median = np.log(np.array([1.02, 0.99, 1.01, 0.98]))
    # Outcomes half-way between persistence and the network's median: shrink by 0.5.
    actual = 100 * np.exp(0.5 * median)
    assert choose_shrinkage(last, median, actual) == 0.5
    assert choose_shrinkage(last, median, last) == 0.0
    rng = np.random.default_rng(1)
    y = rng.normal(0, 1, 4000)
    quantiles = np.tile([-0.5, 0.0, 0.5], (4000, 1))  # too narrow for N(0, 1)
    widen = calibrate_interval(quantiles, y, 0.8)
    assert widen == pytest.approx(stats.norm.ppf(0.9) - 0.5, abs=0.05)
    covered = (y >= -0.5 - widen) & (y <= 0.5 + widen)
    assert covered.mean() == pytest.approx(0.8, abs=0.01)


def test_forecast_prices_shrinks_and_bounds() -> None:
    scaler = {"target_mean": 0.0, "target_scale": 1.0}
    outputs = np.array([[0.01, -0.02, 0.03]])  # unsorted on purpose: quantiles may cross
    out = forecast_prices(
        np.array([100.0]), outputs, scaler, {"shrinkage": 0.5, "interval_widen": 0.01}
    )
    assert out[POINT][0] == pytest.approx(100 * math.exp(0.005))
    assert out[LOWER][0] == pytest.approx(100 * math.exp(-0.03))
    assert out[UPPER][0] == pytest.approx(100 * math.exp(0.04))
    legacy = forecast_prices(np.array([100.0]), np.array([[0.01]]), scaler, {})
    assert set(legacy) == {POINT} and legacy[POINT][0] == pytest.approx(100 * math.exp(0.01))
