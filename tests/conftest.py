"""Session fixtures: a real `mlflow server` on a free port, tiny models trained with the
project's own pipeline, and the one live gateway (a real process serving them), shared by every
test. Tests import names from tests/helpers.py, never from here."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator

import pytest

from model_wrapper.training import TrainConfig
from scripts.local_registry import start_mlflow_server, wait_until_healthy
from tests.helpers import (
    MODEL_NAME,
    N_CANDLES,
    SEQ_LEN,
    BadVersions,
    LiveGateway,
    Outcome,
    Registry,
    TrainedVersions,
    free_port,
    run_gateway,
    train_behind,
)

# `make test` gives each pytest-xdist worker whole files, in this order first (then the rest as
# collected): the longest files, which start gateways, registries and `mlflow run` of their own.
# Started last, one of them would leave the other worker idle at the end.
LONGEST_FIRST = (
    "test_evidence.py",
    "test_gateway_api.py",
    "test_registry_outage.py",
    "test_request_hygiene.py",
    "test_tracking.py",
    "test_hot_swap.py",
    "test_input_contract.py",
    "test_replicas.py",
    "test_postgres_registry.py",
    "test_reload_memory.py",
    "test_steady_resources.py",
    "test_fuzz.py",
    "test_validation.py",
    "test_training.py",
    "test_connection_limits.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: keeps the rest


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


@pytest.fixture(scope="session")
def live_gateway(
    registry: Registry, trained: TrainedVersions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveGateway]:
    """The one shared real gateway: `python -m gateway` serving @staging from the real registry
    with TensorFlow, an admin token, signed callbacks, JSON logs and the prediction log
    on. A test that
    moves its alias puts it back; hot swaps and outages start gateways of their own."""
    log_dir = tmp_path_factory.mktemp("live-gateway")
    env = {
        "MLFLOW_TRACKING_URI": registry.uri,
        "GATEWAY_ADMIN_TOKEN": LiveGateway.admin_token,
        "CALLBACK_SECRET": LiveGateway.callback_secret,
        "CALLBACK_TIMEOUT": str(LiveGateway.callback_timeout),
        "PREDICTION_LOG": str(log_dir / "predictions.jsonl"),
        "LOG_FORMAT": "json",
    }
    with run_gateway(env, log_dir) as gw:
        yield LiveGateway(gw.url, gw.process.pid, gw.log_path, log_dir / "predictions.jsonl")


@pytest.fixture
def swappable_gateway(live_gateway: LiveGateway) -> Iterator[LiveGateway]:
    """The live gateway for a test that moves what it serves: back on @staging afterwards."""
    yield live_gateway
    live_gateway.back_to_staging()


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
