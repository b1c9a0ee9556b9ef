"""A Python client for the gateway: `GatewayClient` (sync) and `AsyncGatewayClient` (async), with
typed answers and the spec's errors as exceptions.

Imports neither TensorFlow nor MLflow (a test checks), nor anything of model_wrapper: windows
from candles come from the model's own feature code, loaded from its file (client/candles.py),
numpy and pandas only, when candles are given; the request then carries the last candle's time
as `metadata.candle_time`, which the scorecard matches the forecast by.

    with GatewayClient("http://127.0.0.1:8000") as gw:
        forecast = gw.predict(candles)          # a DataFrame of OHLCV candles, or a [T, F] window
        print(forecast.pred_btc_close_next, forecast.model_version)
"""

from __future__ import annotations

from standardwebhooks import WebhookVerificationError

from gateway.client.answers import (
    BodyTooLarge,
    GatewayError,
    GatewayUnreachable,
    Health,
    InvalidArgument,
    ModelNotLoaded,
    PredictFailed,
    Prediction,
    PredictionInterval,
    Readiness,
    Reloaded,
    ReloadFailed,
    ReloadRejected,
    Unauthorized,
)
from gateway.client.clients import AsyncGatewayClient, GatewayClient
from gateway.client.webhooks import SeenIds, verify_webhook

__all__ = [
    "AsyncGatewayClient",
    "BodyTooLarge",
    "GatewayClient",
    "GatewayError",
    "GatewayUnreachable",
    "Health",
    "InvalidArgument",
    "ModelNotLoaded",
    "PredictFailed",
    "Prediction",
    "PredictionInterval",
    "Readiness",
    "ReloadFailed",
    "ReloadRejected",
    "Reloaded",
    "SeenIds",
    "Unauthorized",
    "WebhookVerificationError",
    "verify_webhook",
]
