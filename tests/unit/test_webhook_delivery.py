"""gateway.webhooks.delivery against real aiohttp receivers on loopback: what is sent, what is
retried within the budget, what fails without an attempt, and what reaches the logs."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.webhooks.delivery import CallbackSender, DeliveryResult
from gateway.webhooks.policy import create_session
from tests.receiver import Receiver
from tests.webhooks import ALLOWED, ALLOWED_HOST, PAYLOAD, counting_listener, sender

pytestmark = pytest.mark.anyio

MARGIN = 1.5  # seconds of slack over a budget on a loaded machine


def closed_port(host: str = ALLOWED_HOST) -> int:
    """A port on `host` that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def test_success_sends_exact_orjson_bytes() -> None:
    async with Receiver(statuses=(204,), host=ALLOWED_HOST) as receiver, sender() as s:
        result = await s.deliver(receiver.url, PAYLOAD)
    assert result == DeliveryResult(ok=True, error=None, attempts=1)
    [got] = receiver.received
    assert got.body == orjson.dumps(PAYLOAD)
    assert got.headers["Content-Type"] == "application/json"
    assert not any(h.lower().startswith("webhook-") for h in got.headers)


async def test_500_then_200_is_retried() -> None:
    async with Receiver(statuses=(500, 200), host=ALLOWED_HOST) as receiver, sender() as s:
        result = await s.deliver(receiver.url, PAYLOAD)
    assert result == DeliveryResult(ok=True, error=None, attempts=2)
    assert [r.body for r in receiver.received] == [orjson.dumps(PAYLOAD)] * 2


async def test_always_500_is_retried_within_budget() -> None:
    budget = 1.0
    async with (
        Receiver(statuses=(500,), host=ALLOWED_HOST) as receiver,
        sender(timeout=budget) as s,
    ):
        start = time.monotonic()
        result = await s.deliver(receiver.url, PAYLOAD)
        elapsed = time.monotonic() - start
    assert not result.ok
    assert result.error is not None and "HTTP 500" in result.error
    assert result.attempts >= 2
    assert result.attempts == len(receiver.received)
    assert elapsed < budget + MARGIN


async def test_429_is_retried() -> None:
    async with Receiver(statuses=(429, 202), host=ALLOWED_HOST) as receiver, sender() as s:
        result = await s.deliver(receiver.url, PAYLOAD)
    assert result == DeliveryResult(ok=True, error=None, attempts=2)


@pytest.mark.parametrize("status", [400, 404, 410])
async def test_other_4xx_is_not_retried(status: int) -> None:
    async with Receiver(statuses=(status, 200), host=ALLOWED_HOST) as receiver, sender() as s:
        result = await s.deliver(receiver.url, PAYLOAD)
    assert result == DeliveryResult(ok=False, error=f"HTTP {status}", attempts=1)
    assert len(receiver.received) == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_is_not_followed(status: int) -> None:
    # The target is allow-listed too: only the no-redirect rule can keep it at 0.
    async with counting_listener([ALLOWED_HOST]) as target:
        location = f"http://{ALLOWED_HOST}:{target.port}/"
        async with (
            Receiver(statuses=(status,), location=location, host=ALLOWED_HOST) as receiver,
            sender() as s,
        ):
            result = await s.deliver(receiver.url, PAYLOAD)
        assert result == DeliveryResult(
            ok=False, error=f"redirect (HTTP {status}) not followed", attempts=1
        )
        assert target.connections == 0


async def test_slow_receiver_times_out_within_budget() -> None:
    budget = 0.5
    async with Receiver(hold=True, host=ALLOWED_HOST) as receiver, sender(timeout=budget) as s:
        start = time.monotonic()
        result = await s.deliver(receiver.url, PAYLOAD)
        elapsed = time.monotonic() - start
    assert result == DeliveryResult(ok=False, error="timed out after 0.5 s", attempts=1)
    assert elapsed < budget + MARGIN


class EndlessAnswer(Receiver):
    """Announces 1 GiB, sends 64 KiB, then stalls until the receiver stops."""

    async def respond(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_length = 1 << 30
        await response.prepare(request)
        with contextlib.suppress(OSError):
            await response.write(b"x" * 65536)
        await self.released.wait()
        return response


async def test_huge_answer_is_not_read() -> None:
    budget = 5.0
    async with EndlessAnswer(host=ALLOWED_HOST) as receiver, sender(timeout=budget) as s:
        start = time.monotonic()
        result = await s.deliver(receiver.url, PAYLOAD)
        elapsed = time.monotonic() - start
    assert result == DeliveryResult(ok=True, error=None, attempts=1)
    # Waiting for the rest of the body would have taken the whole budget.
    assert elapsed < budget / 2


async def test_connection_refused_is_retried_then_fails() -> None:
    budget = 0.5
    async with sender(timeout=budget) as s:
        start = time.monotonic()
        result = await s.deliver(f"http://{ALLOWED_HOST}:{closed_port()}/", PAYLOAD)
        elapsed = time.monotonic() - start
    assert not result.ok
    assert result.error == "connection refused"
    assert result.attempts >= 2
    assert elapsed < budget + MARGIN


@pytest.mark.parametrize(
    "payload",
    [
        {"pred_btc_close_next": float("nan")},
        {"nested": [1.0, {"x": float("-inf")}]},
        {"obj": object()},
        {"bad_key": {1: 2}},
    ],
    ids=["nan", "nested-inf", "object", "int-key"],
)
async def test_unserializable_payload_fails_cleanly(payload: dict[str, Any]) -> None:
    async with Receiver(host=ALLOWED_HOST) as receiver, sender() as s:
        result = await s.deliver(receiver.url, payload)
    assert not result.ok
    assert result.attempts == 0
    assert result.error is not None and "not JSON-serializable" in result.error
    assert receiver.received == []


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/hook", "file:///etc/passwd", "not a url", "http://", "http://h:99999/"],
)
async def test_unusable_url_fails_without_attempt(url: str) -> None:
    async with sender() as s:
        result = await s.deliver(url, PAYLOAD)
    assert not result.ok
    assert result.attempts == 0
    assert result.error


async def test_closed_session_does_not_raise() -> None:
    session = create_session(ALLOWED)
    await session.close()
    result = await CallbackSender(session, 1.0).deliver("http://127.0.0.2:1/", PAYLOAD)
    assert not result.ok
    assert result.error


async def test_failures_are_logged_without_payload_or_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    marker = "PAYLOAD-MARKER-7f3a"
    with caplog.at_level(logging.DEBUG, logger="gateway.webhooks"):
        async with Receiver(statuses=(404,), host=ALLOWED_HOST) as receiver, sender() as s:
            result = await s.deliver(f"{receiver.url}?token=QUERY-SECRET", {"x": marker})
        assert not result.ok
    ours = [r for r in caplog.records if r.name == "gateway.webhooks"]
    assert any(r.levelno == logging.WARNING and "HTTP 404" in r.getMessage() for r in ours)
    assert all(marker not in r.getMessage() for r in ours)
    assert all("QUERY-SECRET" not in r.getMessage() for r in ours)


async def test_bad_timeout_is_refused() -> None:
    session = create_session(ALLOWED)
    try:
        for bad in (0.0, -1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError):
                CallbackSender(session, bad)
    finally:
        await session.close()
