"""What the lifespan (gateway/app.py) hands the routes: the running gateway's parts, typed.

Starlette copies it into every request's `scope["state"]`; the routes read it through `state()`
so that each knows the type of what it reads. Per-request keys (the request id, the model
version that answered, http_limits' markers) live in the same dict beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict, cast

from starlette.requests import Request

if TYPE_CHECKING:
    from gateway.contract import WindowContract
    from gateway.metrics import Metrics
    from gateway.openapi import OpenAPIDocuments
    from gateway.prediction_log import PredictionLog
    from gateway.service import Gateway
    from gateway.settings import Settings


class State(TypedDict):
    settings: Settings
    metrics: Metrics
    gateway: Gateway
    prediction_log: PredictionLog | None  # None when PREDICTION_LOG is unset
    openapi: OpenAPIDocuments  # the documents, rendered once per served contract
    shape_only: WindowContract  # the contract the settings imply, until a version is served


def state(request: Request) -> State:
    return cast(State, request.scope["state"])
