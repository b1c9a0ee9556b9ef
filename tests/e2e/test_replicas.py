"""Scale-out: replicas and workers follow an alias moved once in MLflow, by polling.

Two replicas: a single-process gateway and `uvicorn --workers 2` (itself two processes that
each poll on their own), so three processes follow the move."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import (
    MODEL_NAME,
    BadVersions,
    GatewayProcess,
    Registry,
    TrainedVersions,
    real_windows,
    run_gateway,
    wait_for,
)

POLL_SECONDS = 1.0
LOAD_PAUSE = 0.02  # seconds between rounds of the light load (a cadence, not a wait)


def worker_versions(gw: GatewayProcess) -> dict[str, str]:
    """{worker pid: version it serves}, from the live workers' model-info samples."""
    assert gw.process.poll() is None, gw.log()[-3000:]
    try:
        text = gw.http.get("/metrics", timeout=10).text
    except httpx.TransportError:  # not listening yet
        return {}
    return {
        s.labels["pid"]: s.labels["version"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gateway_model_info" and s.value == 1
    }


def load_failures(gw: GatewayProcess) -> float:
    text = gw.http.get("/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gateway_model_load_failures_total"
    )


# The alias these gateways follow: the run's registry is shared with the other workers, whose
# tests expect @staging where it is.
ALIAS = "replicas"


@pytest.fixture
def own_alias(trained: TrainedVersions) -> Iterator[MlflowClient]:
    """ALIAS on the staging version, for this test to move; removed afterwards."""
    client = MlflowClient()
    client.set_registered_model_alias(MODEL_NAME, ALIAS, trained.staging)
    try:
        yield client
    finally:
        client.delete_registered_model_alias(MODEL_NAME, ALIAS)


def test_replicas_and_workers_follow_an_alias_move(
    registry: Registry,
    trained: TrainedVersions,
    bad_versions: BadVersions,
    own_alias: MlflowClient,
    tmp_path: Path,
) -> None:
    env = {
        "MLFLOW_TRACKING_URI": registry.uri,
        "MODEL_ALIAS": ALIAS,
        "MODEL_POLL_INTERVAL": str(POLL_SECONDS),
        "ACCESS_LOG": "false",
    }
    with contextlib.ExitStack() as stack:
        replica = stack.enter_context(run_gateway(env, tmp_path))
        workers = stack.enter_context(run_gateway(env, tmp_path, wait_loaded=False, workers=2))
        gateways = (replica, workers)
        wait_for(lambda: len(worker_versions(workers)) == 2, 180, "both workers to load")
        assert set(worker_versions(workers).values()) == {trained.staging}

        # Light load on every process during the move; every answer must be a 200.
        stop = threading.Event()
        outcomes: list[tuple[int, str | None]] = []
        window = real_windows(1)[0].tolist()

        def load() -> None:
            # No keep-alive: a new connection each time, so the kernel spreads them over the
            # workers.
            no_keepalive = httpx.Limits(max_keepalive_connections=0)
            with httpx.Client(timeout=30, limits=no_keepalive) as http:
                while not stop.wait(LOAD_PAUSE):
                    for gw in gateways:
                        r = http.post(f"{gw.url}/predict", json={"X": window})
                        version = r.json().get("model_version") if r.status_code == 200 else None
                        outcomes.append((r.status_code, version))

        loader = threading.Thread(target=load)
        loader.start()
        try:
            own_alias.set_registered_model_alias(MODEL_NAME, ALIAS, trained.production)
            moved_at = time.monotonic()

            def converged() -> bool:
                return replica.health()["model_version"] == trained.production and set(
                    worker_versions(workers).values()
                ) == {trained.production}

            wait_for(converged, 120, "every replica and worker to serve the new version")
            convergence = time.monotonic() - moved_at

            failures_before = [load_failures(gw) for gw in gateways]
            own_alias.set_registered_model_alias(MODEL_NAME, ALIAS, bad_versions.broken)
            wait_for(
                lambda: all(
                    load_failures(gw) > before
                    for gw, before in zip(gateways, failures_before, strict=True)
                ),
                120,
                "every process to count the failed load",
            )
        finally:
            stop.set()
            loader.join(60)
        assert replica.health()["model_version"] == trained.production
        assert set(worker_versions(workers).values()) == {trained.production}
    statuses = [status for status, _ in outcomes]
    print(
        f"\nconvergence {convergence:.2f} s (poll {POLL_SECONDS} s); "
        f"{len(statuses)} requests during the moves, non-200: {len(statuses) - statuses.count(200)}"
    )
    assert statuses.count(200) == len(statuses) > 0
    assert {version for _, version in outcomes} == {trained.staging, trained.production}
