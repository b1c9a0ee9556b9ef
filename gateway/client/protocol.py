"""What both clients share: the requests they build and how answers are read."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import httpx
import numpy as np
import orjson

from gateway.client.answers import (
    ERRORS,
    GatewayError,
    GatewayUnreachable,
    Health,
    InvalidArgument,
    Prediction,
    PredictionInterval,
    Readiness,
    Reloaded,
)
from gateway.client.candles import last_candle_time, window_from_candles

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_SEQ_LEN = 12  # the spec's SEQ_LEN_REQUIRED default
# What the gateway echoes as given (gateway/request_log.py): printable ASCII, 1 to 128.
_REQUEST_ID = re.compile(r"[ -~]{1,128}")


@dataclass(frozen=True)
class Call:
    operation: str
    method: str
    path: str
    content: bytes | None = None
    headers: Mapping[str, str] | None = None
    timeout: float | None = None

    def request(self) -> dict[str, Any]:
        """httpx's `request` arguments for this call."""
        return {
            "method": self.method,
            "url": self.path,
            "content": self.content,
            "headers": self.headers,
            "timeout": self.timeout if self.timeout is not None else httpx.USE_CLIENT_DEFAULT,
        }


class PredictOptions(TypedDict, total=False):
    """What `predict` takes besides the window, each by keyword."""

    callback_url: str | None  # the gateway also POSTs the answer there, signed
    metadata: Mapping[str, Any] | None  # echoed in that callback
    request_id: str | None  # sent as X-Request-ID; the gateway makes one if absent


HEALTH = Call("health", "GET", "/health")
READY = Call("ready", "GET", "/ready")


class Protocol:
    def __init__(self, admin_token: str | None, seq_len: int) -> None:
        self._admin_token = admin_token
        self.seq_len = seq_len

    def predict_call(self, x: Any, **options: Unpack[PredictOptions]) -> Call:
        callback_url = options.get("callback_url")
        metadata = options.get("metadata")
        request_id = options.get("request_id")
        payload: dict[str, Any] = {"X": self.window(x)}
        if _is_frame(x):
            # The time of the window's last candle: what the scorecard matches the forecast by.
            when = last_candle_time(x)
            if when is not None:
                metadata = {"candle_time": when, **(metadata or {})}
        if callback_url is not None:
            payload["callback_url"] = callback_url
        if metadata is not None:
            payload["metadata"] = checked_metadata(metadata)
        headers = {"Content-Type": "application/json"}
        if request_id is not None:
            if not (isinstance(request_id, str) and _REQUEST_ID.fullmatch(request_id)):
                raise InvalidArgument(
                    "request_id must be 1 to 128 printable ASCII characters, got "
                    f"{str(request_id)[:40]!r}"
                )
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
        if _is_frame(x):
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
            error = ERRORS.get(call.operation, {}).get(status, GatewayError)
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


def _is_frame(x: Any) -> bool:
    return hasattr(x, "columns") and hasattr(x, "iloc")


def checked_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata as a dict JSON carries exactly, or InvalidArgument: orjson writes NaN and
    infinities as null, and refuses integers beyond 64 bits and objects it cannot write."""
    value = dict(metadata)
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError as e:
        raise InvalidArgument(f"metadata cannot be sent as JSON: {e}") from None
    # Acyclic and at most 255 levels deep once orjson took it: a plain walk is safe.
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise InvalidArgument(f"metadata holds {item}: JSON has no NaN or infinity")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return value


def unreachable(base_url: str, e: httpx.TransportError) -> GatewayUnreachable:
    return GatewayUnreachable(None, f"no answer from {base_url}: {type(e).__name__}: {e}")
