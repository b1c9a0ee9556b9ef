"""The OpenAPI 3.1 document of the spec's API, with the configured window shape: every route, an
operationId each, the admin bearer scheme on /reload, and an example for every body and answer
(the /predict example is a real window, so that Swagger UI's "Try it out" gets a forecast).

X's schema is the served version's window contract (gateway/contract.py), the rules /predict
enforces; before a version is served, the contract the configured shape implies. Error examples
are the gateway's own refusals, made by its own code, so they read exactly as answers do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.contract import WindowContract, shape_contract
from gateway.errors import (
    PREDICT_PREFIX,
    RELOAD_PREFIX,
    BodyTooLarge,
    GatewayError,
    ModelNotLoaded,
    PredictFailed,
    ReloadFailed,
    ReloadRejected,
    Unauthorized,
)
from gateway.settings import Settings
from gateway.validation import InvalidRequest, parse_predict, parse_reload
from model_wrapper.features import N_FEATURES, min_candles, window_from_candles
from model_wrapper.synthetic import synthetic_candles

TITLE = "LSTM Inference with MLflow PyFunc"
VERSION = "2.0.0"
_TOO_LARGE = 2_000_000  # the body size the 413 examples were sent
_DOCUMENTS_KEPT = 4  # contracts a gateway holds a rendered document for


# Examples from the spec (section 2), so that the document and the contract read the same.
HEALTH_EXAMPLE = {
    "status": "ok",
    "model_loaded": True,
    "model_alias": "staging",
    "model_version": "1",
    "model_runtime": "numpy",
}
READY_EXAMPLE = {"status": "ready", "model_alias": "staging", "model_version": "1"}
NOT_READY_EXAMPLE = {"status": "not ready", "model_loaded": False}
RELOAD_EXAMPLE = {"alias": "Production"}
RELOADED_EXAMPLE = {"status": "reloaded", "model_alias": "Production", "model_version": "2"}
INTERVAL_EXAMPLE = {"lower": 44100.0, "upper": 45900.25, "level": 0.8}
PREDICTED_EXAMPLE = {
    "pred_btc_close_next": 45000.5,
    "posted_to_callback": True,
    "model_alias": "Production",
    "model_version": "2",
    "pred_interval": INTERVAL_EXAMPLE,
}
METADATA_EXAMPLE = {"request_id": "abc-123", "user_id": "user-456"}
CALLBACK_EXAMPLE = {
    "pred_btc_close_next": 45000.5,
    "metadata": METADATA_EXAMPLE,
    "model_alias": "Production",
    "model_version": "2",
    "pred_interval": INTERVAL_EXAMPLE,
}
METRICS_EXAMPLE = (
    "# HELP gateway_predictions_total Windows the model answered\n"
    "# TYPE gateway_predictions_total counter\n"
    "gateway_predictions_total 42.0\n"
)


def example_window(seq_len: int, n_features: int) -> list[list[float]]:
    """A [T, F] window for the /predict example: built from seeded synthetic candles the way a
    client builds one, so the model accepts it (zeros where F is not the wrapper's feature set)."""
    if n_features != N_FEATURES:
        return [[0.0] * n_features for _ in range(seq_len)]
    candles = synthetic_candles(min_candles(seq_len) + 20, seed=7)
    # Six significant digits keep the example short and still a window the model accepts.
    return [[float(f"{v:.6g}") for v in row] for row in window_from_candles(candles, seq_len)]


def _error(example: GatewayError, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "example": {"detail": example.detail},
            }
        },
    }


def _refusal(parse: Callable[[], object]) -> str:
    """The reason the gateway's own parser gives for a bad body."""
    try:
        parse()
    except InvalidRequest as e:
        return str(e)
    raise AssertionError("the example body was accepted")


class OpenAPIDocuments:
    """The document as JSON, for the contract of the version being served: rendered once per
    contract (versions of one wrapper share theirs)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._rendered: dict[WindowContract | None, bytes] = {}

    def render(self, contract: WindowContract | None) -> bytes:
        document = self._rendered.get(contract)
        if document is None:
            if len(self._rendered) >= _DOCUMENTS_KEPT:
                self._rendered.clear()
            document = orjson.dumps(openapi_document(self._settings, contract))
            self._rendered[contract] = document
        return document


def _json(ref: str, example: Any) -> dict[str, Any]:
    return {
        "application/json": {
            "schema": {"$ref": f"#/components/schemas/{ref}"},
            "example": example,
        }
    }


def openapi_document(settings: Settings, contract: WindowContract | None = None) -> dict[str, Any]:
    t, f = settings.seq_len_required, settings.n_features_required
    contract = contract or shape_contract(t, f)
    limit = settings.max_body_bytes
    nullable_str = {"type": ["string", "null"]}
    # null when the served version predates intervals; absent fields stay as the spec has them
    interval_ref = {
        "anyOf": [{"$ref": "#/components/schemas/PredictionInterval"}, {"type": "null"}]
    }
    schemas: dict[str, Any] = {
        "Health": {
            "type": "object",
            "required": ["status", "model_loaded", "model_alias", "model_version"],
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "model_loaded": {"type": "boolean"},
                "model_alias": nullable_str,
                "model_version": nullable_str,
                "model_runtime": {
                    **nullable_str,
                    "description": "what runs the network of the version served (numpy, xla, "
                    "graph), as the version reports it; null before a model is loaded or for "
                    "a version that does not say",
                },
            },
        },
        "ReloadRequest": {
            "type": "object",
            "properties": {
                "alias": {
                    "type": ["string", "null"],
                    "pattern": "\\S",
                    "description": "alias to serve; absent or null: MODEL_ALIAS",
                }
            },
        },
        "ReloadResponse": {
            "type": "object",
            "required": ["status", "model_alias", "model_version"],
            "properties": {
                "status": {"type": "string", "enum": ["reloaded"]},
                "model_alias": {"type": "string"},
                "model_version": {"type": "string"},
            },
        },
        "PredictPayload": {
            "type": "object",
            "required": ["X"],
            "properties": {
                "X": {
                    "type": "array",
                    "description": f"[T, F] = [{t}, {f}] raw feature values (SEQ_LEN_REQUIRED "
                    "x N_FEATURES_REQUIRED), in model_wrapper.features.FEATURE_NAMES order, "
                    "within the rules the served version declares"
                    + ("" if contract.declared else " (finite, within float32 before one is)"),
                    "minItems": t,
                    "maxItems": t,
                    "items": contract.row_schema(),
                },
                "callback_url": {
                    "type": ["string", "null"],
                    "format": "uri",
                    "pattern": "^[hH][tT][tT][pP][sS]?://[^/?#]",
                    "description": "absolute http(s) URL that receives the CallbackPayload",
                },
                "metadata": {"type": ["object", "null"]},
            },
        },
        "PredictResponse": {
            "type": "object",
            "required": [
                "pred_btc_close_next",
                "posted_to_callback",
                "model_alias",
                "model_version",
            ],
            "properties": {
                "pred_btc_close_next": {"type": "number"},
                "posted_to_callback": {"type": "boolean"},
                "model_alias": {"type": "string"},
                "model_version": {"type": "string"},
                "callback_error": {
                    "type": "string",
                    "description": "why the callback failed; present only then",
                },
                "pred_interval": interval_ref,
            },
        },
        "CallbackPayload": {
            "type": "object",
            "required": ["pred_btc_close_next", "metadata", "model_alias", "model_version"],
            "properties": {
                "pred_btc_close_next": {"type": "number"},
                "metadata": {"type": ["object", "null"]},
                "model_alias": {"type": "string"},
                "model_version": {"type": "string"},
                "pred_interval": interval_ref,
            },
        },
        "PredictionInterval": {
            "type": "object",
            "description": "central interval of the next close, from the model's quantile "
            "head calibrated out of sample; level 0.8 = an 80% interval",
            "required": ["lower", "upper", "level"],
            "properties": {
                "lower": {"type": "number", "description": "USD"},
                "upper": {"type": "number", "description": "USD"},
                "level": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            },
        },
        "Ready": {
            "type": "object",
            "required": ["status", "model_alias", "model_version"],
            "properties": {
                "status": {"type": "string", "enum": ["ready"]},
                "model_alias": {"type": "string"},
                "model_version": {"type": "string"},
            },
        },
        "NotReady": {
            "type": "object",
            "required": ["status", "model_loaded"],
            "properties": {
                "status": {"type": "string", "enum": ["not ready"]},
                "model_loaded": {"type": "boolean", "enum": [False]},
            },
        },
        "Error": {
            "type": "object",
            "required": ["detail"],
            "properties": {"detail": {"type": "string"}},
        },
    }
    window = example_window(t, f)
    # Required when the gateway has a token; without one /reload is open (`{}`: no auth).
    reload_security: list[dict[str, list[str]]] = [{"adminToken": []}]
    if settings.admin_token is None:
        reload_security.append({})
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": {
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness and the model being served",
                    "responses": {
                        "200": {"description": "OK", "content": _json("Health", HEALTH_EXAMPLE)}
                    },
                }
            },
            "/ready": {
                "get": {
                    "operationId": "ready",
                    "summary": "Readiness: 200 once a model is loaded, else 503",
                    "responses": {
                        "200": {"description": "Ready", "content": _json("Ready", READY_EXAMPLE)},
                        "503": {
                            "description": "No model loaded yet",
                            "content": _json("NotReady", NOT_READY_EXAMPLE),
                        },
                    },
                }
            },
            "/reload": {
                "post": {
                    "operationId": "reload",
                    "summary": "Serve the version behind an alias (default MODEL_ALIAS)",
                    "security": reload_security,
                    "requestBody": {
                        "required": False,
                        "content": _json("ReloadRequest", RELOAD_EXAMPLE),
                    },
                    "responses": {
                        "200": {
                            "description": "Reloaded",
                            "content": _json("ReloadResponse", RELOADED_EXAMPLE),
                        },
                        "400": _error(
                            ReloadRejected(_refusal(lambda: parse_reload(b'{"alias": 1}'))),
                            "Unreadable body",
                        ),
                        "401": _error(
                            Unauthorized(),
                            "Missing or wrong bearer token (only when GATEWAY_ADMIN_TOKEN is set)",
                        ),
                        "413": _error(
                            BodyTooLarge(RELOAD_PREFIX, limit, _TOO_LARGE), "Body too large"
                        ),
                        "500": _error(
                            ReloadFailed(
                                f"alias 'Production' of model '{settings.registered_model_name}' "
                                "not found in the registry"
                            ),
                            "Reload failed",
                        ),
                    },
                }
            },
            "/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "Forecast the next BTC close in USD",
                    "requestBody": {
                        "required": True,
                        "content": _json(
                            "PredictPayload", {"X": window, "metadata": METADATA_EXAMPLE}
                        ),
                    },
                    "responses": {
                        "200": {
                            "description": "Forecast",
                            "content": _json("PredictResponse", PREDICTED_EXAMPLE),
                        },
                        "400": _error(
                            PredictFailed(
                                _refusal(lambda: parse_predict(b'{"X": [[], [], []]}', contract))
                            ),
                            "Invalid input",
                        ),
                        "413": _error(
                            BodyTooLarge(PREDICT_PREFIX, limit, _TOO_LARGE), "Body too large"
                        ),
                        "503": _error(ModelNotLoaded(), "No model loaded"),
                    },
                    "callbacks": {
                        "prediction": {
                            "{$request.body#/callback_url}": {
                                "post": {
                                    "operationId": "predictionCallback",
                                    "requestBody": {
                                        "required": True,
                                        "content": _json("CallbackPayload", CALLBACK_EXAMPLE),
                                    },
                                    "responses": {"2XX": {"description": "Delivered"}},
                                }
                            }
                        }
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text exposition format)",
                    "responses": {
                        "200": {
                            "description": "Metrics",
                            "content": {
                                "text/plain": {
                                    "schema": {"type": "string"},
                                    "example": METRICS_EXAMPLE,
                                }
                            },
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "GATEWAY_ADMIN_TOKEN; POST /reload requires it when it is set",
                }
            },
        },
    }
