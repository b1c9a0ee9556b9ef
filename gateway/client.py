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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import orjson
import standardwebhooks
from standardwebhooks import WebhookVerificationError

if TYPE_CHECKING:
    import pandas as pd

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

DEFAULT_SEQ_LEN = 12  # the spec's SEQ_LEN_REQUIRED default


# ---------------------------------------------------------------------------------------------
# Answers


@dataclass(frozen=True)
class Health:
    status: str
    model_loaded: bool
    model_alias: str | None
    model_version: str | None
    model_runtime: str | None = None  # what runs the network (an extra beyond the spec)


@dataclass(frozen=True)
class Readiness:
    """`/ready`: `ready` is False (and the model fields None) while no model is loaded."""

    ready: bool
    model_alias: str | None
    model_version: str | None


@dataclass(frozen=True)
class PredictionInterval:
    lower: float  # USD
    upper: float  # USD
    level: float  # e.g. 0.8 for an 80% interval


@dataclass(frozen=True)
class Prediction:
    pred_btc_close_next: float  # USD
    posted_to_callback: bool
    model_alias: str
    model_version: str
    # None when the served version gives no interval.
    pred_interval: PredictionInterval | None = None
    # Why the callback failed, when it did.
    callback_error: str | None = None
    # The gateway's X-Request-ID for this answer: its key in logs and in the prediction log.
    request_id: str | None = None


@dataclass(frozen=True)
class Reloaded:
    status: str
    model_alias: str
    model_version: str


# ---------------------------------------------------------------------------------------------
# Errors


class GatewayError(Exception):
    """An answer other than success: `status_code` and the gateway's `detail`, verbatim (the
    spec's Korean text, e.g. "예측 실패: ..."). `status_code` is None when no answer came."""

    def __init__(self, status_code: int | None, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}" if status_code else detail)
        self.status_code = status_code
        self.detail = detail


class PredictFailed(GatewayError):
    """400 from /predict: the window or the body was refused ("예측 실패: ...")."""


class ModelNotLoaded(GatewayError):
    """503: no model is loaded yet ("모델이 로드되지 않았습니다. /reload를 시도하세요.")."""


class ReloadFailed(GatewayError):
    """500 from /reload: the alias could not be resolved or loaded ("모델 리로드 실패: ...")."""


class ReloadRejected(GatewayError):
    """400 from /reload: the body was refused ("모델 리로드 실패: ...")."""


class Unauthorized(GatewayError):
    """401 from /reload: GATEWAY_ADMIN_TOKEN is set and `admin_token` is missing or wrong."""


class BodyTooLarge(GatewayError):
    """413: the body is over the gateway's MAX_BODY_BYTES."""


class GatewayUnreachable(GatewayError):
    """No answer: connection refused, timeout, or a broken connection."""


_ERRORS: dict[str, dict[int, type[GatewayError]]] = {
    "predict": {400: PredictFailed, 413: BodyTooLarge, 503: ModelNotLoaded},
    "reload": {400: ReloadRejected, 401: Unauthorized, 413: BodyTooLarge, 500: ReloadFailed},
}


# ---------------------------------------------------------------------------------------------
# Requests and answers, shared by both clients


@dataclass(frozen=True)
class _Call:
    operation: str
    method: str
    path: str
    content: bytes | None = None
    headers: Mapping[str, str] | None = None
    timeout: float | None = None


class _Protocol:
    def __init__(self, admin_token: str | None, seq_len: int) -> None:
        self._admin_token = admin_token
        self.seq_len = seq_len

    def predict_call(
        self,
        x: Any,
        callback_url: str | None,
        metadata: Mapping[str, Any] | None,
        request_id: str | None,
    ) -> _Call:
        payload: dict[str, Any] = {"X": self.window(x)}
        if callback_url is not None:
            payload["callback_url"] = callback_url
        if metadata is not None:
            payload["metadata"] = dict(metadata)
        headers = {"Content-Type": "application/json"}
        if request_id is not None:
            headers["X-Request-ID"] = request_id
        content = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        return _Call("predict", "POST", "/predict", content, headers)

    def reload_call(self, alias: str | None, timeout: float | None) -> _Call:
        headers = {"Content-Type": "application/json"}
        if self._admin_token is not None:
            headers["Authorization"] = f"Bearer {self._admin_token}"
        content = orjson.dumps({"alias": alias}) if alias is not None else b""
        return _Call("reload", "POST", "/reload", content, headers, timeout)

    def window(self, x: Any) -> Any:
        """A [T, F] list or array as is; a DataFrame of candles through window_from_candles."""
        if hasattr(x, "columns") and hasattr(x, "iloc"):
            from model_wrapper.features import window_from_candles

            candles: pd.DataFrame = x
            return window_from_candles(candles, self.seq_len)
        if isinstance(x, np.ndarray):
            # orjson writes arrays natively, but only C-contiguous ones.
            return np.ascontiguousarray(x, dtype=np.float64 if x.dtype != np.float32 else None)
        if isinstance(x, list | tuple):
            return x
        raise TypeError(
            "X must be a [T, F] list or numpy array, or a DataFrame of candles; "
            f"got {type(x).__name__}"
        )

    def parse(self, call: _Call, response: httpx.Response) -> Any:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if call.operation == "ready" and status in (200, 503) and isinstance(body, dict):
            return Readiness(status == 200, body.get("model_alias"), body.get("model_version"))
        if status != 200 or not isinstance(body, dict):
            detail = body.get("detail") if isinstance(body, dict) else None
            if not isinstance(detail, str):
                detail = response.text[:500]
            error = _ERRORS.get(call.operation, {}).get(status, GatewayError)
            raise error(status, detail)
        if call.operation == "health":
            return Health(
                body["status"],
                body["model_loaded"],
                body["model_alias"],
                body["model_version"],
                body.get("model_runtime"),
            )
        if call.operation == "reload":
            return Reloaded(body["status"], body["model_alias"], body["model_version"])
        interval = body.get("pred_interval")
        return Prediction(
            pred_btc_close_next=body["pred_btc_close_next"],
            posted_to_callback=body["posted_to_callback"],
            model_alias=body["model_alias"],
            model_version=body["model_version"],
            pred_interval=PredictionInterval(
                float(interval["lower"]), float(interval["upper"]), float(interval["level"])
            )
            if interval
            else None,
            callback_error=body.get("callback_error"),
            request_id=response.headers.get("x-request-id"),
        )


def _unreachable(base_url: str, e: httpx.TransportError) -> GatewayUnreachable:
    return GatewayUnreachable(None, f"no answer from {base_url}: {type(e).__name__}: {e}")


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
        self._protocol = _Protocol(admin_token, seq_len)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def health(self) -> Health:
        result: Health = self._send(_Call("health", "GET", "/health"))
        return result

    def ready(self) -> Readiness:
        result: Readiness = self._send(_Call("ready", "GET", "/ready"))
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

    def _send(self, call: _Call) -> Any:
        try:
            response = self._http.request(
                call.method,
                call.path,
                content=call.content,
                headers=call.headers,
                timeout=call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as e:
            raise _unreachable(self.base_url, e) from e
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
        self._protocol = _Protocol(admin_token, seq_len)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def health(self) -> Health:
        result: Health = await self._send(_Call("health", "GET", "/health"))
        return result

    async def ready(self) -> Readiness:
        result: Readiness = await self._send(_Call("ready", "GET", "/ready"))
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

    async def _send(self, call: _Call) -> Any:
        try:
            response = await self._http.request(
                call.method,
                call.path,
                content=call.content,
                headers=call.headers,
                timeout=call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as e:
            raise _unreachable(self.base_url, e) from e
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
