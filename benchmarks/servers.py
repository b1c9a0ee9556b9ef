"""The servers under test: how each starts, when it is ready, and what it answers."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.procs import http_status, post_json

CONCURRENCY = (1, 16, 64)
GATEWAY_CONCURRENCY = (1, 16, 64, 256)
# The targets are at 1 and 64: what a second worker, or a shadow, changes there.
WORKERS_CONCURRENCY = (1, 64)
# The batch route: a few clients each sending 64 windows a request.
OIP_CONCURRENCY = (1, 4, 16)
WORKERS = 2
# The /health extra that names the serving runtime (issue 13, point 1), as it may be spelled.
RUNTIME_FIELDS = ("model_runtime", "runtime")


@dataclass(frozen=True)
class ServerSpec:
    key: str  # "floor", "gateway", "serve" (b) or "keras" (c)
    label: str
    argv: list[str]
    shown: str  # the command as a user would type it
    env: dict[str, str]
    ready: Callable[[int], bool]  # port -> ready to answer predictions?
    predict_path: str
    bodies: Path  # one JSON body per line
    concurrency: tuple[int, ...]
    read_prediction: Callable[[Any], float] | None  # the first window's answer, from the body
    ready_timeout: float = 240.0
    runtime_field: bool = False  # its /health may say what runs the network


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def _gateway_ready(port: int) -> bool:
    # /health answers at once; the model loads in the background.
    health = _get_json(f"http://127.0.0.1:{port}/health")
    return bool(isinstance(health, dict) and health.get("model_loaded"))


def _shadow_ready(port: int) -> bool:
    health = _get_json(f"http://127.0.0.1:{port}/health")
    if not isinstance(health, dict) or not isinstance(health.get("shadow"), dict):
        return False
    return bool(health.get("model_loaded") and health["shadow"].get("model_loaded"))


def _first_output(body: Any) -> float:
    """The first window's point forecast from an Open Inference Protocol answer."""
    (output,) = [o for o in body["outputs"] if o["name"] == "pred_btc_close_next"]
    return float(output["data"][0])


def _workers_ready(port: int) -> bool:
    # Each worker loads its own model; /metrics (multiprocess mode) lists every live worker's.
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return False
    loaded = {
        s.labels.get("pid")
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gateway_model_info" and s.value == 1
    }
    return len(loaded) >= WORKERS


def read_runtime(port: int) -> str:
    """What runs the network, from the gateway's /health ("" when it does not say)."""
    health = _get_json(f"http://127.0.0.1:{port}/health")
    if not isinstance(health, dict):
        return ""
    value = next((health[k] for k in RUNTIME_FIELDS if health.get(k) is not None), None)
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _status_ready(path: str) -> Callable[[int], bool]:
    return lambda port: http_status(f"http://127.0.0.1:{port}{path}") == 200


def server_specs(
    setup: dict[str, Any], workdir: Path, env: dict[str, str], port: int, serve_workers: int | None
) -> list[ServerSpec]:
    """In the order they run; `setup` is benchmarks.models' models.json."""
    py, mlflow = sys.executable, str(Path(sys.executable).with_name("mlflow"))
    metrics_dir = workdir / "prometheus-multiproc"
    metrics_dir.mkdir(exist_ok=True)
    host = ["--host", "127.0.0.1", "--port", str(port)]
    gateway_env = {
        "REGISTERED_MODEL_NAME": setup["model_name"],
        "MODEL_ALIAS": setup["alias"],
        "MODEL_LOAD_RETRY_INTERVAL": "1",
    }
    # No --workers: what a new user gets, which is 1 uvicorn worker in MLflow 3.17.
    serve_args = ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    workers = f" --workers {serve_workers}" if serve_workers else ""
    serve_args += workers.split()
    workers_label = workers.strip() or "default workers (1 uvicorn worker)"
    shadow_env = {"SHADOW_ALIAS": setup["shadow_alias"], "SHADOW_SAMPLE": "1"}
    b_uri = f"models:/{setup['model_name']}/{setup['version']}"
    c_uri = f"models:/{setup['keras_model_name']}/{setup['keras_version']}"
    return [
        ServerSpec(
            "floor", "minimal Starlette app under the gateway's uvicorn settings, 1 worker",
            [py, "-m", "benchmarks.floor_app", *host], "python -m benchmarks.floor_app",
            env, _status_ready("/health"), "/predict", workdir / "gateway.jsonl",
            CONCURRENCY, None, 60,
        ),
        ServerSpec(
            "gateway", f"serving {setup['model_name']}@{setup['alias']} with default settings",
            [py, "-m", "gateway", *host],
            f"REGISTERED_MODEL_NAME={setup['model_name']} MODEL_ALIAS={setup['alias']} "
            "python -m gateway --host 127.0.0.1 --port PORT",
            {**env, **gateway_env}, _gateway_ready, "/predict", workdir / "gateway.jsonl",
            GATEWAY_CONCURRENCY, lambda body: float(body["pred_btc_close_next"]),
            runtime_field=True,
        ),
        ServerSpec(
            "gateway-shadow",
            f"the same, with the shadow on: SHADOW_ALIAS={setup['shadow_alias']} (the same "
            "version behind a second alias), every prediction mirrored",
            [py, "-m", "gateway", *host],
            f"SHADOW_ALIAS={setup['shadow_alias']} REGISTERED_MODEL_NAME={setup['model_name']} "
            f"MODEL_ALIAS={setup['alias']} python -m gateway --host 127.0.0.1 --port PORT",
            {**env, **gateway_env, **shadow_env}, _shadow_ready, "/predict",
            workdir / "gateway.jsonl", WORKERS_CONCURRENCY,
            lambda body: float(body["pred_btc_close_next"]), runtime_field=True,
        ),
        ServerSpec(
            "gateway-oip",
            f"the same gateway, its batch route (Open Inference Protocol), "
            f"{setup['oip_batch']} windows a request",
            [py, "-m", "gateway", *host],
            f"REGISTERED_MODEL_NAME={setup['model_name']} MODEL_ALIAS={setup['alias']} "
            "python -m gateway --host 127.0.0.1 --port PORT",
            {**env, **gateway_env}, _gateway_ready,
            f"/v2/models/{setup['model_name']}/infer", workdir / "oip.jsonl",
            OIP_CONCURRENCY, _first_output, runtime_field=True,
        ),
        ServerSpec(
            "gateway-w2",
            f"the same, {WORKERS} uvicorn workers as the README runs them (uvicorn's own "
            "httptools protocol, without the HTTP_* limits of `python -m gateway`)",
            [py, "-m", "uvicorn", "--factory", "gateway.app:app_from_environ",
             "--workers", str(WORKERS), *host],
            f"PROMETHEUS_MULTIPROC_DIR=DIR uvicorn --factory gateway.app:app_from_environ "
            f"--workers {WORKERS} --host 127.0.0.1 --port PORT",
            {**env, **gateway_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
            _workers_ready, "/predict", workdir / "gateway.jsonl",
            WORKERS_CONCURRENCY, lambda body: float(body["pred_btc_close_next"]),
            runtime_field=True,
        ),
        ServerSpec(
            "serve", f"the same registered version, custom pyfunc, {workers_label}",
            [mlflow, "models", "serve", "-m", b_uri, *serve_args],
            f"mlflow models serve -m {b_uri} --env-manager local{workers}",
            env, _status_ready("/ping"), "/invocations", workdir / "serve.jsonl",
            CONCURRENCY, lambda body: float(body["predictions"][0]["pred_btc_close_next"]),
        ),
        ServerSpec(
            "keras", f"the same network, MLflow's Keras 3 flavor (mlflow.keras), {workers_label}",
            [mlflow, "models", "serve", "-m", c_uri, *serve_args],
            f"mlflow models serve -m {c_uri} --env-manager local{workers}",
            env, _status_ready("/ping"), "/invocations", workdir / "keras.jsonl",
            CONCURRENCY, lambda body: float(body["predictions"][0][0]),
        ),
    ]  # fmt: skip


def probe(spec: ServerSpec, url: str) -> float | None:
    """One real request before the load: a server that answers an error is not benchmarked."""
    body = spec.bodies.read_text().splitlines()[0].encode()
    status, answer = post_json(url, body)
    if status != 200:
        raise RuntimeError(f"{spec.key} answered {status} to a real request: {answer[:500]!r}")
    return spec.read_prediction(json.loads(answer)) if spec.read_prediction else None
