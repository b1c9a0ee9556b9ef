"""What tests share: names and sizes, the registry and trained-version records, real servers
(the gateway as a subprocess; webhook receivers are in tests/receiver.py) and small waits.

Tests import from here, never from conftest (which holds only fixtures)."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pandas as pd

from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.model.features import window_from_candles
from model_wrapper.training.recipe import TrainConfig
from scripts.local_registry import free_port

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "BTC_LSTM_Production"
SEQ_LEN = 12
N_CANDLES = 400  # enough for ~300 windows: a 1-epoch model in seconds
# The header a body of JSON bytes needs: the gateway refuses other declared types (415).
JSON = {"Content-Type": "application/json"}
# Examples per Hypothesis property test: `make test` runs 200, `make soak` 1,000.
PROPERTY_EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "200"))


@dataclass(frozen=True)
class Registry:
    """The run's one real `mlflow server` (conftest's `registry`: started by whichever worker
    asked first, stopped when the run ends). A test that needs it stopped or hung puts a
    tests/fault_proxy.FaultProxy in front of it."""

    uri: str
    port: int
    data_dir: Path


@dataclass(frozen=True)
class TrainedVersions:
    staging: str  # version behind @staging
    production: str  # version behind @Production


@dataclass(frozen=True)
class BadVersions:
    broken: str  # behind @broken: its load_context raises
    other_shape: str  # behind @short_window: trained for T=10


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def train_behind(candles: pd.DataFrame, config: TrainConfig, alias: str) -> str:
    """A tiny version behind `alias` whatever its holdout says: these tests serve models, the
    quality gate has tests of its own (tests/integration/test_evidence.py)."""
    from mlflow import MlflowClient

    from model_wrapper.training.run import train_and_register

    version = train_and_register(candles, config, MODEL_NAME, alias=None).version
    MlflowClient().set_registered_model_alias(MODEL_NAME, alias, version)
    return version


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def real_windows(n: int, seed: int = 100, seq_len: int = SEQ_LEN) -> np.ndarray:
    """n distinct windows built from synthetic candles the way a client builds them."""
    candles = synthetic_candles(60 + n, seed=seed)
    return np.asarray(
        [window_from_candles(candles.iloc[: 40 + i], seq_len) for i in range(n)], np.float64
    )


def point_forecasts(model: Any, x: np.ndarray) -> np.ndarray:
    """A loaded pyfunc's forecasts (USD) for float32 windows, one per window."""
    return np.asarray(model.predict(x.astype(np.float32))["pred_btc_close_next"], np.float64)


@dataclass
class GatewayProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    http: httpx.Client  # this gateway's URL as base; open while the process runs (run_gateway)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self) -> dict[str, Any]:
        return dict(self.http.get("/health", timeout=5).json())

    def wait_loaded(self, timeout: float = 120) -> None:
        wait_for(lambda: self._loaded(), timeout, "the gateway to load a model")

    def _loaded(self) -> bool:
        assert self.process.poll() is None, f"gateway exited:\n{self.log()[-3000:]}"
        return bool(self.health()["model_loaded"])


@dataclass(frozen=True)
class LiveGateway:
    """The session's shared real gateway (conftest's `live_gateway`) and how it is set."""

    url: str
    pid: int
    log_path: Path
    prediction_log: Path
    admin_token: ClassVar[str] = "client-test-token"
    callback_secret: ClassVar[str] = (
        "whsec_" + base64.b64encode(b"client-test-webhook-key").decode()
    )
    callback_timeout: ClassVar[float] = 1.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/health", timeout=5).json())

    @property
    def admin(self) -> dict[str, str]:
        """The headers /reload needs."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def back_to_staging(self) -> None:
        """Serve @staging again, for tests that moved the alias."""
        r = httpx.post(f"{self.url}/reload", headers=self.admin, timeout=120)
        assert r.status_code == 200, r.text


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def run_gateway(
    env: dict[str, str], log_dir: Path, wait_loaded: bool = True, workers: int = 1
) -> Iterator[GatewayProcess]:
    """`python -m gateway` on a free port (the port is bound before the model loads); with
    workers > 1, `uvicorn --factory ... --workers N` with shared multiprocess metrics."""
    port = free_port()
    log_path = log_dir / f"gateway-{port}.log"
    full_env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MODEL_LOAD_RETRY_INTERVAL": "0.5",
        "CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32",
        **env,
    }
    command = [sys.executable, "-m", "gateway", "--port", str(port)]
    if workers > 1:
        metrics_dir = log_dir / f"prometheus-{port}"
        metrics_dir.mkdir()
        full_env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        command = [
            sys.executable, "-m", "uvicorn", "--factory", "gateway.app:app_from_environ",
            "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    # One client for every poll of this gateway: httpx builds a TLS context (parsing the whole
    # CA bundle) for each client, and `httpx.get` builds a client per call, so polling with it
    # cost more CPU than the gateway spent answering. No keep-alive: each request has its own
    # connection, as with `httpx.get`, so no idle poll connection counts against a test's.
    http = httpx.Client(base_url=url, limits=httpx.Limits(max_keepalive_connections=0))
    gw = GatewayProcess(url, process, log_path, http)
    try:

        def up() -> bool:
            assert process.poll() is None, f"gateway exited:\n{gw.log()[-3000:]}"
            try:
                return http.get("/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 60, "the gateway to bind its port")
        if wait_loaded:
            gw.wait_loaded()
        yield gw
    finally:
        http.close()
        stop_process(process)


def record_figures(base_dir: Path, name: str, figures: dict[str, Any]) -> Path:
    """Write what a reliability test tried and lost to base_dir/reliability/<name>.json (and to
    $RELIABILITY_FIGURES_DIR when set, to keep them past pytest's temp dirs); print them too,
    visible with `pytest -s`."""
    import json

    text = json.dumps(figures, indent=2, sort_keys=True)
    print(f"\n[{name}] {text}")
    out_dirs = [base_dir / "reliability"]
    if os.environ.get("RELIABILITY_FIGURES_DIR"):
        out_dirs.append(Path(os.environ["RELIABILITY_FIGURES_DIR"]))
    for out_dir in out_dirs:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{name}.json").write_text(text + "\n")
    return out_dirs[0] / f"{name}.json"


def require_debian_tool(command: str, package: str) -> str:
    """The path of `command`; a skip where it is missing, a failure on CI (.ci/run installs
    `package`, so there a missing tool is a broken set-up that a skip would hide)."""

    import pytest

    path = shutil.which(command)
    if path is not None:
        return path
    message = f"{command} is not installed: `apt-get install --no-install-recommends {package}`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def relog_version(
    parts: Path, signature: Any, registered_model_name: str, metadata: dict[str, Any] | None = None
) -> str:
    """A new version of today's model code around a registered version's downloaded artifacts
    (`parts`: its network, scaler and metadata), with the signature and metadata given: how a
    test builds a version of a form logged before (no contract, no params). Its number."""
    import mlflow

    from model_wrapper.registry.publish import MODEL_PACKAGE, PYFUNC_FILE, pip_requirements

    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_FILE),
            code_paths=[str(MODEL_PACKAGE)],
            artifacts={
                "keras_model": str(parts / "network.keras"),
                "scaler": str(parts / "scaler.json"),
                "metadata": str(parts / "metadata.json"),
            },
            signature=signature,
            metadata=metadata,
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
        )
    return str(info.registered_model_version)
