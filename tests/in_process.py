"""The gateway app in this process, with a stand-in model, for payload, validation and
error-mapping tests: no registry, no TensorFlow, no subprocess.

`serve_in_process` builds the real app (create_app) with a StandInSource and drives it with
Starlette's TestClient: httpx's client API over an ASGI transport that also runs the app's
lifespan (so its state, threads, aiohttp session and prediction log are real) on an event loop
of its own, as a server's would be. Sockets are the one thing it skips: uvicorn's connection
limits are tested on real servers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import uvicorn
from starlette.testclient import TestClient

from gateway.__main__ import server_options
from gateway.app import create_app
from gateway.contract import version_contract
from gateway.errors import ReloadFailed
from gateway.metrics import Metrics
from gateway.served_model import ServedModel
from gateway.settings import Settings
from model_wrapper.model.contract import check_windows, input_contract
from model_wrapper.model.features import FEATURE_NAMES, N_FEATURES
from model_wrapper.model.transforms import CLOSE
from tests.helpers import MODEL_NAME, SEQ_LEN, free_port, wait_for

INTERVAL_LEVEL = 0.8


DECLARED = version_contract(
    {"input_contract": input_contract(SEQ_LEN, N_FEATURES, list(FEATURE_NAMES))}
)
STAND_IN_RUNTIME = "stand-in"


def stand_in_forecasts(x: np.ndarray, growth: float) -> np.ndarray:
    """A deterministic pure-numpy model: the next close is the last close times `growth`, the
    interval +-1% around it. It refuses what the wrapper refuses, with the wrapper's own check."""
    arr = check_windows(x, SEQ_LEN, N_FEATURES, list(FEATURE_NAMES))
    value = arr[:, -1, CLOSE] * growth
    return np.column_stack([value, value * 0.99, value * 1.01])


def expected_forecast(window: np.ndarray, version: str) -> float:
    """What the stand-in `version` answers for one window (float32, as the gateway sends it)."""
    return float(stand_in_forecasts(window[np.newaxis].astype(np.float32), growth(version))[0, 0])


def growth(version: str) -> float:
    return 1 + int(version) / 100


class StandInSource:
    """Versions behind aliases, loaded instantly; `gate` (when cleared) holds loads back."""

    def __init__(self, aliases: Mapping[str, str] | None = None) -> None:
        self.aliases = dict(aliases or {"staging": "1", "Production": "2"})
        self.loads: list[str] = []
        self.resolves = 0
        self.gate = threading.Event()
        self.gate.set()

    def resolve(self, alias: str) -> str:
        self.resolves += 1
        try:
            return self.aliases[alias]
        except KeyError:
            raise ReloadFailed(
                f"alias '{alias}' of model '{MODEL_NAME}' not found in the registry"
            ) from None

    def load(self, alias: str, version: str) -> ServedModel:
        self.gate.wait(30)
        self.loads.append(version)
        return ServedModel(
            alias=alias,
            version=version,
            predict=partial(stand_in_forecasts, growth=growth(version)),
            interval_level=INTERVAL_LEVEL,
            # What a version of this wrapper declares, so the gateway holds windows to it.
            contract=DECLARED,
            runtime=STAND_IN_RUNTIME,
        )


def settings_from(env: Mapping[str, str] | None) -> Settings:
    """Settings from `env` on top of a 127.0.0.1 callback allowance and a fast retry."""
    return Settings.from_environ(
        {
            "REGISTERED_MODEL_NAME": MODEL_NAME,
            "CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32",
            "MODEL_LOAD_RETRY_INTERVAL": "0.05",
            **(env or {}),
        }
    )


@contextlib.contextmanager
def serve_in_process(
    env: Mapping[str, str] | None = None,
    source: StandInSource | None = None,
    wait_loaded: bool = True,
) -> Iterator[TestClient]:
    """The app with settings from `env` (see settings_from) and `source`, its lifespan
    running, driven through Starlette's TestClient."""
    app = create_app(settings_from(env), source=source or StandInSource(), metrics=Metrics())
    with TestClient(app, base_url="http://gateway.test") as client:
        if wait_loaded:
            wait_for(
                lambda: bool(client.get("/health").json()["model_loaded"]),
                10,
                "the stand-in model to load",
            )
        yield client


class UnreachableSource(StandInSource):
    """A registry that never answers: no model, ever."""

    def resolve(self, alias: str) -> str:
        raise ReloadFailed("registry unreachable at http://127.0.0.1:9: connection refused")


@dataclass
class ServerInThread:
    url: str
    server: uvicorn.Server
    lines: list[str]  # what the gateway and uvicorn logged meanwhile

    def log(self) -> str:
        return "\n".join(self.lines)


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def serve_on_port(
    env: Mapping[str, str] | None = None, source: StandInSource | None = None
) -> Iterator[ServerInThread]:
    """The app under a real uvicorn server with `python -m gateway`'s options (its connection
    limits included) on a free 127.0.0.1 port, in a thread of this process, as httpx's own tests
    run theirs: real sockets without a subprocess, a registry or TensorFlow."""
    settings = settings_from(env)
    metrics = Metrics()
    app = create_app(settings, source=source or StandInSource(), metrics=metrics)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, **server_options(settings, metrics))
    server = uvicorn.Server(config)
    lines: list[str] = []
    handler = _Lines(lines)
    gateway_log = logging.getLogger("gateway")
    level = gateway_log.level
    gateway_log.setLevel(logging.INFO)  # the access log
    logging.getLogger().addHandler(handler)
    thread = threading.Thread(target=server.run, name="uvicorn-in-process", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 20, "the in-process server to start")
        yield ServerInThread(f"http://127.0.0.1:{port}", server, lines)
    finally:
        server.should_exit = True
        thread.join(20)
        logging.getLogger().removeHandler(handler)
        gateway_log.setLevel(level)
