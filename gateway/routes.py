"""The routes and the error mapping: HTTP only, the work is gateway/service.py's.

Each route reads what it needs from the lifespan's typed state (gateway/state.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.batcher import ClientLeft
from gateway.contract import WindowContract
from gateway.cross_site import media_type_refusal, origin_refusal
from gateway.docs import docs_routes
from gateway.errors import (
    PREDICT_PREFIX,
    RELOAD_PREFIX,
    BodyTooLarge,
    CrossSiteRefused,
    GatewayError,
    PredictFailed,
    ReloadRejected,
    Unauthorized,
    UnsupportedMediaType,
)
from gateway.http_limits import CLIENT_GONE, READ_TIMED_OUT
from gateway.openapi import TITLE
from gateway.prediction_log import Entry
from gateway.settings import Settings
from gateway.state import state
from gateway.validation import InvalidRequest, parse_predict, parse_reload

T = TypeVar("T")


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


def refuse_cross_site(request: Request, settings: Settings, prefix: str) -> None:
    """415 for a body not declared JSON, 403 for another site's browser request."""
    headers = request.headers
    refusal = media_type_refusal(headers)
    if refusal is not None:
        raise UnsupportedMediaType(prefix, refusal)
    refusal = origin_refusal(headers, request.url.scheme, settings.allowed_origins)
    if refusal is not None:
        raise CrossSiteRefused(prefix, refusal)


def token_matches(authorization: str, token: str) -> bool:
    """Whether an Authorization header carries the admin token, in constant time whatever
    either's length: digests of equal length are compared, not the texts."""
    given = hashlib.sha256(authorization.encode("latin-1", "replace")).digest()
    expected = hashlib.sha256(b"Bearer " + token.encode()).digest()
    return hmac.compare_digest(given, expected)


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result, or ClientDisconnect (and `work` cancelled) if the client goes first."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientDisconnect()
    return task.result()


async def _disconnected(request: Request) -> None:
    # The body has been read: the next message the server has for this request is its end.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def health(request: Request) -> Response:
    return JSONResponse(state(request)["gateway"].health())


async def ready(request: Request) -> Response:
    answer = state(request)["gateway"].ready()
    if answer is None:
        return JSONResponse({"status": "not ready", "model_loaded": False}, status_code=503)
    return JSONResponse(answer)


async def predict(request: Request) -> Response:
    started = time.perf_counter()
    app = state(request)
    settings, gateway = app["settings"], app["gateway"]
    refuse_cross_site(request, settings, PREDICT_PREFIX)
    body = await read_body(request, settings.max_body_bytes, PREDICT_PREFIX)
    model = gateway.store.current
    contract: WindowContract = (model and model.contract) or app["shape_only"]
    try:
        payload = parse_predict(body, contract)
    except InvalidRequest as e:
        raise PredictFailed(str(e)) from None
    per_request = request.scope["state"]
    request_id = per_request["request_id"]
    try:
        answer, served = await gateway.predict(payload, request_id, per_request.get(CLIENT_GONE))
    except ClientLeft:
        raise ClientDisconnect() from None
    per_request["model_version"] = served.version
    shadow = gateway.shadow
    if shadow is not None:
        # After the answer is made, off the request's path (gateway/shadow.py).
        shadow.mirror(request_id, payload.x, answer["pred_btc_close_next"], payload.candle_time)
    prediction_log = app["prediction_log"]
    if prediction_log is not None:
        column = served.contract.close_column if served.contract is not None else None
        prediction_log.record(
            Entry(
                time.time(),
                request_id,
                "served",
                payload.x,
                column,
                answer,
                payload.candle_time,
                time.perf_counter() - started,
            )
        )
    return JSONResponse(answer)


async def reload(request: Request) -> Response:
    app = state(request)
    settings, gateway = app["settings"], app["gateway"]
    refuse_cross_site(request, settings, RELOAD_PREFIX)
    if settings.admin_token and not token_matches(
        request.headers.get("authorization", ""), settings.admin_token
    ):
        raise Unauthorized()
    body = await read_body(request, settings.max_body_bytes, RELOAD_PREFIX)
    try:
        alias = parse_reload(body)
    except InvalidRequest as e:
        raise ReloadRejected(str(e)) from None
    # A reload whose client left before it ran is dropped rather than queued (served_model.py).
    return JSONResponse(await unless_client_leaves(request, gateway.reload(alias)))


async def openapi_json(request: Request) -> Response:
    app = state(request)
    documents, model = app["openapi"], app["gateway"].store.current
    document = documents.render(model.contract, model.example) if model else documents.render(None)
    return Response(document, media_type="application/json")


async def metrics_text(request: Request) -> Response:
    metrics = state(request)["metrics"]
    return Response(metrics.render(), media_type=metrics.content_type)


def routes() -> list[Route]:
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
    path = request.url.path
    if exc.status_code == 404 and request.method in ("GET", "HEAD") and path.endswith("/"):
        target = path.rstrip("/")
        name = target.rpartition("/")[2]
        paths = {route.path for route in request.app.routes if isinstance(route, Route)}
        if name and target in paths:
            # Relative, so it holds behind a proxy's path prefix and never names the Host the
            # client sent (Starlette's own slash redirect is built from it).
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(f"../{name}{query}", status_code=307)
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
