"""The OpenAPI 3.1 document of the spec's API, with the configured window shape."""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.errors import NOT_LOADED_DETAIL
from gateway.settings import Settings

TITLE = "LSTM Inference with MLflow PyFunc"
FLOAT32_MAX = float(np.finfo(np.float32).max)
VERSION = "2.0.0"


def _error(example: str) -> dict[str, Any]:
    return {
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "example": {"detail": example},
            }
        }
    }


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def openapi_document(settings: Settings) -> dict[str, Any]:
    t, f = settings.seq_len_required, settings.n_features_required
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
                    "x N_FEATURES_REQUIRED), in model_wrapper.features.FEATURE_NAMES order",
                    "minItems": t,
                    "maxItems": t,
                    "items": {
                        "type": "array",
                        "minItems": f,
                        "maxItems": f,
                        # The model computes in float32.
                        "items": {
                            "type": "number",
                            "minimum": -FLOAT32_MAX,
                            "maximum": FLOAT32_MAX,
                        },
                    },
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
        "Error": {
            "type": "object",
            "required": ["detail"],
            "properties": {"detail": {"type": "string"}},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": {
            "/health": {
                "get": {
                    "summary": "Liveness and the model being served",
                    "responses": {"200": {"description": "OK", "content": _json("Health")}},
                }
            },
            "/reload": {
                "post": {
                    "summary": "Serve the version behind an alias (default MODEL_ALIAS)",
                    "requestBody": {"required": False, "content": _json("ReloadRequest")},
                    "responses": {
                        "200": {"description": "Reloaded", "content": _json("ReloadResponse")},
                        "400": {
                            "description": "Unreadable body",
                            **_error("모델 리로드 실패: ..."),
                        },
                        "413": {"description": "Body too large", **_error("모델 리로드 실패: ...")},
                        "500": {"description": "Reload failed", **_error("모델 리로드 실패: ...")},
                    },
                }
            },
            "/predict": {
                "post": {
                    "summary": "Forecast the next BTC close in USD",
                    "requestBody": {"required": True, "content": _json("PredictPayload")},
                    "responses": {
                        "200": {"description": "Forecast", "content": _json("PredictResponse")},
                        "400": {"description": "Invalid input", **_error("예측 실패: ...")},
                        "413": {"description": "Body too large", **_error("예측 실패: ...")},
                        "503": {"description": "No model loaded", **_error(NOT_LOADED_DETAIL)},
                    },
                    "callbacks": {
                        "prediction": {
                            "{$request.body#/callback_url}": {
                                "post": {
                                    "requestBody": {
                                        "required": True,
                                        "content": _json("CallbackPayload"),
                                    },
                                    "responses": {"2XX": {"description": "Delivered"}},
                                }
                            }
                        }
                    },
                }
            },
        },
        "components": {"schemas": schemas},
    }
