"""The gateway client's answers, errors and wire format, shared by the sync and async clients
(gateway/client.py, which re-exports the public names). No TensorFlow, no MLflow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import orjson

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_SEQ_LEN = 12  # the spec's SEQ_LEN_REQUIRED default


# ---------------------------------------------------------------------------------------------
# Answers


@dataclass(frozen=True)
class Health:
    status: str
    model_loaded: bool
    model_alias: str | None
    model_version: str | None


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
class Call:
    operation: str
    method: str
    path: str
    content: bytes | None = None
    headers: Mapping[str, str] | None = None
    timeout: float | None = None


class Wire:
    def __init__(self, admin_token: str | None, seq_len: int) -> None:
        self._admin_token = admin_token
        self.seq_len = seq_len

    def predict_call(
        self,
        x: Any,
        callback_url: str | None,
        metadata: Mapping[str, Any] | None,
        request_id: str | None,
    ) -> Call:
        payload: dict[str, Any] = {"X": self.window(x)}
        if callback_url is not None:
            payload["callback_url"] = callback_url
        if metadata is not None:
            payload["metadata"] = dict(metadata)
        headers = {"Content-Type": "application/json"}
        if request_id is not None:
            headers["X-Request-ID"] = request_id
        content = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        return Call("predict", "POST", "/predict", content, headers)

    def reload_call(self, alias: str | None, timeout: float | None) -> Call:
        headers = {"Content-Type": "application/json"}
        if self._admin_token is not None:
            headers["Authorization"] = f"Bearer {self._admin_token}"
        content = orjson.dumps({"alias": alias}) if alias is not None else b""
        return Call("reload", "POST", "/reload", content, headers, timeout)

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

    def parse(self, call: Call, response: httpx.Response) -> Any:
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
                body["status"], body["model_loaded"], body["model_alias"], body["model_version"]
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


def unreachable(base_url: str, e: httpx.TransportError) -> GatewayUnreachable:
    return GatewayUnreachable(None, f"no answer from {base_url}: {type(e).__name__}: {e}")
