"""Readiness and JSON logs end to end against the live gateway."""

from __future__ import annotations

import httpx
import orjson

from tests.helpers import (
    LiveGateway,
    TrainedVersions,
    real_windows,
    wait_for,
)


def test_ready_names_the_served_model(live_gateway: LiveGateway, trained: TrainedVersions) -> None:
    r = httpx.get(f"{live_gateway.url}/ready")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ready",
        "model_alias": "staging",
        "model_version": trained.staging,
    }


def test_one_json_log_line_per_request(live_gateway: LiveGateway, trained: TrainedVersions) -> None:
    gateway = live_gateway  # LOG_FORMAT=json
    window = real_windows(1)[0].tolist()
    # Only what this request logs: the shared gateway's earlier lines include ones another
    # test cut short on purpose (the full-disk test limits the process's file sizes).
    start = len(gateway.log())
    httpx.post(f"{gateway.url}/predict", json={"X": window}, headers={"X-Request-ID": "log-1"})

    def access_lines() -> list[dict[str, object]]:
        text = gateway.log()[start:]
        # Whole lines only: the gateway may be writing the last one as it is read.
        text = text[: text.rfind("\n") + 1]
        lines = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("request_id") == "log-1"]

    wait_for(lambda: len(access_lines()) == 1, 10, "the access log line")
    line = access_lines()[0]
    assert line["logger"] == "gateway.access"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/predict", 200)
    assert line["model_version"] == trained.staging
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] > 0
