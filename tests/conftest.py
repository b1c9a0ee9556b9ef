"""Session fixtures: a real `mlflow server` on a free port and tiny models trained with the
project's own pipeline, shared by every test."""

from __future__ import annotations

import base64
import importlib
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from model_wrapper.training import TrainConfig
from scripts.local_registry import start_mlflow_server, wait_until_healthy

MODEL_NAME = "BTC_LSTM_Production"
SEQ_LEN = 12
N_CANDLES = 400  # enough for ~300 windows: a 1-epoch model in seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    uri: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def start(self) -> None:
        self.process = start_mlflow_server(
            self.data_dir, "127.0.0.1", self.port, self.data_dir / "server.log"
        )
        wait_until_healthy(self.uri, timeout=180, process=self.process)


@dataclass(frozen=True)
class TrainedVersions:
    staging: str  # version behind @staging
    production: str  # version behind @Production


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests are plain `async def` marked `pytest.mark.anyio` (anyio's own plugin): the
    gateway runs on asyncio, so they do too."""
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _bounded_mlflow_client() -> None:
    # The MLflow client retries a dead server for minutes by default.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    import mlflow

    port = free_port()
    data_dir = tmp_path_factory.mktemp("mlflow")
    process = start_mlflow_server(data_dir, "127.0.0.1", port, data_dir / "server.log")
    reg = Registry(f"http://127.0.0.1:{port}", port, data_dir, process)
    try:
        wait_until_healthy(reg.uri, timeout=180, process=process)
        mlflow.set_tracking_uri(reg.uri)
        os.environ["MLFLOW_TRACKING_URI"] = reg.uri
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def trained(registry: Registry) -> TrainedVersions:
    """v1 behind staging and v2 behind Production, trained on different data so that they
    answer differently."""
    from model_wrapper.synthetic import synthetic_candles

    config = TrainConfig(seq_len=SEQ_LEN, epochs=1)
    v1 = train_behind(synthetic_candles(N_CANDLES, seed=1), config, "staging")
    v2 = train_behind(synthetic_candles(N_CANDLES, seed=2), config, "Production")
    return TrainedVersions(staging=v1, production=v2)


def train_behind(candles: pd.DataFrame, config: TrainConfig, alias: str) -> str:
    """A tiny version behind `alias` whatever its holdout says: these tests serve models, the
    quality gate has tests of its own (test_evidence.py)."""
    from mlflow import MlflowClient

    from model_wrapper.training import train_and_register

    version = train_and_register(candles, config, MODEL_NAME, alias=None).version
    MlflowClient().set_registered_model_alias(MODEL_NAME, alias, version)
    return version


BROKEN_MODEL_CODE = """
import mlflow
from mlflow.pyfunc import PythonModel


class Broken(PythonModel):
    def load_context(self, context):
        raise RuntimeError("this version's artifacts are broken")

    def predict(self, context, model_input, params=None):
        return model_input


mlflow.models.set_model(Broken())
"""


@dataclass(frozen=True)
class BadVersions:
    broken: str  # behind @broken: its load_context raises
    other_shape: str  # behind @short_window: trained for T=10


@pytest.fixture(scope="session")
def bad_versions(
    registry: Registry, trained: TrainedVersions, tmp_path_factory: pytest.TempPathFactory
) -> BadVersions:
    """Versions a gateway must refuse: one that cannot load, one trained for another T."""
    import mlflow
    from mlflow import MlflowClient

    from model_wrapper.features import N_FEATURES
    from model_wrapper.synthetic import synthetic_candles

    code = tmp_path_factory.mktemp("broken") / "broken_model.py"
    code.write_text(BROKEN_MODEL_CODE)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            metadata={"seq_len": SEQ_LEN, "n_features": N_FEATURES},
            registered_model_name=MODEL_NAME,
            pip_requirements=["mlflow"],
        )
    broken = str(info.registered_model_version)
    MlflowClient().set_registered_model_alias(MODEL_NAME, "broken", broken)
    short = train_behind(
        synthetic_candles(N_CANDLES, seed=3), TrainConfig(seq_len=10, epochs=1), "short_window"
    )
    return BadVersions(broken=broken, other_shape=short)


@dataclass(frozen=True)
class ClientGateway:
    """A gateway with an admin token and the prediction log on, shared by the /docs, client and
    prediction-log tests."""

    url: str
    pid: int
    admin_token: str
    callback_secret: str
    prediction_log: Path


@pytest.fixture(scope="session")
def client_gateway(
    registry: Registry, trained: TrainedVersions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClientGateway]:
    from tests.helpers import run_gateway  # helpers imports this module

    log_dir = tmp_path_factory.mktemp("client-gateway")
    env = {
        "MLFLOW_TRACKING_URI": registry.uri,
        "GATEWAY_ADMIN_TOKEN": "client-test-token",
        "CALLBACK_SECRET": "whsec_" + base64.b64encode(b"client-test-webhook-key").decode(),
        "PREDICTION_LOG": str(log_dir / "predictions.jsonl"),
    }
    with run_gateway(env, log_dir) as gw:
        yield ClientGateway(
            gw.url,
            gw.process.pid,
            env["GATEWAY_ADMIN_TOKEN"],
            env["CALLBACK_SECRET"],
            log_dir / "predictions.jsonl",
        )


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """A script's main() in this process (TensorFlow is loaded once), as the shell runs it."""

    def run(module: str, *args: str) -> Outcome:
        main = importlib.import_module(module).main
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return Outcome(code, out, err)

    return run
