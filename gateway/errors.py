"""The gateway's errors, each carrying its HTTP status and the spec's exact `detail` text."""

from __future__ import annotations

PREDICT_PREFIX = "예측 실패: "
RELOAD_PREFIX = "모델 리로드 실패: "
NOT_LOADED_DETAIL = "모델이 로드되지 않았습니다. /reload를 시도하세요."


class GatewayError(Exception):
    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class PredictFailed(GatewayError):
    """A request the model cannot answer: malformed input, or the model refused it (400)."""

    status_code = 400

    def __init__(self, reason: str) -> None:
        super().__init__(PREDICT_PREFIX + reason)
        self.reason = reason


class ModelNotLoaded(GatewayError):
    status_code = 503

    def __init__(self) -> None:
        super().__init__(NOT_LOADED_DETAIL)


class ReloadFailed(GatewayError):
    """The alias could not be resolved or its version could not be loaded (500)."""

    def __init__(self, reason: str) -> None:
        super().__init__(RELOAD_PREFIX + reason)
        self.reason = reason


class ReloadRejected(GatewayError):
    """A /reload body the gateway cannot read (400)."""

    status_code = 400

    def __init__(self, reason: str) -> None:
        super().__init__(RELOAD_PREFIX + reason)


class Unauthorized(GatewayError):
    status_code = 401

    def __init__(self) -> None:
        super().__init__(
            RELOAD_PREFIX + "unauthorized: send Authorization: Bearer <GATEWAY_ADMIN_TOKEN>"
        )


class CrossSiteRefused(GatewayError):
    """A browser request from another site (gateway/cross_site.py): 403."""

    status_code = 403

    def __init__(self, prefix: str, reason: str) -> None:
        super().__init__(prefix + reason)


class UnsupportedMediaType(GatewayError):
    """A POST body not declared JSON (gateway/cross_site.py): 415."""

    status_code = 415

    def __init__(self, prefix: str, reason: str) -> None:
        super().__init__(prefix + reason)


class BodyTooLarge(GatewayError):
    status_code = 413

    def __init__(self, prefix: str, limit: int, size: int | None) -> None:
        got = f"{size} bytes" if size is not None else "more"
        super().__init__(f"{prefix}request body too large: at most {limit} bytes, got {got}")
