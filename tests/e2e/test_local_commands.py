"""`make registry`, `make stop` and `make run` on ports of one's choosing: the local registry
starts, is reused and stops; a port held by something else is named; `make run` honours
MLFLOW_TRACKING_URI and GATEWAY_PORT."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from scripts.local_registry import is_healthy
from tests.helpers import ROOT, Registry, TrainedVersions, free_port, stop_process, wait_for


def local_registry(action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.local_registry", action],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_local_registry_starts_on_its_port_is_reused_and_stops(tmp_path: Path) -> None:
    port = free_port()
    env = {"REGISTRY_PORT": str(port), "REGISTRY_DIR": str(tmp_path / "mlflow")}
    uri = f"http://127.0.0.1:{port}"
    try:
        started = local_registry("start", env)
        assert started.returncode == 0, started.stderr
        assert f"MLFLOW_TRACKING_URI={uri}" in started.stdout
        assert is_healthy(uri)
        again = local_registry("start", env)
        assert "already running" in again.stdout
    finally:
        stopped = local_registry("stop", env)
    assert "stopped" in stopped.stdout
    wait_for(lambda: not is_healthy(uri, timeout=0.5), 30, "the registry to stop")


def test_a_port_held_by_something_else_is_named(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {"REGISTRY_PORT": str(port), "REGISTRY_DIR": str(tmp_path / "mlflow")}
        refused = local_registry("start", env)
    assert refused.returncode != 0
    assert f"port {port} is taken" in refused.stderr and "REGISTRY_PORT" in refused.stderr


def test_make_run_serves_on_the_gateway_port_against_the_given_registry(
    registry: Registry, trained: TrainedVersions, tmp_path: Path
) -> None:
    """The shared registry already has @staging: run_local trains nothing and serves it."""
    port = free_port()
    log = tmp_path / "run_local.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.uri, "GATEWAY_PORT": str(port)}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "scripts.run_local"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def loaded() -> bool:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
            except httpx.TransportError:
                return False
            return bool(health["model_loaded"])

        wait_for(loaded, 120, "make run's gateway on GATEWAY_PORT")
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
    finally:
        stop_process(process)
    assert health["model_version"] == trained.staging
    text = log.read_text()
    assert f"using the MLflow server at {registry.uri}" in text
    assert f"curl -s http://127.0.0.1:{port}/health" in text
