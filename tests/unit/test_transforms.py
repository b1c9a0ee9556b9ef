"""Windows to the network's input: `transform_windows` and `scale_windows` give, bit for bit,
the plain per-column computation on [N, T, F] that trained every version, whatever memory
order they answer in."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.data.windows import make_windows
from model_wrapper.model.transforms import (
    CLOSE,
    PRICE_DIFFS,
    PRICE_RUNS,
    VOLUME,
    scale_windows,
    transform_windows,
)
from tests.helpers import SEQ_LEN


def plain_transform(arr: np.ndarray) -> np.ndarray:
    """The definition, column by column on [N, T, F] (the code every earlier version ran)."""
    out = arr.copy()
    last_close = arr[:, -1:, CLOSE : CLOSE + 1]
    for run in PRICE_RUNS:
        prices = out[:, :, run]
        prices /= last_close
        np.log(prices, out=prices)
    out[:, :, PRICE_DIFFS] /= last_close
    log_volume = out[:, :, VOLUME]
    np.log1p(log_volume, out=log_volume)
    log_volume -= log_volume.mean(axis=1, keepdims=True)
    return out


def plain_scale(arr: np.ndarray, mean: Any, scale: Any) -> np.ndarray:
    scaled = plain_transform(arr)
    scaled -= mean
    scaled /= scale
    return scaled


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    return np.concatenate(
        [make_windows(synthetic_candles(300, seed=seed), SEQ_LEN).x for seed in (1, 2, 3)]
    )


@pytest.mark.parametrize("n", [1, 2, 64, 700])
def test_the_transform_is_the_plain_computation_bit_for_bit(real: np.ndarray, n: int) -> None:
    x = real[:n]
    rng = np.random.default_rng(n)
    mean = np.asarray(rng.normal(0, 0.1, x.shape[-1]))
    scale = np.asarray(rng.uniform(0.2, 3.0, x.shape[-1]))
    got = transform_windows(x)
    assert got.shape == x.shape and got.dtype == np.float64
    np.testing.assert_array_equal(got, plain_transform(x))
    for m, s in ((mean, scale), (mean.tolist(), scale.tolist())):  # arrays or the scaler's lists
        np.testing.assert_array_equal(scale_windows(x, m, s), plain_scale(x, mean, scale))


def test_the_input_is_left_as_it_came(real: np.ndarray) -> None:
    x = real[:10].copy()
    scale_windows(x, np.zeros(x.shape[-1]), np.ones(x.shape[-1]))
    np.testing.assert_array_equal(x, real[:10])


def test_what_callers_do_with_the_answer_works_as_on_a_plain_array(real: np.ndarray) -> None:
    """The answer is laid out [T, F, N] in memory: float32 copies, chunks, reshapes and
    in-place writes (the forecaster zeroes unreadable windows) still mean [N, T, F]."""
    x = real[:100]
    plain = plain_scale(x, 0.0, 1.0)
    scaled = scale_windows(x, np.zeros(x.shape[-1]), np.ones(x.shape[-1]))
    np.testing.assert_array_equal(scaled.astype(np.float32), plain.astype(np.float32))
    np.testing.assert_array_equal(scaled[64:], plain[64:])
    np.testing.assert_array_equal(scaled.reshape(-1, x.shape[-1]), plain.reshape(-1, x.shape[-1]))
    scaled[[3, 7]] = 0.0
    plain[[3, 7]] = 0.0
    np.testing.assert_array_equal(scaled, plain)
