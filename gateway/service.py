"""What the routes do, without HTTP: predict (and deliver the callback), reload, health."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.batcher import Batcher
from gateway.metrics import Metrics
from gateway.served_model import ServedModel, ServedModels
from gateway.shadow import Shadow
from gateway.validation import PredictRequest
from gateway.webhooks.delivery import CallbackSender


@dataclass(frozen=True)
class Gateway:
    store: ServedModels
    batcher: Batcher
    callbacks: CallbackSender
    metrics: Metrics
    shadow: Shadow | None = None  # SHADOW_ALIAS's version, when set

    def health(self) -> dict[str, Any]:
        model = self.store.current
        return {
            "status": "ok",
            "model_loaded": model is not None,
            "model_alias": model.alias if model else None,
            "model_version": model.version if model else None,
            # Extras beyond the spec's four: what runs the network ("numpy", "xla", "graph"),
            # and the shadow alias's version (null when SHADOW_ALIAS is unset).
            "model_runtime": model.runtime if model else None,
            "shadow": self.shadow.health() if self.shadow is not None else None,
        }

    async def predict(
        self,
        request: PredictRequest,
        request_id: str,
        client_gone: Callable[[], bool] | None = None,
    ) -> tuple[dict[str, Any], ServedModel]:
        """The answer, and the model that computed it. ClientLeft when `client_gone` says the
        client left before its window ran."""
        forecast, model = await self.batcher.predict(request.x, client_gone)
        self.metrics.forecast("served", model.version)
        interval = (
            {"lower": forecast.lower, "upper": forecast.upper, "level": model.interval_level}
            if forecast.lower is not None and model.interval_level is not None
            else None
        )
        answer: dict[str, Any] = {
            "pred_btc_close_next": forecast.value,
            "posted_to_callback": False,
            "model_alias": model.alias,
            "model_version": model.version,
            "pred_interval": interval,
        }
        if request.callback_url is not None:
            result = await self.callbacks.deliver(
                request.callback_url,
                {
                    "pred_btc_close_next": forecast.value,
                    "metadata": request.metadata,
                    "model_alias": model.alias,
                    "model_version": model.version,
                    "pred_interval": interval,
                },
                # The receiver can match the callback to the request it answers.
                headers={"X-Request-ID": request_id},
            )
            self.metrics.callbacks.labels("delivered" if result.ok else "failed").inc()
            answer["posted_to_callback"] = result.ok
            if not result.ok:
                answer["callback_error"] = result.error
        return answer, model

    def ready(self) -> dict[str, Any] | None:
        model = self.store.current
        if model is None:
            return None
        return {"status": "ready", "model_alias": model.alias, "model_version": model.version}

    async def reload(self, alias: str | None) -> dict[str, Any]:
        model = await self.store.reload(alias)
        return {"status": "reloaded", "model_alias": model.alias, "model_version": model.version}
