"""The Open Inference Protocol's routes (gateway/oip.py) in the OpenAPI document: their paths,
schemas and examples. Error examples are the gateway's own refusals, made by its own code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.datastructures import Headers

from gateway.contract import WindowContract
from gateway.cross_site import media_type_refusal, origin_refusal
from gateway.errors import BodyTooLarge
from gateway.oip_request import (
    DATATYPES,
    INPUT,
    OUTPUTS,
    InferError,
    infer_body_limit,
    model_metadata,
    not_loaded,
    parse_infer,
    unknown_model,
)
from gateway.settings import Settings

_TOO_LARGE = 20_000_000  # the body size the 413 example was sent
_VALUES = (45000.5, 44100.0, 45900.25)  # one window's forecast and interval, as /predict's


def _schema(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: str, example: Any) -> dict[str, Any]:
    content = {"application/json": {"schema": _schema(schema), "example": example}}
    return {"description": description, "content": content}


def _error(description: str, message: str) -> dict[str, Any]:
    return _answer(description, "OipError", {"error": message})


def oip_paths(
    settings: Settings, contract: WindowContract, window: Sequence[Sequence[float]]
) -> dict[str, Any]:
    """The five paths; `window` is the /predict example, sent here as a block of one."""
    name, t, f = settings.registered_model_name, contract.seq_len, contract.n_features
    unknown = {"404": _error("Another model name", unknown_model("other", name).message)}
    loading = {"503": _error("No model loaded yet", not_loaded(name).message)}
    path_name = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "the registered model's name (REGISTERED_MODEL_NAME)",
        "schema": {"type": "string", "enum": [name]},
    }
    bad_shape = {"inputs": [{"name": "X", "shape": [1, t, f - 1], "datatype": "FP64", "data": []}]}
    try:
        parse_infer(orjson.dumps(bad_shape), contract, settings.infer_max_windows)
        raise AssertionError("the example body was accepted")
    except InferError as e:
        refused = e.message
    form = Headers({"content-type": "application/x-www-form-urlencoded"})
    foreign = Headers({"origin": "https://elsewhere.example", "host": "gateway.example"})
    too_large = BodyTooLarge("", infer_body_limit(settings), _TOO_LARGE).detail
    n = 1
    answer = {
        "model_name": name,
        "model_version": "2",
        "id": "42",
        "parameters": {"model_alias": "Production", "interval_level": 0.8},
        "outputs": [
            {"name": output, "datatype": "FP64", "shape": [n, 1], "data": [value]}
            for output, value in zip(OUTPUTS, _VALUES, strict=True)
        ],
    }
    return {
        "/v2/health/live": {
            "get": {
                "operationId": "oipServerLive",
                "summary": "Open Inference Protocol: the server is live (always 200)",
                "responses": {"200": _answer("Live", "OipLive", {"live": True})},
            }
        },
        "/v2/health/ready": {
            "get": {
                "operationId": "oipServerReady",
                "summary": "Open Inference Protocol: 200 once a model is loaded, 400 until then",
                "responses": {
                    "200": _answer("Ready", "OipReady", {"ready": True}),
                    "400": _answer("No model loaded yet", "OipReady", {"ready": False}),
                },
            }
        },
        "/v2/models/{name}": {
            "get": {
                "operationId": "oipModelMetadata",
                "parameters": [path_name],
                "summary": "Open Inference Protocol: the served version's inputs and outputs",
                "responses": {
                    "200": _answer(
                        "Metadata", "OipModelMetadata", model_metadata(name, "2", OUTPUTS, t, f)
                    ),
                    **unknown,
                    **loading,
                },
            },
        },
        "/v2/models/{name}/ready": {
            "get": {
                "operationId": "oipModelReady",
                "parameters": [path_name],
                "summary": "Open Inference Protocol: 200 once the model is loaded, 400 until then",
                "responses": {
                    "200": _answer("Ready", "OipModelReady", {"name": name, "ready": True}),
                    "400": _answer(
                        "Not loaded yet", "OipModelReady", {"name": name, "ready": False}
                    ),
                    **unknown,
                },
            },
        },
        "/v2/models/{name}/infer": {
            "post": {
                "operationId": "oipInfer",
                "parameters": [path_name],
                "summary": "Open Inference Protocol: forecast N windows in one model call",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _schema("OipInferRequest"),
                            "example": {
                                "id": "42",
                                "inputs": [
                                    {
                                        "name": INPUT,
                                        "shape": [n, t, f],
                                        "datatype": "FP64",
                                        "data": [window],
                                    }
                                ],
                            },
                        }
                    },
                },
                "responses": {
                    "200": _answer("Forecasts, one per window", "OipInferResponse", answer),
                    "400": _error(
                        "Invalid input (shape, datatype, values, more than INFER_MAX_WINDOWS "
                        "windows, binary data), or the model gave no finite forecast",
                        refused,
                    ),
                    "403": _error(
                        "A browser request from another origin (ALLOWED_ORIGINS lists others)",
                        origin_refusal(foreign, "http", frozenset()) or "",
                    ),
                    **unknown,
                    "413": _error("Body too large", too_large),
                    "415": _error(
                        "A body declared as something other than JSON, or compressed",
                        media_type_refusal(form) or "",
                    ),
                    **loading,
                },
            },
        },
    }


def oip_schemas(settings: Settings, contract: WindowContract) -> dict[str, Any]:
    """The schemas the paths refer to."""
    t, f = contract.seq_len, contract.n_features
    string, boolean = {"type": "string"}, {"type": "boolean"}
    level = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}
    parameters = {"type": "object", "description": "accepted and ignored"}
    output_name = {"type": "string", "enum": list(OUTPUTS)}
    tensor = {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": string,
            "datatype": string,
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    }
    return {
        "OipLive": {"type": "object", "required": ["live"], "properties": {"live": boolean}},
        "OipReady": {"type": "object", "required": ["ready"], "properties": {"ready": boolean}},
        "OipModelReady": {
            "type": "object",
            "required": ["name", "ready"],
            "properties": {"name": string, "ready": boolean},
        },
        "OipTensorMetadata": tensor,
        "OipModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": string,
                "versions": {"type": "array", "items": string},
                "platform": string,
                "inputs": {"type": "array", "items": _schema("OipTensorMetadata")},
                "outputs": {"type": "array", "items": _schema("OipTensorMetadata")},
            },
        },
        "OipInferRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {**string, "description": "echoed in the answer"},
                "parameters": parameters,
                "inputs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 1,
                    "items": _schema("OipInput"),
                },
                "outputs": {
                    "type": "array",
                    "description": "the outputs to answer with (default: all the version gives)",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": output_name, "parameters": parameters},
                    },
                },
            },
        },
        "OipInput": {
            "type": "object",
            "required": ["name", "shape", "datatype", "data"],
            "properties": {
                "name": {"type": "string", "enum": [INPUT]},
                "shape": {
                    "type": "array",
                    "description": f"[N, T, F]: N windows of {t} x {f}, N at most "
                    "INFER_MAX_WINDOWS",
                    "prefixItems": [
                        {"type": "integer", "minimum": 1, "maximum": settings.infer_max_windows},
                        {"type": "integer", "enum": [t]},
                        {"type": "integer", "enum": [f]},
                    ],
                    "items": False,
                    "minItems": 3,
                },
                "datatype": {
                    "type": "string",
                    "enum": list(DATATYPES),
                    "description": "FP32 values are rounded to float32 first",
                },
                "parameters": parameters,
                "data": {
                    "type": "array",
                    "minItems": 1,
                    "description": "the N x T x F numbers in row-major order, flat or nested as "
                    "[N][T][F]; each window within the rules of PredictPayload's X",
                    "items": {"type": ["number", "array"]},
                },
            },
        },
        "OipInferResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "outputs"],
            "properties": {
                "model_name": string,
                "model_version": string,
                "id": {**string, "description": "the request's id, when it had one"},
                "parameters": {
                    "type": "object",
                    "description": "the served alias, and the interval's level (0.8: an 80% "
                    "interval) when the version gives one",
                    "required": ["model_alias"],
                    "properties": {"model_alias": string, "interval_level": level},
                },
                "outputs": {"type": "array", "items": _schema("OipOutput")},
            },
        },
        "OipOutput": {
            "type": "object",
            "required": ["name", "datatype", "shape", "data"],
            "properties": {
                "name": output_name,
                "datatype": {"type": "string", "enum": ["FP64"]},
                "shape": {
                    "type": "array",
                    "description": "[N, 1]: one value per window, USD",
                    "items": {"type": "integer"},
                },
                "data": {"type": "array", "items": {"type": "number"}},
            },
        },
        "OipError": {"type": "object", "required": ["error"], "properties": {"error": string}},
    }
