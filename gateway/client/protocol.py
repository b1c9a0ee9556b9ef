"""What both clients share: the requests they build and how answers are read."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, Unpack
from urllib.parse import quote

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
DEFAULT_MODEL_NAME = "BTC_LSTM_Production"  # the spec's REGISTERED_MODEL_NAME default
DEFAULT_INFER_MAX_WINDOWS = 256  # the gateway's INFER_MAX_WINDOWS default
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
    def __init__(self, admin_token: str | None, seq_len: int, model_name: str) -> None:
        self._admin_token = admin_token
        self.seq_len = seq_len
        self.model_name = model_name

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

    def infer_calls(self, windows: Any, max_windows: int) -> Iterator[Call]:
        """The Open Inference Protocol's infer requests for [N, T, F] windows, in order, of at
        most `max_windows` windows each; InvalidArgument for what JSON cannot carry."""
        if not (type(max_windows) is int and max_windows >= 1):
            raise InvalidArgument(f"max_windows must be an integer from 1, got {max_windows!r}")
        try:
            x = np.asarray(windows)
        except (ValueError, TypeError) as e:  # ragged
            raise InvalidArgument(f"windows must be [N, T, F] numbers: {e}") from None
        if x.shape == (0,):  # no windows: no request
            return
        if x.ndim != 3 or x.dtype.kind not in "fiu":
            raise InvalidArgument(
                f"windows must be [N, T, F] numbers, got {x.dtype.name} of shape {list(x.shape)}"
            )
        x = np.ascontiguousarray(x, dtype=np.float64)
        if not np.isfinite(x).all():
            raise InvalidArgument("windows hold NaN or infinity: JSON has neither")
        path = f"/v2/models/{quote(self.model_name, safe='')}/infer"
        for start in range(0, len(x), max_windows):
            block = x[start : start + max_windows]
            tensor = {"name": "X", "shape": list(block.shape), "datatype": "FP64", "data": block}
            content = orjson.dumps({"inputs": [tensor]}, option=orjson.OPT_SERIALIZE_NUMPY)
            yield Call("infer", "POST", path, content, {"Content-Type": "application/json"})

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
            # The spec's routes say `detail`, the Open Inference Protocol's `error`.
            detail = body.get("detail", body.get("error")) if isinstance(body, dict) else None
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
        if call.operation == "infer":
            return _forecasts(body, response.headers.get("x-request-id"))
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


def _forecasts(body: dict[str, Any], request_id: str | None) -> list[Prediction]:
    """One Prediction per window of an infer answer (outputs by name, one value per window)."""
    outputs = {output["name"]: output["data"] for output in body["outputs"]}
    parameters = body.get("parameters") or {}
    level = parameters.get("interval_level")
    lower, upper = outputs.get("pred_interval_lower"), outputs.get("pred_interval_upper")
    return [
        Prediction(
            pred_btc_close_next=value,
            posted_to_callback=False,
            model_alias=parameters.get("model_alias", ""),
            model_version=body["model_version"],
            pred_interval=PredictionInterval(float(lower[i]), float(upper[i]), float(level))
            if lower is not None and upper is not None and level is not None
            else None,
            request_id=request_id,
        )
        for i, value in enumerate(outputs["pred_btc_close_next"])
    ]


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
