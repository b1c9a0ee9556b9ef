"""The client's typed answers and the spec's errors as exceptions."""

from __future__ import annotations

from dataclasses import dataclass


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


class GatewayError(Exception):
    """An answer other than success: `status_code` and the gateway's `detail`, verbatim (the
    spec's Korean text, e.g. "예측 실패: ..."). `status_code` is None when no answer came."""

    def __init__(self, status_code: int | None, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}" if status_code else detail)
        self.status_code = status_code
        self.detail = detail


class PredictFailed(GatewayError):
    """400 from /predict: the window or the body was refused ("예측 실패: ..."); also from the
    infer route (`predict_many`), whose `detail` is the protocol's `error` text."""


class ModelNotLoaded(GatewayError):
    """503: no model is loaded yet ("모델이 로드되지 않았습니다. /reload를 시도하세요."; the
    infer route's text is the protocol's `error`)."""


class ReloadFailed(GatewayError):
    """500 from /reload: the alias could not be resolved or loaded ("모델 리로드 실패: ...")."""


class ReloadRejected(GatewayError):
    """400 from /reload: the body was refused ("모델 리로드 실패: ...")."""


class Unauthorized(GatewayError):
    """401 from /reload: GATEWAY_ADMIN_TOKEN is set and `admin_token` is missing or wrong."""


class BodyTooLarge(GatewayError):
    """413: the body is over the gateway's MAX_BODY_BYTES (for `predict_many`, over the infer
    route's limit, which follows from INFER_MAX_WINDOWS)."""


class GatewayUnreachable(GatewayError):
    """No answer: connection refused, timeout, or a broken connection."""


class InvalidArgument(GatewayError, ValueError):
    """Refused by the client before sending: an argument the gateway could not take as given
    (a request id that is not 1 to 128 printable ASCII characters, metadata that JSON cannot
    carry exactly). `status_code` is None: nothing was sent."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, detail)


ERRORS: dict[str, dict[int, type[GatewayError]]] = {
    "predict": {400: PredictFailed, 413: BodyTooLarge, 503: ModelNotLoaded},
    "infer": {400: PredictFailed, 413: BodyTooLarge, 503: ModelNotLoaded},
    "reload": {400: ReloadRejected, 401: Unauthorized, 413: BodyTooLarge, 500: ReloadFailed},
}
