"""Readiness, Prometheus metrics and request ids against the app in this process with a
stand-in model."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from tests.helpers import (
    real_windows,
    wait_for,
)
from tests.in_process import StandInSource, serve_in_process
from tests.receiver import run_receiver


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed by prometheus-client's own parser: {(sample name, labels): value}."""
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def app() -> Iterator[TestClient]:
    """The app in this process, serving stand-in version 1 behind @staging."""
    with serve_in_process() as client:
        yield client


def test_ready_is_503_before_a_model_and_200_after() -> None:
    source = StandInSource()
    source.gate.clear()  # the start-up load waits
    with serve_in_process(source=source, wait_loaded=False) as client:
        r = client.get("/ready")
        assert (r.status_code, r.json()) == (503, {"status": "not ready", "model_loaded": False})
        # Liveness stays 200 while not ready.
        assert client.get("/health").status_code == 200
        source.gate.set()
        wait_for(lambda: client.get("/ready").status_code == 200, 10, "/ready to turn 200")
        assert client.get("/ready").json()["model_version"] == "1"


def test_metrics_move_with_requests_reloads_and_callbacks(app: TestClient) -> None:
    before = scrape(app)
    window = real_windows(1)[0].tolist()
    for _ in range(3):
        assert app.post("/predict", json={"X": window}).status_code == 200
    assert app.post("/predict", json={"X": [[1]]}).status_code == 400
    assert app.post("/reload").status_code == 200
    assert app.post("/reload", json={"alias": "nope"}).status_code == 500
    with run_receiver("ok") as ok, run_receiver("error") as failing:
        for url in (ok.url, failing.url):
            r = app.post("/predict", json={"X": window, "callback_url": url})
            assert r.status_code == 200
    after = scrape(app)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("gateway_requests_total", route="/predict", method="POST", status="200") == 5
    assert moved("gateway_requests_total", route="/predict", method="POST", status="400") == 1
    assert moved("gateway_requests_total", route="/reload", method="POST", status="500") == 1
    assert moved("gateway_request_duration_seconds_count", route="/predict") == 6
    assert moved("gateway_predictions_total") == 5
    assert moved("gateway_batch_size_count") >= 1
    assert moved("gateway_reloads_total", trigger="api", result="success") == 1
    assert moved("gateway_reloads_total", trigger="api", result="failure") == 1
    assert moved("gateway_model_load_failures_total") == 1
    assert moved("gateway_callbacks_total", result="delivered") == 1
    assert moved("gateway_callbacks_total", result="failed") == 1
    assert value(after, "gateway_model_info", alias="staging", version="1") == 1
    assert value(after, "gateway_reloads_total", trigger="startup", result="success") == 1


def test_request_ids_are_echoed_generated_and_sent_on_the_callback(app: TestClient) -> None:
    window = real_windows(1)[0].tolist()
    r = app.post("/predict", json={"X": window}, headers={"X-Request-ID": "req-42"})
    assert r.headers["X-Request-ID"] == "req-42"
    generated = app.get("/health").headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert app.get("/nope").headers["X-Request-ID"]  # errors carry one too
    with run_receiver("ok") as receiver:
        r = app.post(
            "/predict",
            json={"X": window, "callback_url": receiver.url},
            headers={"X-Request-ID": "cb-7"},
        )
        assert r.json()["posted_to_callback"] is True
        assert receiver.received[0][0]["X-Request-ID"] == "cb-7"
