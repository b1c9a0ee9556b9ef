"""The prediction log on the live gateway: a line per answered prediction under load with the
right fields, and a full disk (a file-size limit: predictions still 200, no half line)."""

from __future__ import annotations

import hashlib
import resource
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import LiveGateway, real_windows, wait_for


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the log and its rotated files, each parsed (a half line fails here)."""
    files = sorted(path.parent.glob(path.name + "*"))
    return [orjson.loads(line) for f in files for line in f.read_bytes().splitlines()]


def log_metrics(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out = {"written": 0.0, "queue_full": 0.0, "write_error": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "gateway_prediction_log_lines_total":
                out["written"] = s.value
            elif s.name == "gateway_prediction_log_dropped_total":
                out[s.labels["reason"]] = s.value
    return out


CLOSE_COLUMN = 3  # "close" in the served version's feature names


# ---------------------------------------------------------------------------------------------
# The module on its own, with real files


def test_every_answer_under_load_is_one_line_with_its_fields(
    live_gateway: LiveGateway,
) -> None:
    windows = real_windows(40, seed=500)
    n = 200
    before = log_metrics(live_gateway.url)

    def call(i: int) -> dict[str, Any]:
        r = http.post(
            "/predict",
            json={"X": windows[i % len(windows)].tolist()},
            headers={"X-Request-ID": f"load-{i}"},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    with (
        httpx.Client(base_url=live_gateway.url, timeout=60) as http,
        ThreadPoolExecutor(16) as pool,
    ):
        answers = list(pool.map(call, range(n)))
    wait_for(
        lambda: log_metrics(live_gateway.url)["written"] - before["written"] >= n,
        20,
        "the prediction log to catch up",
    )
    after = log_metrics(live_gateway.url)
    assert after["queue_full"] == before["queue_full"]
    assert after["write_error"] == before["write_error"]
    lines = {
        line["request_id"]: line
        for line in read_lines(live_gateway.prediction_log)
        if line["request_id"].startswith("load-")
    }
    assert len(lines) == n
    for i, answer in enumerate(answers):
        line = lines[f"load-{i}"]
        x = windows[i % len(windows)].astype(np.float32)
        assert line["pred_btc_close_next"] == answer["pred_btc_close_next"]
        assert line["model_version"] == answer["model_version"]
        assert line["model_alias"] == answer["model_alias"]
        assert line["pred_interval"] == answer.get("pred_interval")
        # The close as the body had it (float64); the digest is of the window as float32.
        assert line["last_close"] == float(windows[i % len(windows)][-1, CLOSE_COLUMN])
        assert line["x_sha256"] == hashlib.sha256(x.tobytes()).hexdigest()
        assert line["latency_ms"] > 0
        assert line["time"].endswith("+00:00")


def test_a_full_disk_drops_and_counts_lines_and_predictions_still_answer(
    live_gateway: LiveGateway,
) -> None:
    window = real_windows(1, seed=900)[0].tolist()
    path = live_gateway.prediction_log

    def predict(tag: str, n: int) -> None:
        for i in range(n):
            r = httpx.post(
                f"{live_gateway.url}/predict",
                json={"X": window},
                headers={"X-Request-ID": f"{tag}-{i}"},
                timeout=30,
            )
            assert r.status_code == 200, r.text

    predict("warm", 1)
    wait_for(lambda: any(line["request_id"] == "warm-0" for line in read_lines(path)), 10, "a line")
    line_size = len(path.read_bytes().splitlines()[-1]) + 1
    before = log_metrics(live_gateway.url)
    # The gateway's files may not grow past room for one and a half more lines: the next line
    # fits, the one after is cut off by the limit (and must be taken back), the rest fail.
    limit = path.stat().st_size + line_size * 3 // 2
    old = resource.prlimit(live_gateway.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(live_gateway.pid, resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        predict("full", 20)
        wait_for(
            lambda: (
                sum(
                    log_metrics(live_gateway.url)[k] - before[k] for k in ("written", "write_error")
                )
                >= 20
            ),
            20,
            "the 20 lines to be written or dropped",
        )
    finally:
        resource.prlimit(live_gateway.pid, resource.RLIMIT_FSIZE, old)
    during = log_metrics(live_gateway.url)
    assert during["written"] - before["written"] == 1
    assert during["write_error"] - before["write_error"] == 19
    assert path.stat().st_size <= limit
    full_lines = [
        line["request_id"] for line in read_lines(path) if line["request_id"].startswith("full-")
    ]
    assert full_lines == ["full-0"]
    # Room again: lines are written again.
    predict("after", 3)
    wait_for(
        lambda: (
            [line["request_id"] for line in read_lines(path)][-3:]
            == ["after-0", "after-1", "after-2"]
        ),
        10,
        "writing to resume",
    )
