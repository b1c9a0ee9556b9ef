"""The Open Inference Protocol (KServe V2) REST routes, beside the spec's API: health, model
metadata, and `infer`, which forecasts N windows in one model call.

`{name}` is REGISTERED_MODEL_NAME (another name is a 404). A block's windows are checked as
/predict checks its one (gateway/oip_request.py) and run on the batcher's model thread through
the served version's own predict, so each window's answer is /predict's. Every refusal is the
protocol's `{"error": "..."}`; the POST has /predict's cross-site protections.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.cross_site import media_type_refusal, origin_refusal
from gateway.errors import BodyTooLarge, ModelNotLoaded, PredictFailed
from gateway.oip_request import (
    InferError,
    finite_outputs,
    infer_body_limit,
    model_metadata,
    not_loaded,
    outputs_given,
    parse_infer,
    unknown_model,
)
from gateway.routes import JSONResponse, read_body
from gateway.served_model import ServedModel
from gateway.state import state


def oip_paths(model_name: str) -> frozenset[str]:
    """The routes' paths for the served name, as the request metrics label them."""
    return frozenset(route.path.replace("{name}", model_name) for route in oip_routes())


def oip_routes() -> list[Route]:
    return [
        Route("/v2/health/live", server_live, methods=["GET"]),
        Route("/v2/health/ready", server_ready, methods=["GET"]),
        Route("/v2/models/{name}", metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
    ]


async def oip_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InferError)
    return JSONResponse({"error": exc.message}, status_code=exc.status_code)


OIP_EXCEPTION_HANDLERS = {InferError: oip_error}


def _model_name(request: Request) -> str:
    """The path's model name when it is the served one; 404 otherwise."""
    served = state(request)["settings"].registered_model_name
    name = request.path_params["name"]
    if name != served:
        raise unknown_model(name, served)
    return served


async def server_live(request: Request) -> Response:
    return JSONResponse({"live": True})


async def server_ready(request: Request) -> Response:
    # The protocol's health answer is its status: 200 for true, a 4xx for false.
    ready = state(request)["gateway"].store.current is not None
    return JSONResponse({"ready": ready}, status_code=200 if ready else 400)


async def model_ready(request: Request) -> Response:
    name = _model_name(request)
    ready = state(request)["gateway"].store.current is not None
    return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 400)


async def metadata(request: Request) -> Response:
    name = _model_name(request)
    model = state(request)["gateway"].store.current
    if model is None:
        raise not_loaded(name)
    outputs = outputs_given(model.interval_level)
    return JSONResponse(model_metadata(name, model.version, outputs, *_shape(request, model)))


def _shape(request: Request, model: ServedModel | None) -> tuple[int, int]:
    contract = (model and model.contract) or state(request)["shape_only"]
    return contract.seq_len, contract.n_features


def _refuse(request: Request) -> None:
    """/predict's cross-site rules, and a body this route cannot read, before reading it."""
    headers = request.headers
    refusal = media_type_refusal(headers)
    if refusal is not None:
        raise InferError(415, refusal)
    allowed = state(request)["settings"].allowed_origins
    refusal = origin_refusal(headers, request.url.scheme, allowed)
    if refusal is not None:
        raise InferError(403, refusal)
    if "inference-header-content-length" in headers:
        raise InferError(
            400,
            "binary tensor data is not supported: send the tensors as JSON "
            "(tritonclient: binary_data=False)",
        )
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise InferError(415, f"Content-Encoding must be identity, got {encoding[:40]!r}")


async def infer(request: Request) -> Response:
    app = state(request)
    settings, gateway = app["settings"], app["gateway"]
    name = _model_name(request)
    _refuse(request)
    try:
        body = await read_body(request, infer_body_limit(settings), "")
    except BodyTooLarge as e:
        raise InferError(413, e.detail) from None
    model = gateway.store.current
    contract = (model and model.contract) or app["shape_only"]
    parsed = parse_infer(body, contract, settings.infer_max_windows)
    try:
        # Not abandoned if the client leaves: the request stays in flight until the model
        # thread is done with its block (Batcher.predict_block).
        rows, served = await gateway.batcher.predict_block(parsed.windows)
    except ModelNotLoaded:
        raise not_loaded(name) from None
    except PredictFailed as e:
        raise InferError(400, e.reason) from None
    request.scope["state"]["model_version"] = served.version
    given = outputs_given(served.interval_level)
    names = parsed.outputs or given
    missing = [output for output in names if output not in given]
    if missing:
        raise InferError(
            400, f"version {served.version} gives no prediction interval: no output {missing[0]}"
        )
    n = len(rows)
    outputs = [
        {"name": output, "datatype": "FP64", "shape": [n, 1], "data": data}
        for output, data in finite_outputs(rows, names)
    ]
    gateway.metrics.forecast("served", served.version, n)
    answer: dict[str, Any] = {"model_name": name, "model_version": served.version}
    if parsed.id is not None:
        answer["id"] = parsed.id
    # What /predict's answer says beyond the numbers (the protocol's optional parameters).
    answer["parameters"] = {"model_alias": served.alias}
    if served.interval_level is not None:
        answer["parameters"]["interval_level"] = served.interval_level
    answer["outputs"] = outputs
    return JSONResponse(answer)
