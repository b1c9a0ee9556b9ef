"""The app factory and its lifespan: what a gateway app holds, and when it is opened and closed.

Building the app acquires nothing: the lifespan creates the threads, the download folder, the
aiohttp session and the prediction log when the server starts, hands them to the routes as
the typed lifespan state (gateway/state.py) and closes them when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from starlette.applications import Starlette
from starlette.types import Scope

from gateway.batcher import Batcher
from gateway.contract import shape_contract
from gateway.metrics import Metrics
from gateway.oip import OIP_EXCEPTION_HANDLERS, oip_paths, oip_routes
from gateway.openapi import OpenAPIDocuments
from gateway.prediction_log import PredictionLog
from gateway.process import prepare_process
from gateway.registry_source import RegistrySource
from gateway.request_log import InFlight, RequestLog
from gateway.routes import EXCEPTION_HANDLERS, routes
from gateway.served_model import ModelSource, ServedModels
from gateway.service import Gateway
from gateway.settings import Settings
from gateway.shadow import Shadow
from gateway.state import State
from gateway.webhooks.delivery import CallbackSender
from gateway.webhooks.policy import create_session


def create_app(
    settings: Settings, source: ModelSource | None = None, metrics: Metrics | None = None
) -> Starlette:
    """The gateway app. Versions come from `source` (default: the MLflow registry that
    settings name); `metrics` may be injected (one collector registry per app)."""
    metrics = metrics or Metrics()
    # Counted by RequestLog; the batcher runs a window inline only when its request is alone.
    in_flight = InFlight()
    # The spec's API, and the Open Inference Protocol's routes beside it (gateway/oip.py).
    table = routes() + oip_routes()
    app = Starlette(
        routes=table,
        exception_handlers={**EXCEPTION_HANDLERS, **OIP_EXCEPTION_HANDLERS},
        lifespan=lambda app: lifespan(settings, metrics, source, in_flight),
    )
    # Starlette's slash redirect builds its Location from the client's Host header: the routes'
    # 404 handler redirects with a relative one instead.
    app.router.redirect_slashes = False
    # Outermost, so that every answer (errors included) is counted, logged and carries its id.
    app.add_middleware(
        RequestLog,
        metrics=metrics,
        # The OIP routes' paths as requests name them: the one served model's.
        routes=frozenset(route.path for route in table) | oip_paths(settings.registered_model_name),
        current_version=served_version,
        enabled=settings.access_log,
        in_flight=in_flight,
    )
    return app


@contextlib.asynccontextmanager
async def lifespan(
    settings: Settings, metrics: Metrics, source: ModelSource | None, in_flight: InFlight
) -> AsyncIterator[State]:
    """Opens what a running gateway holds, yields it as the routes' state, then closes it."""
    async with contextlib.AsyncExitStack() as stack:
        prediction_log = None
        if settings.prediction_log is not None:
            prediction_log = PredictionLog(
                Path(settings.prediction_log.replace("{pid}", str(os.getpid()))),
                metrics,
                max_bytes=settings.prediction_log_max_bytes,
                backups=settings.prediction_log_backups,
                include_inputs=settings.prediction_log_inputs,
                mode=settings.prediction_log_mode,
            )
            prediction_log.start()
            stack.push_async_callback(asyncio.to_thread, prediction_log.close)
        if source is None:
            cache_dir = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="gateway-models-", ignore_cleanup_errors=True)
            )
            source = RegistrySource(settings, Path(cache_dir))
        models = ServedModels(
            source,
            settings,
            metrics.served_events(),
            loader=stack.enter_context(_one_thread("model-load")),
            # Polls resolve on a thread of their own: a poll stuck on a hung registry must not
            # make a /reload wait behind it.
            poller=stack.enter_context(_one_thread("registry-poll")),
        )
        tasks = _follow(models, settings)
        shadow = None
        if settings.shadow_alias is not None:
            # Threads of its own: a shadow load stuck on the registry never delays the served.
            shadow_models = ServedModels(
                source,
                settings,
                metrics.shadow_events(),
                loader=stack.enter_context(_one_thread("shadow-load")),
                poller=stack.enter_context(_one_thread("shadow-poll")),
                alias=settings.shadow_alias,
                role="shadow",
            )
            tasks += _follow(shadow_models, settings)
            shadow = Shadow(shadow_models, metrics, prediction_log, settings.shadow_sample)
            shadow.start()
            stack.push_async_callback(asyncio.to_thread, shadow.stop)
        session = create_session(
            settings.callback_allowed_networks,
            settings.callback_max_connections,
            settings.callback_max_connections_per_host,
        )
        stack.push_async_callback(session.close)
        sender = CallbackSender(session, settings.callback_timeout, settings.callback_secret)
        batcher = Batcher(
            lambda: models.current,
            metrics,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_batch_wait_ms / 1000,
            inline_max_s=settings.inline_predict_max_ms / 1000,
            requests_in_flight=lambda: in_flight.count,
        )
        metrics.queue_depth.set_function(lambda: batcher.queued)
        batcher.start()
        stack.push_async_callback(batcher.stop)
        stack.push_async_callback(_cancel, tasks)
        yield State(
            settings=settings,
            metrics=metrics,
            gateway=Gateway(models, batcher, sender, metrics, shadow),
            prediction_log=prediction_log,
            openapi=OpenAPIDocuments(settings),
            # Before a version is served, windows are held to what the configured shape implies.
            shape_only=shape_contract(settings.seq_len_required, settings.n_features_required),
        )


def _follow(models: ServedModels, settings: Settings) -> list[asyncio.Task[None]]:
    """The start-up load and the registry polls of one role."""
    role = models.role
    tasks = [asyncio.create_task(models.ensure_model_ready(), name=f"{role}_ensure_model_ready")]
    if settings.model_poll_interval > 0:
        poll = models.follow_registry(settings.model_poll_interval)
        tasks.append(asyncio.create_task(poll, name=f"{role}_follow_registry"))
    return tasks


def served_version(scope: Scope) -> str | None:
    """The version being served, for the access log of a request no model answered."""
    gateway: Gateway | None = scope.get("state", {}).get("gateway")
    model = gateway.store.current if gateway is not None else None
    return model.version if model is not None else None


@contextlib.contextmanager
def _one_thread(name: str) -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1, thread_name_prefix=name)
    try:
        yield pool
    finally:
        # A load or resolve stuck on a hung registry must not hold up the shutdown.
        pool.shutdown(wait=False, cancel_futures=True)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def app_from_environ() -> Starlette:
    """For `uvicorn --factory gateway.app:app_from_environ` (e.g. with --workers N): an entry
    point, so it prepares the process as `python -m gateway` does."""
    settings = Settings.from_environ(os.environ)
    prepare_process(settings)
    return create_app(settings)
