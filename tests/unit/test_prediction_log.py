"""The prediction log module on its own, with real files: settings, size rotation, the line's
fields, and a disk too slow (lines dropped and counted, the caller never waits)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics
from gateway.prediction_log import Entry, PredictionLog
from gateway.settings import Settings, SettingsError
from tests.helpers import SEQ_LEN, real_windows, wait_for


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the log and its rotated files, each parsed (a half line fails here)."""
    files = sorted(path.parent.glob(path.name + "*"))
    return [orjson.loads(line) for f in files for line in f.read_bytes().splitlines()]


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
