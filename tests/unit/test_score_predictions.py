"""scripts/score_predictions.py: a known log against a known CSV (figures worked out by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_wrapper.data.candles import load_candles
from scripts.score_predictions import main, read_log, score

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
