"""Live evidence on a crafted log: every line matched by candle_time or by last close, scored
against the next close, or counted (pending, unmatched, ambiguous, unreadable), exactly; the
figures by hand; Diebold–Mariano's tie rule; the guard's judgment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_wrapper.data.candles import load_candles
from model_wrapper.evaluation.guard import judge
from model_wrapper.evaluation.live import Scored, figures, match, read_lines
from model_wrapper.evaluation.metrics import diebold_mariano

CSV = """timestamp,open,high,low,close,volume
2024-01-01T00:00:00Z,100,101,99,100,5
2024-01-02T00:00:00Z,100,111,99,110,5
2024-01-03T00:00:00Z,110,111,104,105,5
2024-01-04T00:00:00Z,105,121,104,120,5
2024-01-05T00:00:00Z,120,121,119,120,5
2024-01-06T00:00:00Z,120,131,119,130,5
"""
DAY = "2024-01-{:02d}T00:00:00+00:00".format
NOON = "2024-01-{:02d}T12:00:00+00:00".format


def line(version: str, last: float | None, pred: float, time: str, **extra: object) -> str:
    fields = {
        "time": time,
        "request_id": f"r-{version}-{time}-{pred}",
        "role": "served",
        "model_alias": "Production",
        "model_version": version,
        "last_close": last,
        "pred_btc_close_next": pred,
        "pred_interval": None,
        **extra,
    }
    return json.dumps(fields) + "\n"


def test_a_crafted_log_is_matched_scored_and_counted_exactly(tmp_path: Path) -> None:
    (tmp_path / "candles.csv").write_text(CSV)
    log = tmp_path / "predictions.jsonl"
    log.write_text(
        # v1 by last close, from 100 (actual 110): error 2, persistence 10, the interval holds.
        line("1", 100.0, 108.0, NOON(1), pred_interval={"lower": 105, "upper": 115, "level": 0.8})
        # v1 by last close, from 110 (actual 105): error 7, persistence 5, the interval misses.
        + line("1", 110.0, 112.0, NOON(2), pred_interval={"lower": 111, "upper": 113, "level": 0.8})
        # v2 by candle_time (its last_close is not looked at): from 105 (actual 120).
        + line("2", 999.0, 115.0, NOON(3), candle_time=DAY(3))
        # by candle_time, the epoch-second spelling of Jan 2 normalized by the gateway.
        + line("2", None, 108.0, NOON(2), candle_time="2024-01-02T00:00:00Z")
        + line("2", 999.0, 1.0, NOON(3))  # no candle closed at 999: unmatched
        + line("2", 110.0, 1.0, "2024-01-01T12:00:00+00:00")  # before the 110 candle: unmatched
        + line("2", None, 1.0, NOON(3), candle_time="2024-01-03T06:00:00+00:00")  # no such candle
        + line("1", 120.0, 1.0, NOON(6))  # two candles closed at 120: ambiguous
        + line("1", 130.0, 1.0, NOON(6))  # the last candle: its next close is not known yet
        + line("1", None, 1.0, NOON(7), candle_time=DAY(7))  # a candle the file lacks yet: pending
        + '{"time": "2024-01-06T1'  # a line cut off by a full disk
    )
    lines, unreadable = read_lines([log])
    matched = match(lines, load_candles(tmp_path / "candles.csv"), unreadable)
    assert dict(matched.counts) == {
        "scored": 4, "pending": 2, "unmatched": 3, "ambiguous": 1, "unreadable": 1,
    }  # fmt: skip
    by_version = {version: f for (version, _), f in figures(matched).items()}
    v1, v2 = by_version["1"].metrics, by_version["2"].metrics
    assert (v1["live_n"], v1["live_mae"], v1["live_persistence_mae"]) == (2, 4.5, 7.5)
    assert v1["live_mae_ratio_to_persistence"] == pytest.approx(0.6)
    assert v1["live_interval_coverage"] == 0.5
    # v2: from 105 to 120 (error 5, persistence 15); from 110 to 105 (error 3, persistence 5).
    assert (v2["live_n"], v2["live_mae"], v2["live_persistence_mae"]) == (2, 4.0, 10.0)
    assert np.isnan(v2["live_interval_coverage"])


def test_a_shadow_is_compared_with_the_served_version_on_the_requests_both_answered() -> None:
    candles = pd.DataFrame(
        {"close": [100.0, 110.0, 105.0, 120.0]},
        index=pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC"),
    )

    def logged(role: str, version: str, day: int, pred: float, request: str) -> dict[str, object]:
        return {
            "time": NOON(day), "request_id": request, "role": role, "model_alias": role,
            "model_version": version, "candle_time": DAY(day), "pred_btc_close_next": pred,
        }  # fmt: skip

    lines = [
        logged("served", "1", 1, 108.0, "a"),  # actual 110: error 2
        logged("shadow", "2", 1, 104.0, "a"),  # error 6
        logged("served", "1", 2, 107.0, "b"),  # actual 105: error 2
        logged("shadow", "2", 2, 115.0, "b"),  # error 10
        logged("shadow", "2", 3, 120.0, "c"),  # actual 120: its served line is missing
    ]
    shadow = figures(match(lines, candles))[("2", "shadow")]
    assert shadow.served_version == "1"
    assert shadow.metrics["live_n"] == 3
    assert shadow.metrics["live_n_common"] == 2
    assert shadow.metrics["live_mae_ratio_to_served"] == pytest.approx((6 + 10) / (2 + 2))


def test_diebold_mariano_calls_differences_negligible_next_to_the_losses_a_tie() -> None:
    rng = np.random.default_rng(3)
    losses = rng.uniform(0.01, 0.03, 1005)
    # A forecast within 5e-7 USD of persistence: relative differences near 1e-11.
    nearly = losses * (1 + rng.uniform(-1e-11, 1e-11, len(losses)))
    assert diebold_mariano(nearly, losses) == 1.0
    assert diebold_mariano(losses, losses) == 1.0
    # A real difference is still a difference.
    assert diebold_mariano(losses * 1.05, losses) < 0.001


def scored_rows(errors: np.ndarray, persistence: np.ndarray, hits: np.ndarray) -> list[Scored]:
    rows = []
    for i, (e, p, hit) in enumerate(zip(errors, persistence, hits, strict=True)):
        when = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=i)
        actual = 1000.0
        lower = actual - 50 if hit else actual + 1
        row = (f"r{i}", "served", "3", "Production", when, when)
        rows.append(Scored(*row, actual + p, actual, actual + e, lower, actual + 50, 0.8))
    return rows


def test_the_guard_judges_the_last_window_only() -> None:
    rng = np.random.default_rng(7)
    persistence = rng.uniform(5, 15, 200)
    good = scored_rows(persistence * rng.uniform(0.9, 1.1, 200), persistence, rng.random(200) < 0.8)
    assert judge(good, window=90, tolerance=0.005).healthy
    assert judge(good[:50], window=90, tolerance=0.005).healthy  # not enough yet
    worse = scored_rows(persistence * 1.5, persistence, rng.random(200) < 0.8)
    verdict = judge(good[:110] + worse[110:], window=90, tolerance=0.005)
    assert not verdict.healthy and "x persistence's" in verdict.reasons[0]
    uncovered = scored_rows(persistence, persistence, rng.random(200) < 0.4)
    verdict = judge(uncovered, window=90, tolerance=0.005)
    assert not verdict.healthy and "interval covered" in verdict.reasons[-1]
