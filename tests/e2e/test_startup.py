"""Start-up against gateway processes of their own: waiting for a late registry, and serving on
after the start-up timeout until /reload loads."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from gateway.errors import NOT_LOADED_DETAIL
from tests.fault_proxy import FaultProxy
from tests.helpers import (
    Registry,
    TrainedVersions,
    free_port,
    real_windows,
    run_gateway,
    wait_for,
)

# End to end: the live gateway serving the real model ----------------------------------------


def post(gw_url: str, path: str, body: object = None) -> httpx.Response:
    content = orjson.dumps(body) if body is not None else b""
    return httpx.post(f"{gw_url}{path}", content=content, timeout=30)


def _window() -> list[list[float]]:
    return list(real_windows(1)[0].tolist())


def test_startup_waits_for_the_registry_then_loads(
    registry: Registry, trained: TrainedVersions, tmp_path: Path
) -> None:
    """The port binds at once; /predict is 503 until a registry appears; then it loads. (The
    registry "appears" when a proxy in front of the shared one starts listening.)"""
    env = {"MODEL_LOAD_RETRY_INTERVAL": "0.5"}
    with FaultProxy(registry.port, refusing=True) as late:
        env["MLFLOW_TRACKING_URI"] = late.uri
        with run_gateway(env, tmp_path, wait_loaded=False) as gw:
            assert gw.health() == {
                "status": "ok",
                "model_loaded": False,
                "model_alias": None,
                "model_version": None,
                "model_runtime": None,
                "shadow": None,
            }
            r = post(gw.url, "/predict", {"X": _window()})
            assert (r.status_code, r.json()) == (503, {"detail": NOT_LOADED_DETAIL})
            wait_for(lambda: "model not ready (attempt 1)" in gw.log(), 60, "a refused attempt")
            late.forward()
            gw.wait_loaded(timeout=120)
            assert post(gw.url, "/predict", {"X": _window()}).status_code == 200


def test_after_the_startup_timeout_the_server_runs_and_reload_loads(
    registry: Registry, trained: TrainedVersions, tmp_path: Path
) -> None:
    env = {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "MODEL_LOAD_RETRY_INTERVAL": "0.2",
        "MODEL_LOAD_TIMEOUT": "0.5",
    }
    with run_gateway(env, tmp_path, wait_loaded=False) as gw:
        wait_for(lambda: "giving up loading" in gw.log(), 60, "the start-up retries to give up")
        assert gw.health()["model_loaded"] is False
        r = post(gw.url, "/reload")
        assert r.status_code == 500
        assert r.json()["detail"].startswith("모델 리로드 실패: registry unreachable")
