"""scripts/score_predictions.py on the live gateway's own prediction log against the candles its
windows came from."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from model_wrapper.data.candles import load_candles
from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.model.features import window_from_candles
from scripts.score_predictions import read_log, score
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
