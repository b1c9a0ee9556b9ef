"""A Python client for the gateway: `GatewayClient` (sync) and `AsyncGatewayClient` (async), with
typed answers and the spec's errors as exceptions.

Imports neither TensorFlow nor MLflow (a test checks): windows from candles come from
`model_wrapper.features`, which is numpy and pandas only, imported when candles are given.

    with GatewayClient("http://127.0.0.1:8000") as gw:
        forecast = gw.predict(candles)          # a DataFrame of OHLCV candles, or a [T, F] window
        print(forecast.pred_btc_close_next, forecast.model_version)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import standardwebhooks
from standardwebhooks import WebhookVerificationError

from gateway.client_wire import (
    DEFAULT_SEQ_LEN,
    BodyTooLarge,
    Call,
    GatewayError,
    GatewayUnreachable,
    Health,
    ModelNotLoaded,
    PredictFailed,
    Prediction,
    PredictionInterval,
    Readiness,
    Reloaded,
    ReloadFailed,
    ReloadRejected,
    Unauthorized,
    Wire,
    unreachable,
)

__all__ = [
    "AsyncGatewayClient",
    "BodyTooLarge",
    "GatewayClient",
    "GatewayError",
    "GatewayUnreachable",
    "Health",
    "ModelNotLoaded",
    "PredictFailed",
    "Prediction",
    "PredictionInterval",
    "Readiness",
    "ReloadFailed",
    "ReloadRejected",
    "Reloaded",
    "Unauthorized",
    "WebhookVerificationError",
    "verify_webhook",
]

# ---------------------------------------------------------------------------------------------
# The clients


class GatewayClient:
    """Blocking client. `seq_len` is the gateway's SEQ_LEN_REQUIRED, used to cut windows from
    candles; `timeout` is in seconds per request (a reload may need more: pass `timeout=`)."""

    def __init__(
        self,
        base_url: str,
        admin_token: str | None = None,
        timeout: float = 10.0,
        *,
        seq_len: int = DEFAULT_SEQ_LEN,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._protocol = Wire(admin_token, seq_len)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def health(self) -> Health:
        result: Health = self._send(Call("health", "GET", "/health"))
        return result

    def ready(self) -> Readiness:
        result: Readiness = self._send(Call("ready", "GET", "/ready"))
        return result

    def predict(
        self,
        X: Any,  # the spec's field name
        callback_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> Prediction:
        call = self._protocol.predict_call(X, callback_url, metadata, request_id)
        result: Prediction = self._send(call)
        return result

    def reload(self, alias: str | None = None, *, timeout: float | None = None) -> Reloaded:
        result: Reloaded = self._send(self._protocol.reload_call(alias, timeout))
        return result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, call: Call) -> Any:
        try:
            response = self._http.request(
                call.method,
                call.path,
                content=call.content,
                headers=call.headers,
                timeout=call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as e:
            raise unreachable(self.base_url, e) from e
        return self._protocol.parse(call, response)


class AsyncGatewayClient:
    """The same methods as GatewayClient, as coroutines."""

    def __init__(
        self,
        base_url: str,
        admin_token: str | None = None,
        timeout: float = 10.0,
        *,
        seq_len: int = DEFAULT_SEQ_LEN,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._protocol = Wire(admin_token, seq_len)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def health(self) -> Health:
        result: Health = await self._send(Call("health", "GET", "/health"))
        return result

    async def ready(self) -> Readiness:
        result: Readiness = await self._send(Call("ready", "GET", "/ready"))
        return result

    async def predict(
        self,
        X: Any,  # the spec's field name
        callback_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> Prediction:
        call = self._protocol.predict_call(X, callback_url, metadata, request_id)
        result: Prediction = await self._send(call)
        return result

    async def reload(self, alias: str | None = None, *, timeout: float | None = None) -> Reloaded:
        result: Reloaded = await self._send(self._protocol.reload_call(alias, timeout))
        return result

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncGatewayClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _send(self, call: Call) -> Any:
        try:
            response = await self._http.request(
                call.method,
                call.path,
                content=call.content,
                headers=call.headers,
                timeout=call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as e:
            raise unreachable(self.base_url, e) from e
        return self._protocol.parse(call, response)


# ---------------------------------------------------------------------------------------------
# Receiving callbacks


def verify_webhook(secret: str, headers: Mapping[str, str], body: bytes | str) -> dict[str, Any]:
    """The callback payload, once its Standard Webhooks signature checks out against `secret`
    (the gateway's CALLBACK_SECRET: "whsec_<base64>" or any other text, taken as UTF-8 bytes).
    Raises WebhookVerificationError for a missing, wrong or stale (over 5 minutes) signature."""
    key: str | bytes = secret if secret.startswith("whsec_") else secret.encode("utf-8")
    payload = standardwebhooks.Webhook(key).verify(body, dict(headers))
    if not isinstance(payload, dict):
        raise WebhookVerificationError("the signed body is not a JSON object")
    return payload
