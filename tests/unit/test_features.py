"""compute_features / window_from_candles against values computed by hand.

The reference values below are built with plain Python loops and explicit formulas, never with
pandas rolling/ewm, so a wrong window, span, seed or ddof in the module shows up as a mismatch.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from model_wrapper.model.features import (
    DEFAULT_SEQ_LEN,
    FEATURE_NAMES,
    N_FEATURES,
    WARMUP,
    compute_features,
    min_candles,
    window_from_candles,
)

N_CANDLES = 40

DOCUMENTED_ORDER = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "return_1",
    "log_return_1",
    "range_hl",
    "body_oc",
    "sma_7",
    "sma_21",
    "ema_12",
    "ema_26",
    "macd",
    "macd_signal",
    "rsi_14",
    "bb_width_20",
    "volatility_7",
)


def make_candles(closes: list[float]) -> pd.DataFrame:
    """Deterministic OHLCV around the given closes, hourly UTC index."""
    n = len(closes)
    opens = [closes[0] * 0.995, *closes[:-1]]
    highs = [
        max(o, c) * 1.004 + 0.01 * (i % 3)
        for i, (o, c) in enumerate(zip(opens, closes, strict=True))
    ]
    lows = [
        min(o, c) * 0.996 - 0.01 * (i % 2)
        for i, (o, c) in enumerate(zip(opens, closes, strict=True))
    ]
    # Integers on purpose: the module must convert volume to float.
    volumes = [1000 + 37 * i + (i % 5) * 11 for i in range(n)]
    index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {"open": opens, "high": highs, "low": lows, "close": closes, "volume": volumes},
        index=index,
    )


def wavy_closes(n: int = N_CANDLES) -> list[float]:
    # Ups and downs of varied size (so RSI sees both gains and losses) on top of a drift.
    return [100.0 + 8.0 * math.sin(0.7 * i) + 3.0 * math.cos(1.9 * i) + 0.4 * i for i in range(n)]


# ---------------------------------------------------------------- hand-written references


def hand_ema(xs: list[float], alpha: float) -> list[float]:
    """EMA seeded with the first value (pandas adjust=False)."""
    out = [xs[0]]
    for x in xs[1:]:
        out.append(alpha * x + (1.0 - alpha) * out[-1])
    return out


def hand_mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def hand_std(xs: list[float], ddof: int) -> float:
    m = hand_mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - ddof))


def hand_rsi(closes: list[float]) -> list[float | None]:
    """Wilder RSI: alpha=1/14 averages of gains and losses seeded with the first change."""
    alpha = 1.0 / 14.0
    out: list[float | None] = [None]  # no change before the first close
    gain = loss = 0.0
    for t in range(1, len(closes)):
        d = closes[t] - closes[t - 1]
        g, lo = max(d, 0.0), max(-d, 0.0)
        if t == 1:
            gain, loss = g, lo
        else:
            gain = alpha * g + (1.0 - alpha) * gain
            loss = alpha * lo + (1.0 - alpha) * loss
        out.append(50.0 if gain + loss == 0 else 100.0 * gain / (gain + loss))
    return out


def hand_features(candles: pd.DataFrame) -> dict[str, list[float]]:
    """Every feature for rows WARMUP..end, computed from plain lists."""
    o = [float(x) for x in candles["open"]]
    h = [float(x) for x in candles["high"]]
    lo = [float(x) for x in candles["low"]]
    c = [float(x) for x in candles["close"]]
    v = [float(x) for x in candles["volume"]]
    n = len(c)
    ema_12 = hand_ema(c, 2.0 / 13.0)
    ema_26 = hand_ema(c, 2.0 / 27.0)
    macd = [a - b for a, b in zip(ema_12, ema_26, strict=True)]
    macd_signal = hand_ema(macd, 2.0 / 10.0)
    rsi = hand_rsi(c)
    log_ret = [math.nan] + [math.log(c[t] / c[t - 1]) for t in range(1, n)]

    out: dict[str, list[float]] = {name: [] for name in FEATURE_NAMES}
    for t in range(WARMUP, n):
        window_20 = c[t - 19 : t + 1]
        rsi_t = rsi[t]
        assert rsi_t is not None
        row = {
            "open": o[t],
            "high": h[t],
            "low": lo[t],
            "close": c[t],
            "volume": v[t],
            "return_1": c[t] / c[t - 1] - 1.0,
            "log_return_1": math.log(c[t] / c[t - 1]),
            "range_hl": (h[t] - lo[t]) / c[t],
            "body_oc": (c[t] - o[t]) / o[t],
            "sma_7": hand_mean(c[t - 6 : t + 1]),
            "sma_21": hand_mean(c[t - 20 : t + 1]),
            "ema_12": ema_12[t],
            "ema_26": ema_26[t],
            "macd": macd[t],
            "macd_signal": macd_signal[t],
            "rsi_14": rsi_t,
            "bb_width_20": 4.0 * hand_std(window_20, ddof=0) / hand_mean(window_20),
            "volatility_7": hand_std(log_ret[t - 6 : t + 1], ddof=1),
        }
        for name in FEATURE_NAMES:
            out[name].append(row[name])
    return out


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return make_candles(wavy_closes())


@pytest.fixture(scope="module")
def features(candles: pd.DataFrame) -> pd.DataFrame:
    return compute_features(candles)


@pytest.fixture(scope="module")
def expected(candles: pd.DataFrame) -> dict[str, list[float]]:
    return hand_features(candles)


# ---------------------------------------------------------------- names and shape


def test_feature_names_are_the_18_documented_ones_in_order() -> None:
    assert FEATURE_NAMES == DOCUMENTED_ORDER
    assert N_FEATURES == 18
    assert len(set(FEATURE_NAMES)) == 18


def test_columns_follow_feature_names(features: pd.DataFrame) -> None:
    assert tuple(features.columns) == FEATURE_NAMES
    assert all(features[name].dtype == np.float64 for name in FEATURE_NAMES)


def test_first_warmup_rows_are_dropped(candles: pd.DataFrame, features: pd.DataFrame) -> None:
    assert WARMUP == 20  # sma_21 needs 21 closes, so row 20 is the first complete one
    assert len(features) == N_CANDLES - WARMUP
    assert features.index.equals(candles.index[WARMUP:])


def test_no_nans_after_warmup(features: pd.DataFrame) -> None:
    assert not features.isna().to_numpy().any()


def test_warmup_is_just_enough() -> None:
    # With exactly WARMUP + 1 candles there is one row and it is already complete.
    few = make_candles(wavy_closes(WARMUP + 1))
    feats = compute_features(few)
    assert len(feats) == 1
    assert not feats.isna().to_numpy().any()
    assert feats["sma_21"].iloc[0] == pytest.approx(hand_mean(wavy_closes(WARMUP + 1)), rel=1e-12)


# ---------------------------------------------------------------- values against the hand


@pytest.mark.parametrize("name", FEATURE_NAMES)
def test_feature_matches_hand_computation(
    name: str, features: pd.DataFrame, expected: dict[str, list[float]]
) -> None:
    got = features[name].tolist()
    want = expected[name]
    assert len(got) == len(want)
    for row, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == pytest.approx(w, rel=1e-9, abs=1e-12), f"{name} row {WARMUP + row}"


def test_hand_reference_is_not_trivial(expected: dict[str, list[float]]) -> None:
    # Guards the reference itself: RSI must move off the extremes, MACD must change sign or size.
    assert 0.0 < min(expected["rsi_14"]) < max(expected["rsi_14"]) < 100.0
    assert len({round(x, 9) for x in expected["macd"]}) > 5
    assert min(expected["volatility_7"]) > 0.0


def test_extra_columns_and_order_do_not_matter(candles: pd.DataFrame) -> None:
    shuffled = candles[["volume", "close", "low", "high", "open"]].assign(extra=1.0)
    pd.testing.assert_frame_equal(compute_features(shuffled), compute_features(candles))


def test_missing_column_is_named() -> None:
    candles = make_candles(wavy_closes()).drop(columns=["low"])
    with pytest.raises(ValueError, match=r"\['low'\]"):
        compute_features(candles)


# ---------------------------------------------------------------- RSI and other edge cases


def test_rsi_is_100_for_a_strictly_rising_series() -> None:
    feats = compute_features(make_candles([100.0 + 1.5 * i for i in range(N_CANDLES)]))
    assert (feats["rsi_14"] == 100.0).all()


def test_rsi_is_0_for_a_strictly_falling_series() -> None:
    feats = compute_features(make_candles([200.0 - 1.5 * i for i in range(N_CANDLES)]))
    assert (feats["rsi_14"] == 0.0).all()


def test_flat_series_gives_neutral_rsi_and_zero_spread() -> None:
    feats = compute_features(make_candles([100.0] * N_CANDLES))
    assert not feats.isna().to_numpy().any()
    assert (feats["rsi_14"] == 50.0).all()
    for name in ("return_1", "log_return_1", "macd", "macd_signal", "volatility_7"):
        assert feats[name].abs().max() == pytest.approx(0.0, abs=1e-12), name
    assert feats["bb_width_20"].abs().max() == pytest.approx(0.0, abs=1e-9)


def test_rsi_stays_within_0_and_100_on_a_random_walk() -> None:
    rng = np.random.default_rng(7)
    closes = (100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, 500)))).tolist()
    rsi = compute_features(make_candles(closes))["rsi_14"]
    assert rsi.between(0.0, 100.0).all()
    # A real walk must visit both sides of 50, otherwise the bound check is vacuous.
    assert rsi.min() < 40.0 < 60.0 < rsi.max()


# ---------------------------------------------------------------- window_from_candles


def test_min_candles_adds_the_warmup() -> None:
    assert min_candles(12) == 12 + WARMUP
    assert min_candles(1) == 1 + WARMUP


def test_window_has_seq_len_rows_of_18_python_floats(candles: pd.DataFrame) -> None:
    window = window_from_candles(candles)
    assert isinstance(window, list)
    assert len(window) == DEFAULT_SEQ_LEN
    for row in window:
        assert isinstance(row, list)
        assert len(row) == N_FEATURES
        # JSON-ready: plain floats, not numpy scalars.
        assert all(type(x) is float for x in row)


@pytest.mark.parametrize("seq_len", [1, 5, DEFAULT_SEQ_LEN, N_CANDLES - WARMUP])
def test_window_is_the_last_feature_rows(candles: pd.DataFrame, seq_len: int) -> None:
    window = window_from_candles(candles, seq_len=seq_len)
    tail = compute_features(candles).to_numpy()[-seq_len:]
    assert len(window) == seq_len
    np.testing.assert_array_equal(np.array(window), tail)
    # The last row describes the last candle given.
    assert window[-1][FEATURE_NAMES.index("close")] == candles["close"].iloc[-1]


def test_window_with_exactly_min_candles_works(candles: pd.DataFrame) -> None:
    exact = candles.iloc[-min_candles(5) :]
    assert len(window_from_candles(exact, seq_len=5)) == 5


@pytest.mark.parametrize("seq_len", [DEFAULT_SEQ_LEN, 3])
def test_window_with_too_few_candles_names_the_needed_count(
    candles: pd.DataFrame, seq_len: int
) -> None:
    short = candles.iloc[: min_candles(seq_len) - 1]
    needed = min_candles(seq_len)
    with pytest.raises(ValueError, match=rf"at least {needed} candles") as info:
        window_from_candles(short, seq_len=seq_len)
    assert f"got {needed - 1}" in str(info.value)
