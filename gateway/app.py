"""The HTTP edge: the Starlette app factory, routes, error mapping and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mlflow
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from gateway.batcher import Batcher
from gateway.callbacks import CallbackSender, create_session
from gateway.docs import docs_routes
from gateway.errors import (
    PREDICT_PREFIX,
    RELOAD_PREFIX,
    BodyTooLarge,
    GatewayError,
    PredictFailed,
    ReloadRejected,
    Unauthorized,
)
from gateway.http_limits import READ_TIMED_OUT
from gateway.logs import configure_logging
from gateway.metrics import Metrics
from gateway.model_store import ModelStore
from gateway.openapi import TITLE, openapi_document
from gateway.prediction_log import PredictionLog
from gateway.request_log import InFlight, RequestLog
from gateway.service import Gateway
from gateway.settings import Settings
from gateway.validation import InvalidRequest, parse_predict, parse_reload

log = logging.getLogger("gateway.app")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def read_body(request: Request, limit: int, prefix: str) -> bytes:
    """The body, refused with 413 past `limit` bytes without reading it whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        # Refused before reading, so an `Expect: 100-continue` client never uploads it.
        raise BodyTooLarge(prefix, limit, int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(prefix, limit, None)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    settings: Settings, store: ModelStore | None = None, metrics: Metrics | None = None
) -> Starlette:
    """The gateway app; `store` and `metrics` may be injected, else built from settings."""
    metrics = metrics or Metrics()
    store = store or ModelStore(settings, metrics)
    # Counted by RequestLog; the batcher runs a window inline only when its request is alone.
    in_flight = InFlight()
    batcher = Batcher(
        lambda: store.current,
        metrics,
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_batch_wait_ms / 1000,
        inline_max_s=settings.inline_predict_max_ms / 1000,
        requests_in_flight=lambda: in_flight.count,
    )
    # Filled in by the lifespan: the aiohttp session must be created inside the running loop.
    services: dict[str, Gateway] = {}
    openapi = orjson.dumps(openapi_document(settings))
    admin_token = (settings.admin_token or "").encode()
    metrics.queue_depth.set_function(lambda: batcher.queued)
    prediction_log = None
    if settings.prediction_log is not None:
        prediction_log = PredictionLog(
            Path(settings.prediction_log.replace("{pid}", str(os.getpid()))),
            metrics,
            max_bytes=settings.prediction_log_max_bytes,
            backups=settings.prediction_log_backups,
            include_inputs=settings.prediction_log_inputs,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # MLflow's own default is not the spec's: set it from settings, once.
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        session = create_session(
            settings.callback_allowed_networks,
            settings.callback_max_connections,
            settings.callback_max_connections_per_host,
        )
        sender = CallbackSender(session, settings.callback_timeout, settings.callback_secret)
        services["gateway"] = Gateway(store, batcher, sender, metrics)
        batcher.start()
        if prediction_log is not None:
            prediction_log.start()
        tasks = [asyncio.create_task(store.ensure_model_ready(), name="ensure_model_ready")]
        if settings.model_poll_interval > 0:
            tasks.append(
                asyncio.create_task(
                    store.follow_registry(settings.model_poll_interval), name="follow_registry"
                )
            )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await batcher.stop()
            await session.close()
            store.close()
            if prediction_log is not None:
                await asyncio.to_thread(prediction_log.close)

    async def health(request: Request) -> Response:
        return JSONResponse(services["gateway"].health())

    async def ready(request: Request) -> Response:
        answer = services["gateway"].ready()
        if answer is None:
            return JSONResponse({"status": "not ready", "model_loaded": False}, status_code=503)
        return JSONResponse(answer)

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        body = await read_body(request, settings.max_body_bytes, PREDICT_PREFIX)
        try:
            payload = parse_predict(body, settings.seq_len_required, settings.n_features_required)
        except InvalidRequest as e:
            raise PredictFailed(str(e)) from None
        state = request.scope["state"]
        answer, state["model_version"] = await services["gateway"].predict(
            payload, state["request_id"]
        )
        if prediction_log is not None:
            prediction_log.record(
                state["request_id"], payload.x, answer, time.perf_counter() - started
            )
        return JSONResponse(answer)

    async def reload(request: Request) -> Response:
        if admin_token:
            given = request.headers.get("authorization", "").encode()
            # Constant-time: the comparison must not leak how much of the token matched.
            if not hmac.compare_digest(given, b"Bearer " + admin_token):
                raise Unauthorized()
        body = await read_body(request, settings.max_body_bytes, RELOAD_PREFIX)
        try:
            alias = parse_reload(body)
        except InvalidRequest as e:
            raise ReloadRejected(str(e)) from None
        return JSONResponse(await services["gateway"].reload(alias))

    async def openapi_json(request: Request) -> Response:
        return Response(openapi, media_type="application/json")

    async def metrics_text(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    async def client_gone(request: Request, exc: Exception) -> Response:
        # The client left while its body was being read: nothing can be answered, but the
        # access log and the metrics must say so, as nginx does, rather than call it a 500.
        # The status is never sent (uvicorn drops sends to a closed connection).
        timed_out = request.scope["state"].get(READ_TIMED_OUT, False)
        return Response(status_code=408 if timed_out else 499)

    routes: list[Route | Mount] = [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/predict", predict, methods=["POST"]),
        Route("/reload", reload, methods=["POST"]),
        Route("/metrics", metrics_text, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *docs_routes(TITLE),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            GatewayError: gateway_error,
            HTTPException: http_error,
            ClientDisconnect: client_gone,
        },
        lifespan=lifespan,
    )
    # Outermost, so that every answer (errors included) is counted, logged and carries its id.
    app.add_middleware(
        RequestLog,
        metrics=metrics,
        routes=frozenset(route.path for route in routes),
        current_version=lambda: store.current.version if store.current else None,
        enabled=settings.access_log,
        in_flight=in_flight,
    )
    return app


def prepare_process(settings: Settings, log_level: str = "info") -> None:
    """Process-wide set-up for a gateway process (not for an app built inside tests)."""
    configure_logging(settings.log_format, log_level)
    # MLflow nags on every load of a version whose predict has no type hints (those logged
    # before the wrapper's got one); the wrapper's own check is the contract, so it is noise.
    warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
    # The MLflow client retries a dead registry for minutes by default; start-up retries and
    # /reload errors should take seconds. Operators can still override both.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    # TensorFlow reads these when it starts (at the first model load). Its default pools
    # spin a thread per core; one thread each leaves the other core to the event loop, which
    # is what limits throughput: measured +55% requests/s at concurrency 16 on 2 cores.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


def app_from_environ() -> Starlette:
    """For `uvicorn --factory gateway.app:app_from_environ` (e.g. with --workers N)."""
    settings = Settings.from_environ(os.environ)
    prepare_process(settings)
    return create_app(settings)
