"""The prediction log (PREDICTION_LOG): a line per answered prediction under load with the right
fields, size rotation, a disk too slow (lines dropped and counted, the caller never waits), and
a full disk on the live gateway (a file-size limit: predictions still 200, no half line, every
answer either written or counted as dropped, writing resumes once there is room)."""

from __future__ import annotations

import hashlib
import os
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics
from gateway.prediction_log import Entry, PredictionLog
from gateway.settings import Settings, SettingsError
from tests.helpers import SEQ_LEN, LiveGateway, real_windows, wait_for


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


def counted(metrics: Metrics, name: str, **labels: str) -> float:
    """A sample of an in-process Metrics, read through its own exposition."""
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


CLOSE_COLUMN = 3  # "close" in the served version's feature names


def entry(
    i: int,
    answer: dict[str, Any] | None = None,
    x: np.ndarray | None = None,
    latency_s: float = 0.001,
    candle_time: str | None = None,
    role: str = "served",
) -> Entry:
    return Entry(
        time.time(),
        f"req-{i}",
        role,
        np.full((SEQ_LEN, 18), float(i), np.float32) if x is None else x,
        CLOSE_COLUMN,
        answer or {"pred_btc_close_next": 1.0 + i, "model_alias": "a", "model_version": "1"},
        candle_time,
        latency_s,
    )


# ---------------------------------------------------------------------------------------------
# The module on its own, with real files


def test_settings_turn_the_log_on_and_refuse_bad_values() -> None:
    assert Settings.from_environ({}).prediction_log is None
    s = Settings.from_environ(
        {
            "PREDICTION_LOG": "/var/log/p-{pid}.jsonl",
            "PREDICTION_LOG_INPUTS": "true",
            "PREDICTION_LOG_MAX_BYTES": "65536",
            "PREDICTION_LOG_BACKUPS": "3",
        }
    )
    assert (s.prediction_log, s.prediction_log_inputs) == ("/var/log/p-{pid}.jsonl", True)
    assert (s.prediction_log_max_bytes, s.prediction_log_backups) == (65536, 3)
    for name, value in (
        ("PREDICTION_LOG_MAX_BYTES", "10"),
        ("PREDICTION_LOG_BACKUPS", "0"),
        ("PREDICTION_LOG_INPUTS", "yes"),
    ):
        with pytest.raises(SettingsError, match=name):
            Settings.from_environ({name: value})


def test_rotation_keeps_whole_lines_and_the_newest_files(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    plog = PredictionLog(path, Metrics(), max_bytes=4096, backups=2)
    plog.start()
    for i in range(200):
        plog.record(entry(i))
    plog.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["predictions.jsonl", "predictions.jsonl.1", "predictions.jsonl.2"]
    for f in tmp_path.iterdir():
        assert f.stat().st_size <= 4096
    lines = read_lines(path)
    # The newest lines survive, in order, and the oldest went with the deleted backups.
    ids = [int(line["request_id"].split("-")[1]) for line in read_lines(path)]
    assert sorted(ids) == list(range(200 - len(ids), 200))
    assert len(lines) < 200


def test_a_line_has_the_window_digest_or_the_window_itself(tmp_path: Path) -> None:
    x = real_windows(1)[0].astype(np.float32)
    answer = {
        "pred_btc_close_next": 123.5,
        "model_alias": "staging",
        "model_version": "3",
        "pred_interval": {"lower": 100.0, "upper": 150.0, "level": 0.8},
    }
    for inputs in (False, True):
        path = tmp_path / f"inputs-{inputs}.jsonl"
        plog = PredictionLog(path, Metrics(), max_bytes=1 << 20, backups=1, include_inputs=inputs)
        plog.start()
        plog.record(entry(1, answer, x, 0.0123, "2024-01-02T00:00:00+00:00"))
        plog.close()
        (line,) = read_lines(path)
        assert line["request_id"] == "req-1"
        assert (line["role"], line["candle_time"]) == ("served", "2024-01-02T00:00:00+00:00")
        assert (line["model_alias"], line["model_version"]) == ("staging", "3")
        assert line["last_close"] == float(x[-1, CLOSE_COLUMN])
        assert line["pred_btc_close_next"] == 123.5
        assert line["pred_interval"] == answer["pred_interval"]
        assert line["latency_ms"] == 12.3
        if inputs:
            assert np.array_equal(np.asarray(line["X"], np.float32), x)
            assert "x_sha256" not in line
        else:
            assert line["x_sha256"] == hashlib.sha256(x.astype("<f4").tobytes()).hexdigest()
            assert "X" not in line


def test_a_slow_disk_drops_and_counts_lines_and_never_makes_the_caller_wait(
    tmp_path: Path,
) -> None:
    # A named pipe nobody reads stands in for a disk that stopped answering: once the pipe's
    # buffer is full, the writer thread blocks in write() like on a hung disk.
    fifo = tmp_path / "stuck"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    metrics = Metrics()
    plog = PredictionLog(fifo, metrics, max_bytes=1 << 30, backups=1, queue_size=50)
    plog.start()
    n = 3000
    for i in range(n):
        plog.record(entry(i))  # never blocks: the loop just finishes
    dropped = counted(metrics, "gateway_prediction_log_dropped_total", reason="queue_full")
    assert dropped > 0
    # The disk comes back: everything not dropped gets written, whole.
    received = bytearray()
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            try:
                chunk = os.read(reader, 1 << 16)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            received.extend(chunk)

    drainer = threading.Thread(target=drain)
    drainer.start()
    plog.close(timeout=30)
    wait_for(
        lambda: received.endswith(b"\n") and received.count(b"\n") == n - dropped,
        10,
        "the pipe to drain",
    )
    done.set()
    drainer.join()
    os.close(reader)
    lines = [orjson.loads(line) for line in bytes(received).splitlines()]
    assert len(lines) == n - dropped == counted(metrics, "gateway_prediction_log_lines_total")


# ---------------------------------------------------------------------------------------------
# The live gateway


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
