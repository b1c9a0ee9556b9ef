"""The live gateway's own prediction log, scored against the candles its windows came from
(model_wrapper/evaluation/live.py): by last close for a client that sends no candle_time, by
candle_time for the Python client's candles."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.client import GatewayClient
from model_wrapper.data.candles import load_candles
from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.evaluation.live import figures, match, read_lines
from model_wrapper.model.features import window_from_candles
from tests.helpers import SEQ_LEN, LiveGateway, wait_for


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

    def ours(prefix: str) -> list[dict[str, object]]:
        paths = sorted(live_gateway.prediction_log.parent.glob("predictions.jsonl*"))
        lines, _ = read_lines(paths)
        return [x for x in lines if str(x["request_id"]).startswith(prefix)]

    wait_for(lambda: len(ours("score-")) == len(ends), 10, "the prediction log lines")
    matched = match(ours("score-"), load_candles(csv))
    (live,) = figures(matched).values()
    assert {live.version} == versions and live.role == "served"
    assert matched.counts["scored"] == len(ends)
    assert matched.counts["unmatched"] == matched.counts["ambiguous"] == 0
    assert matched.counts["pending"] == 0
    closes = candles["close"].to_numpy()
    actual = np.array([closes[end] for end in ends])
    expected = np.mean(np.abs(np.array([forecasts[end] for end in ends]) - actual))
    assert live.metrics["live_mae"] == pytest.approx(expected)
    persistence = np.mean(np.abs(np.array([closes[end - 1] for end in ends]) - actual))
    assert live.metrics["live_persistence_mae"] == pytest.approx(persistence)


def test_the_clients_candles_carry_their_time_and_match_by_it(
    live_gateway: LiveGateway, tmp_path: Path
) -> None:
    """GatewayClient.predict(candles) sends the last candle's time; the line is matched by it
    (the last-close rule is never needed), and the forecast scored against the next close."""
    candles = load_candles_frame(tmp_path)
    with GatewayClient(live_gateway.url) as gw:
        answers = [gw.predict(candles.iloc[:end], request_id=f"timed-{end}") for end in (50, 60)]

    def ours() -> list[dict[str, object]]:
        paths = sorted(live_gateway.prediction_log.parent.glob("predictions.jsonl*"))
        lines, _ = read_lines(paths)
        return [x for x in lines if str(x["request_id"]).startswith("timed-")]

    wait_for(lambda: len(ours()) == 2, 10, "the prediction log lines")
    lines = ours()
    assert [line["candle_time"] for line in lines] == [
        candles.index[end - 1].isoformat() for end in (50, 60)
    ]
    for line in lines:
        line["last_close"] = None  # only candle_time can match it now
    matched = match(lines, candles)
    assert matched.counts["scored"] == 2
    closes = candles["close"].to_numpy()
    scored = sorted(matched.scored, key=lambda s: s.candle)
    assert [s.actual for s in scored] == [closes[50], closes[60]]
    assert [s.forecast for s in scored] == [a.pred_btc_close_next for a in answers]


def load_candles_frame(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Seeded candles as a client has them: read back from a CSV, times as the index."""
    csv = tmp_path / "timed.csv"
    synthetic_candles(70, seed=4343).rename_axis("timestamp").to_csv(csv)
    return load_candles(csv)
