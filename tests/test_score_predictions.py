"""scripts/score_predictions.py: a known log against a known CSV (figures worked out by hand), and
the live gateway's own prediction log against the candles its windows came from."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from model_wrapper.data.candles import load_candles
from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.model.features import window_from_candles
from scripts.score_predictions import main, read_log, score
from tests.helpers import SEQ_LEN, LiveGateway, wait_for

CSV = """timestamp,open,high,low,close,volume
2024-01-01T00:00:00Z,100,101,99,100,5
2024-01-02T00:00:00Z,100,111,99,110,5
2024-01-03T00:00:00Z,110,111,104,105,5
2024-01-04T00:00:00Z,105,121,104,120,5
2024-01-05T00:00:00Z,120,121,119,120,5
2024-01-06T00:00:00Z,120,131,119,130,5
"""


def line(version: str, last: float, pred: float, time: str, **extra: object) -> str:
    fields = {
        "time": time,
        "request_id": "r",
        "model_alias": "staging",
        "model_version": version,
        "last_close": last,
        "x_sha256": "0" * 64,
        "pred_btc_close_next": pred,
        "pred_interval": None,
        "latency_ms": 1.0,
        **extra,
    }
    return json.dumps(fields) + "\n"


def test_known_log_against_known_candles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "candles.csv").write_text(CSV)
    day = "2024-01-{:02d}T12:00:00+00:00".format
    log = tmp_path / "predictions.jsonl"
    log.write_text(
        # v1: from 100 (actual 110): error 2, persistence 10, the interval holds 110.
        line("1", 100.0, 108.0, day(1), pred_interval={"lower": 105, "upper": 115, "level": 0.8})
        # v1: from 110 (actual 105): error 7, persistence 5, the interval misses.
        + line("1", 110.0, 112.0, day(2), pred_interval={"lower": 111, "upper": 113, "level": 0.8})
        # v2: from 105 (actual 120): error 5, persistence 15.
        + line("2", 105.0, 115.0, day(3))
        + line("2", 999.0, 1.0, day(3))  # no candle closed at 999: unmatched
        + line("2", 110.0, 1.0, "2024-01-01T12:00:00+00:00")  # before the 110 candle: unmatched
        + line("1", 120.0, 1.0, day(6))  # two candles closed at 120: ambiguous
        + line("1", 130.0, 1.0, day(6))  # the last candle: its next close is not known yet
        + '{"time": "2024-01-06T1'  # a line cut off by a full disk
    )
    lines, unreadable = read_log([log])
    report = score(lines, load_candles(tmp_path / "candles.csv"), unreadable)
    v1, v2 = report.versions
    assert (v1.version, v1.scored, v1.mae, v1.persistence_mae) == ("1", 2, 4.5, 7.5)
    assert v1.skill == pytest.approx(1 - 4.5 / 7.5)
    assert (v1.interval_lines, v1.interval_coverage) == (2, 0.5)
    assert (v2.version, v2.scored, v2.mae, v2.persistence_mae) == ("2", 1, 5.0, 15.0)
    assert (v2.interval_lines, v2.interval_coverage) == (0, None)
    assert (report.lines, report.unmatched, report.ambiguous, report.pending) == (8, 2, 1, 1)
    assert report.unreadable == 1
    # The command line prints the same figures.
    main(["--candles", str(tmp_path / "candles.csv"), "--json", str(log)])
    printed = json.loads(capsys.readouterr().out)
    assert [v["mae"] for v in printed["versions"]] == [4.5, 5.0]


def test_the_live_log_scores_against_the_candles_its_windows_came_from(
    live_gateway: LiveGateway, tmp_path: Path
) -> None:
    candles = synthetic_candles(90, seed=4242)
    csv = tmp_path / "candles.csv"
    candles.rename_axis("timestamp").to_csv(csv)
    ends = range(40, 89)  # windows ending at candle 39 ... 87: each has a next candle
    forecasts = {}
    versions = set()
    with httpx.Client(base_url=live_gateway.url, timeout=30) as http:
        for end in ends:
            window = window_from_candles(candles.iloc[:end], SEQ_LEN)
            r = http.post("/predict", json={"X": window}, headers={"X-Request-ID": f"score-{end}"})
            assert r.status_code == 200, r.text
            forecasts[end] = r.json()["pred_btc_close_next"]
            versions.add(r.json()["model_version"])

    def ours() -> list[dict[str, object]]:
        lines, _ = read_log(sorted(live_gateway.prediction_log.parent.glob("predictions.jsonl*")))
        return [x for x in lines if str(x["request_id"]).startswith("score-")]

    wait_for(lambda: len(ours()) == len(ends), 10, "the prediction log lines")
    report = score(ours(), load_candles(csv))
    (version,) = report.versions
    assert {version.version} == versions
    assert version.scored == len(ends)
    assert report.unmatched == report.ambiguous == report.pending == 0
    closes = candles["close"].to_numpy()
    actual = np.array([closes[end] for end in ends])
    expected = np.mean(np.abs(np.array([forecasts[end] for end in ends]) - actual))
    assert version.mae == pytest.approx(expected)
    persistence = np.mean(np.abs(np.array([closes[end - 1] for end in ends]) - actual))
    assert version.persistence_mae == pytest.approx(persistence)
