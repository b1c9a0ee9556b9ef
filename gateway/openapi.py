"""The OpenAPI 3.1 document of the spec's API (and of the Open Inference Protocol's routes beside
it: gateway/openapi_oip.py), with the configured window shape: every route, an operationId
each, the admin bearer scheme on /reload, and an example for every body and answer (the
/predict example is a real window, so that Swagger UI's "Try it out" gets a forecast).

X's schema is the served version's window contract (gateway/contract.py), the rules /predict
enforces; before a version is served, the contract the configured shape implies. Error examples
are the gateway's own refusals, made by its own code, so they read exactly as answers do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from starlette.datastructures import Headers

from gateway.contract import WindowContract, shape_contract
from gateway.cross_site import media_type_refusal, origin_refusal
from gateway.errors import (
    PREDICT_PREFIX,
    RELOAD_PREFIX,
    BodyTooLarge,
    CrossSiteRefused,
    GatewayError,
    ModelNotLoaded,
    PredictFailed,
    ReloadFailed,
    ReloadRejected,
    Unauthorized,
    UnsupportedMediaType,
)
from gateway.openapi_oip import oip_paths, oip_schemas
from gateway.openapi_schemas import (
    CALLBACK_EXAMPLE,
    HEALTH_EXAMPLE,
    METADATA_EXAMPLE,
    METRICS_EXAMPLE,
    NOT_READY_EXAMPLE,
    PREDICTED_EXAMPLE,
    READY_EXAMPLE,
    RELOAD_EXAMPLE,
    RELOADED_EXAMPLE,
    component_schemas,
    example_window,
)
from gateway.settings import Settings
from gateway.validation import InvalidRequest, parse_predict, parse_reload

TITLE = "LSTM Inference with MLflow PyFunc"
VERSION = "2.0.0"
_TOO_LARGE = 2_000_000  # the body size the 413 examples were sent
_DOCUMENTS_KEPT = 4  # contracts a gateway holds a rendered document for


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


def _cross_site(prefix: str) -> dict[str, dict[str, Any]]:
    """The 403 and 415 a POST route gives a browser request from another site."""
    form = Headers({"content-type": "application/x-www-form-urlencoded"})
    foreign = Headers({"origin": "https://elsewhere.example", "host": "gateway.example"})
    return {
        "403": _error(
            CrossSiteRefused(prefix, origin_refusal(foreign, "http", frozenset()) or ""),
            "A browser request from another origin (ALLOWED_ORIGINS lists others to serve)",
        ),
        "415": _error(
            UnsupportedMediaType(prefix, media_type_refusal(form) or ""),
            "A body declared as something other than JSON",
        ),
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
        self._rendered: dict[tuple[object, object], bytes] = {}

    def render(
        self, contract: WindowContract | None, example: tuple[tuple[float, ...], ...] | None = None
    ) -> bytes:
        """The document for a served version's contract and input example (None: none yet)."""
        key = (contract, example)
        document = self._rendered.get(key)
        if document is None:
            if len(self._rendered) >= _DOCUMENTS_KEPT:
                self._rendered.clear()
            document = orjson.dumps(openapi_document(self._settings, contract, example))
            self._rendered[key] = document
        return document


def _json(ref: str, example: Any) -> dict[str, Any]:
    return {
        "application/json": {
            "schema": {"$ref": f"#/components/schemas/{ref}"},
            "example": example,
        }
    }


def openapi_document(
    settings: Settings,
    contract: WindowContract | None = None,
    example: Sequence[Sequence[float]] | None = None,
) -> dict[str, Any]:
    """The document; `contract` and `example` (a [T, F] window) are the served version's."""
    t, f = settings.seq_len_required, settings.n_features_required
    contract = contract or shape_contract(t, f)
    limit = settings.max_body_bytes
    schemas = {**component_schemas(settings, contract), **oip_schemas(settings, contract)}
    window = example_window(t, f, example)
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
                        **_cross_site(RELOAD_PREFIX),
                        "413": _error(
                            BodyTooLarge(RELOAD_PREFIX, limit, _TOO_LARGE), "Body too large"
                        ),
                        "500": _error(
                            ReloadFailed(
                                f"alias 'Production' of model '{settings.registered_model_name}' "
                                "not found in the registry"
                            ),
                            "Reload failed (the alias is unknown, the registry unreachable, the "
                            "version unservable, or two reloads are under way already); the "
                            "model served before goes on serving",
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
                        **_cross_site(PREDICT_PREFIX),
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
            # The Open Inference Protocol's routes (gateway/oip.py), beside the spec's.
            **oip_paths(settings, contract, window),
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
