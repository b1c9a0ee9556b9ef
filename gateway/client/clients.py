"""The blocking and the asyncio client: the same methods, over httpx."""

from __future__ import annotations

from typing import Any, Unpack, cast

import httpx

from gateway.client.answers import Health, Prediction, Readiness, Reloaded
from gateway.client.protocol import (
    DEFAULT_INFER_MAX_WINDOWS,
    DEFAULT_MODEL_NAME,
    DEFAULT_SEQ_LEN,
    HEALTH,
    READY,
    Call,
    PredictOptions,
    Protocol,
    unreachable,
)


class _Client:
    """What both clients hold: the gateway's address, the shared protocol and an httpx client
    (`_open` makes it: blocking or async)."""

    def __init__(
        self,
        base_url: str,
        admin_token: str | None = None,
        timeout: float = 10.0,
        *,
        seq_len: int = DEFAULT_SEQ_LEN,
        model_name: str = DEFAULT_MODEL_NAME,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._protocol = Protocol(admin_token, seq_len, model_name)
        self._http = self._open(timeout)

    def _open(self, timeout: float) -> Any:
        raise NotImplementedError


class GatewayClient(_Client):
    """Blocking client. `seq_len` is the gateway's SEQ_LEN_REQUIRED, used to cut windows from
    candles, and `model_name` its REGISTERED_MODEL_NAME, which `predict_many` addresses;
    `timeout` is in seconds per request (a reload may need more: pass `timeout=`)."""

    _http: httpx.Client

    def _open(self, timeout: float) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    def health(self) -> Health:
        return cast(Health, self._send(HEALTH))

    def ready(self) -> Readiness:
        return cast(Readiness, self._send(READY))

    def predict(self, X: Any, **options: Unpack[PredictOptions]) -> Prediction:
        """X: a [T, F] window (list or array), or a DataFrame of OHLCV candles to cut one from;
        `callback_url`, `metadata` and `request_id` by keyword (`PredictOptions`)."""
        call = self._protocol.predict_call(X, **options)
        return cast(Prediction, self._send(call))

    def predict_many(
        self, windows: Any, *, max_windows: int = DEFAULT_INFER_MAX_WINDOWS
    ) -> list[Prediction]:
        """One answer per window of `windows` ([N, T, F]: a list or array), in order, over the
        Open Inference Protocol's infer route, in requests of at most `max_windows` windows
        (the gateway's INFER_MAX_WINDOWS: more is a PredictFailed)."""
        answers: list[Prediction] = []
        for call in self._protocol.infer_calls(windows, max_windows):
            answers += self._send(call)
        return answers

    def reload(self, alias: str | None = None, *, timeout: float | None = None) -> Reloaded:
        return cast(Reloaded, self._send(self._protocol.reload_call(alias, timeout)))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, call: Call) -> Any:
        try:
            response = self._http.request(**call.request())
        except httpx.TransportError as e:
            raise unreachable(self.base_url, e) from e
        return self._protocol.parse(call, response)


class AsyncGatewayClient(_Client):
    """The same methods as GatewayClient, as coroutines."""

    _http: httpx.AsyncClient

    def _open(self, timeout: float) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def health(self) -> Health:
        return cast(Health, await self._send(HEALTH))

    async def ready(self) -> Readiness:
        return cast(Readiness, await self._send(READY))

    async def predict(self, X: Any, **options: Unpack[PredictOptions]) -> Prediction:
        """X: a [T, F] window (list or array), or a DataFrame of OHLCV candles to cut one from;
        `callback_url`, `metadata` and `request_id` by keyword (`PredictOptions`)."""
        call = self._protocol.predict_call(X, **options)
        return cast(Prediction, await self._send(call))

    async def predict_many(
        self, windows: Any, *, max_windows: int = DEFAULT_INFER_MAX_WINDOWS
    ) -> list[Prediction]:
        """As GatewayClient.predict_many: its requests one after another."""
        answers: list[Prediction] = []
        for call in self._protocol.infer_calls(windows, max_windows):
            answers += await self._send(call)
        return answers

    async def reload(self, alias: str | None = None, *, timeout: float | None = None) -> Reloaded:
        return cast(Reloaded, await self._send(self._protocol.reload_call(alias, timeout)))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncGatewayClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _send(self, call: Call) -> Any:
        try:
            response = await self._http.request(**call.request())
        except httpx.TransportError as e:
            raise unreachable(self.base_url, e) from e
        return self._protocol.parse(call, response)
