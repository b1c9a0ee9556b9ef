"""The blocking and the asyncio client: the same methods, over httpx."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from gateway.client.answers import Health, Prediction, Readiness, Reloaded
from gateway.client.protocol import DEFAULT_SEQ_LEN, Call, Protocol, unreachable


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
        self._protocol = Protocol(admin_token, seq_len)
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
        self._protocol = Protocol(admin_token, seq_len)
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
