"""The routes and the error mapping: HTTP only, the work is gateway/service.py's.

Each route reads what it needs from the request's state, which the app's lifespan fills in
(gateway/app.py): `settings`, `metrics`, `gateway` (the service), `prediction_log`
(None when off), `openapi` (the documents, rendered once per served contract) and
`shape_only` (the window contract the settings imply, used until a version is served).
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from gateway.contract import WindowContract
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
from gateway.metrics import Metrics
from gateway.openapi import TITLE, OpenAPIDocuments
from gateway.prediction_log import PredictionLog
from gateway.service import Gateway
from gateway.settings import Settings
from gateway.validation import InvalidRequest, parse_predict, parse_reload


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


async def health(request: Request) -> Response:
    gateway: Gateway = request.state.gateway
    return JSONResponse(gateway.health())


async def ready(request: Request) -> Response:
    gateway: Gateway = request.state.gateway
    answer = gateway.ready()
    if answer is None:
        return JSONResponse({"status": "not ready", "model_loaded": False}, status_code=503)
    return JSONResponse(answer)


async def predict(request: Request) -> Response:
    started = time.perf_counter()
    settings: Settings = request.state.settings
    gateway: Gateway = request.state.gateway
    body = await read_body(request, settings.max_body_bytes, PREDICT_PREFIX)
    model = gateway.store.current
    contract: WindowContract = (model and model.contract) or request.state.shape_only
    try:
        payload = parse_predict(body, contract)
    except InvalidRequest as e:
        raise PredictFailed(str(e)) from None
    state = request.scope["state"]
    answer, state["model_version"] = await gateway.predict(payload, state["request_id"])
    prediction_log: PredictionLog | None = request.state.prediction_log
    if prediction_log is not None:
        prediction_log.record(state["request_id"], payload.x, answer, time.perf_counter() - started)
    return JSONResponse(answer)


async def reload(request: Request) -> Response:
    settings: Settings = request.state.settings
    gateway: Gateway = request.state.gateway
    if settings.admin_token:
        given = request.headers.get("authorization", "").encode()
        # Constant-time: the comparison must not leak how much of the token matched.
        if not hmac.compare_digest(given, b"Bearer " + settings.admin_token.encode()):
            raise Unauthorized()
    body = await read_body(request, settings.max_body_bytes, RELOAD_PREFIX)
    try:
        alias = parse_reload(body)
    except InvalidRequest as e:
        raise ReloadRejected(str(e)) from None
    return JSONResponse(await gateway.reload(alias))


async def openapi_json(request: Request) -> Response:
    documents: OpenAPIDocuments = request.state.openapi
    model = request.state.gateway.store.current
    return Response(
        documents.render(model.contract if model else None), media_type="application/json"
    )


async def metrics_text(request: Request) -> Response:
    metrics: Metrics = request.state.metrics
    return Response(metrics.render(), media_type=metrics.content_type)


def routes() -> list[Route | Mount]:
    return [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/predict", predict, methods=["POST"]),
        Route("/reload", reload, methods=["POST"]),
        Route("/metrics", metrics_text, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *docs_routes(TITLE),
    ]


async def gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def client_gone(request: Request, exc: Exception) -> Response:
    # The client left while its body was being read: nothing can be answered, but the access
    # log and the metrics must say so, as nginx does, rather than call it a 500. The status is
    # never sent (uvicorn drops sends to a closed connection).
    timed_out = request.scope["state"].get(READ_TIMED_OUT, False)
    return Response(status_code=408 if timed_out else 499)


EXCEPTION_HANDLERS = {
    GatewayError: gateway_error,
    HTTPException: http_error,
    ClientDisconnect: client_gone,
}
