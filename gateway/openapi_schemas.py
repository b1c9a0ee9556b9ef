"""The OpenAPI document's component schemas and the spec's examples (gateway/openapi.py puts
them together with the paths). X's schema is the window contract's (gateway/contract.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from gateway.contract import WindowContract
from gateway.settings import Settings

# A real 12 x 18 window (cut from seeded synthetic candles by the model's feature code), for the
# /predict example before a version is served; a served version's own input example replaces it.
EXAMPLE_WINDOW_FILE = Path(__file__).with_name("example_window.json")

# Examples from the spec (section 2), so that the document and the contract read the same.
HEALTH_EXAMPLE = {
    "status": "ok",
    "model_loaded": True,
    "model_alias": "staging",
    "model_version": "1",
    "model_runtime": "numpy",
    "shadow": {"model_alias": "challenger", "model_version": "2", "model_loaded": True},
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


def example_window(
    seq_len: int, n_features: int, served: Sequence[Sequence[float]] | None = None
) -> list[list[float]]:
    """A [T, F] window for the /predict example, so that "Try it out" gets a forecast: the
    served version's logged input example, else the stored window of the default shape, else
    (another shape, before a version is served) zeros."""
    if served is not None and (len(served), len(served[0])) == (seq_len, n_features):
        # Six significant digits keep the example short and still a window the model accepts.
        return [[float(f"{v:.6g}") for v in row] for row in served]
    stored = _stored_window()
    if (len(stored), len(stored[0])) == (seq_len, n_features):
        return stored
    return [[0.0] * n_features for _ in range(seq_len)]


@cache
def _stored_window() -> list[list[float]]:
    window: list[list[float]] = json.loads(EXAMPLE_WINDOW_FILE.read_text())
    return window


def _served(status: str) -> dict[str, Any]:
    """An answer naming the served model: /reload's and /ready's."""
    return {
        "type": "object",
        "required": ["status", "model_alias", "model_version"],
        "properties": {
            "status": {"type": "string", "enum": [status]},
            "model_alias": {"type": "string"},
            "model_version": {"type": "string"},
        },
    }


def component_schemas(settings: Settings, contract: WindowContract) -> dict[str, Any]:
    """Every schema the paths refer to; X's rows are `contract`'s."""
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
                "model_runtime": {
                    **nullable_str,
                    "description": "what runs the network of the version served (numpy, xla, "
                    "graph), as the version reports it; null before a model is loaded or for "
                    "a version that does not say",
                },
                "shadow": {
                    "anyOf": [
                        {
                            "type": "object",
                            "required": ["model_alias", "model_version", "model_loaded"],
                            "properties": {
                                "model_alias": {"type": "string"},
                                "model_version": nullable_str,
                                "model_loaded": {"type": "boolean"},
                            },
                        },
                        {"type": "null"},
                    ],
                    "description": "the shadow alias's version (SHADOW_ALIAS), which forecasts "
                    "mirrored requests for the prediction log only; null when unset",
                },
            },
        },
        "ReloadRequest": {
            "type": "object",
            "properties": {
                "alias": {
                    "type": ["string", "null"],
                    # gateway/aliases.py, in ECMA-262 (ASCII here: the gateway also takes other
                    # letters MLflow accepts): a name, not `latest` in any casing, not v<N>.
                    "pattern": "^(?![Ll][Aa][Tt][Ee][Ss][Tt]$)(?![vV][0-9]+$)[A-Za-z0-9_-]{1,255}$",
                    "description": "alias to serve (an MLflow alias name; never `latest` or "
                    "v<N>); absent or null: MODEL_ALIAS",
                }
            },
        },
        "ReloadResponse": _served("reloaded"),
        "PredictPayload": {
            "type": "object",
            "required": ["X"],
            "properties": {
                "X": {
                    "type": "array",
                    "description": f"[T, F] = [{t}, {f}] raw feature values (SEQ_LEN_REQUIRED "
                    "x N_FEATURES_REQUIRED), in the served version's feature order (the "
                    "feature names of its contract), "
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
                "metadata": {
                    "type": ["object", "null"],
                    "description": "any JSON object, returned as sent; integers must fit in "
                    "64 bits (-2**63 to 2**64-1)",
                },
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
                "metadata": {
                    "type": ["object", "null"],
                    "description": "any JSON object, returned as sent; integers must fit in "
                    "64 bits (-2**63 to 2**64-1)",
                },
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
        "Ready": _served("ready"),
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
    return schemas
