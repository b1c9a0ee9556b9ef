"""Session fixtures: a real `mlflow server` on a free port and tiny models trained with the
project's own pipeline, made once per run and shared by every pytest-xdist worker, and the live
gateway (a real process serving them, one per worker). Tests import names from tests/helpers.py,
never from here."""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest

if TYPE_CHECKING:
    from tests.helpers import (
        BadVersions,
        GatewayProcess,
        LiveGateway,
        Outcome,
        Registry,
        TrainedVersions,
    )

# Fixtures import tests.helpers (and with it MLflow, pandas, the wrapper) when they run: the
# pytest-xdist controller loads this file too, and it runs no test.

# `make test` gives each pytest-xdist worker whole files, in this order first (then the rest as
# collected): the longest files, which start gateways, registries and `mlflow run` of their own
# (paths below tests/).
# Started last, one of them would leave the other workers idle at the end. The first three run
# while the shared registry and models are made: one makes them (e2e/test_api.py), one needs
# only the registry, one needs neither.
LONGEST_FIRST = (
    "e2e/test_api.py",
    "integration/test_evidence.py",
    "e2e/test_postgres_registry.py",
    "e2e/test_live_evidence.py",
    "e2e/test_batch_doors.py",
    "e2e/test_abuse.py",
    "e2e/test_recipe_evidence.py",
    "e2e/test_local_commands.py",
    "e2e/test_registry_outage.py",
    "e2e/test_request_hygiene.py",
    "e2e/test_tracking.py",
    "e2e/test_hot_swap.py",
    "e2e/test_input_contract.py",
    "e2e/test_replicas.py",
    "e2e/test_reload_memory.py",
    "e2e/test_steady_resources.py",
    "e2e/test_fuzz.py",
    "unit/test_validation.py",
    "integration/test_training.py",
    "app/test_connection_limits.py",
)
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def place(item: pytest.Item) -> int:
        return rank.get(item.path.relative_to(TESTS).as_posix(), len(rank))

    items.sort(key=place)  # stable: keeps the rest in collection order


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


# The run's shared things (one registry, one set of tiny models) live in a folder the first
# process makes: the pytest-xdist controller, or pytest alone. Workers inherit its path.
SHARED_DIR = "TESTS_SHARED_DIR"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller, or pytest without -n
        os.environ[SHARED_DIR] = tempfile.mkdtemp(prefix="btc-lstm-tests-")


def pytest_unconfigure(config: pytest.Config) -> None:
    """After every worker is done: stop the shared registry, remove the folder."""
    if hasattr(config, "workerinput") or SHARED_DIR not in os.environ:
        return
    shared = Path(os.environ.pop(SHARED_DIR))
    started = shared / "registry.json"
    if started.exists():
        with contextlib.suppress(psutil.NoSuchProcess):
            server = psutil.Process(json.loads(started.read_text())["pid"])
            processes = [server, *server.children(recursive=True)]
            for process in processes:
                process.terminate()
            psutil.wait_procs(processes, timeout=15)
    shutil.rmtree(shared, ignore_errors=True)


def once_per_run(name: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`make()` in whichever worker asks first, under a file lock; the others (which wait for
    it) and later calls get what it returned. Values are JSON."""
    shared = Path(os.environ[SHARED_DIR])
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        made = shared / f"{name}.json"
        if not made.exists():
            made.write_text(json.dumps(make()))
        return dict(json.loads(made.read_text()))


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The run's one `mlflow server`. Tests must leave its aliases as they found them (or use
    aliases of their own); one that needs it stopped or hung uses a fault proxy in front."""
    import mlflow

    from scripts.local_registry import free_port, start_mlflow_server, wait_until_healthy
    from tests.helpers import Registry

    def start() -> dict[str, Any]:
        port, data_dir = free_port(), Path(os.environ[SHARED_DIR]) / "mlflow"
        process = start_mlflow_server(data_dir, "127.0.0.1", port, data_dir / "server.log")
        wait_until_healthy(f"http://127.0.0.1:{port}", timeout=180, process=process)
        return {"port": port, "data_dir": str(data_dir), "pid": process.pid}

    started = once_per_run("registry", start)
    port = int(started["port"])
    reg = Registry(f"http://127.0.0.1:{port}", port, Path(started["data_dir"]))
    mlflow.set_tracking_uri(reg.uri)
    os.environ["MLFLOW_TRACKING_URI"] = reg.uri
    return reg


@pytest.fixture(scope="session")
def trained(registry: Registry) -> TrainedVersions:
    """v1 behind staging and v2 behind Production, trained on different data so that they
    answer differently."""
    from model_wrapper.data.synthetic import synthetic_candles
    from model_wrapper.training.recipe import TrainConfig
    from tests.helpers import N_CANDLES, SEQ_LEN, TrainedVersions, train_behind

    def train() -> dict[str, Any]:
        config = TrainConfig(seq_len=SEQ_LEN, epochs=1)
        v1 = train_behind(synthetic_candles(N_CANDLES, seed=1), config, "staging")
        v2 = train_behind(synthetic_candles(N_CANDLES, seed=2), config, "Production")
        return asdict(TrainedVersions(staging=v1, production=v2))

    return TrainedVersions(**once_per_run("trained", train))


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
def bad_versions(registry: Registry, trained: TrainedVersions) -> BadVersions:
    """Versions a gateway must refuse: one that cannot load, one trained for another T."""
    from model_wrapper.training.recipe import TrainConfig
    from tests.helpers import MODEL_NAME, N_CANDLES, SEQ_LEN, BadVersions, train_behind

    def register() -> dict[str, Any]:
        import mlflow
        from mlflow import MlflowClient

        from model_wrapper.data.synthetic import synthetic_candles
        from model_wrapper.model.features import N_FEATURES

        code = Path(os.environ[SHARED_DIR]) / "broken_model.py"
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
        return asdict(BadVersions(broken=broken, other_shape=short))

    return BadVersions(**once_per_run("bad_versions", register))


@pytest.fixture(scope="session")
def live_gateway(
    registry: Registry, trained: TrainedVersions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveGateway]:
    """The worker's real gateway: `python -m gateway` serving @staging from the real registry,
    with an admin token, signed callbacks, JSON logs and the prediction log on. A test that
    moves its alias puts it back; hot swaps and outages start gateways of their own."""
    from tests.helpers import LiveGateway, run_gateway

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


@pytest.fixture(scope="module")
def start_gateway(
    registry: Registry, trained: TrainedVersions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., GatewayProcess]]:
    """The one way a test module gets gateway processes configured for it: `start_gateway(env)`
    runs `python -m gateway` serving @staging from the shared registry (env overrides any
    variable, MLFLOW_TRACKING_URI included), loaded unless `wait_loaded=False`; with
    `workers=N`, uvicorn's workers. Every process it started stops when the module is done."""
    from tests.helpers import run_gateway

    with contextlib.ExitStack() as stack:

        def start(
            env: dict[str, str] | None = None, *, wait_loaded: bool = True, workers: int = 1
        ) -> GatewayProcess:
            full = {"MLFLOW_TRACKING_URI": registry.uri, **(env or {})}
            log_dir = tmp_path_factory.mktemp("gateway")
            return stack.enter_context(run_gateway(full, log_dir, wait_loaded, workers))

        yield start


@pytest.fixture
def swappable_gateway(live_gateway: LiveGateway) -> Iterator[LiveGateway]:
    """The live gateway for a test that moves what it serves: back on @staging afterwards."""
    yield live_gateway
    live_gateway.back_to_staging()


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """A script's main() in this process (TensorFlow is loaded once), as the shell runs it."""
    from tests.helpers import Outcome

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
