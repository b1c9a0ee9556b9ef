"""Webhook delivery against real aiohttp receivers on loopback, and the SSRF guard.

Receivers that must be reachable listen on 127.0.0.2, the only allow-listed address (Linux
routes all of 127/8 to loopback); the forbidden target listens on 127.0.0.1 and ::1 and counts
every connection it accepts, so "refused" means "never dialled", not "dialled then dropped".
No pytest-asyncio: each test runs its own loop with asyncio.run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.webhooks.delivery import CallbackSender, DeliveryResult
from gateway.webhooks.policy import IPNetwork, create_session, is_address_allowed, parse_networks

ALLOWED_HOST = "127.0.0.2"
ALLOWED = parse_networks(f"{ALLOWED_HOST}/32")
ALLOW_ALL = parse_networks("0.0.0.0/0, ::/0")
MARGIN = 1.5  # seconds of slack over a budget on a loaded machine
PAYLOAD: dict[str, Any] = {
    "pred_btc_close_next": 97123.4567,
    "metadata": {"request_id": "r-1", "tags": ["a", "ü"]},
    "model_alias": "Production",
    "model_version": "3",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --------------------------------------------------------------------------- fixtures


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers the given statuses in turn (the last repeats) and records every request."""

    statuses: Sequence[int] = (200,)
    location: str | None = None
    hold: bool = False  # keep every request waiting until the test ends
    received: list[Received] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(Received(dict(request.headers), await request.read()))
        if self.hold:
            await self.released.wait()
        status = self.statuses[min(len(self.received), len(self.statuses)) - 1]
        headers = {"Location": self.location} if self.location else {}
        return web.Response(status=status, headers=headers)


@contextlib.asynccontextmanager
async def serve(handler: Handler, release: asyncio.Event | None = None) -> AsyncIterator[str]:
    """A real aiohttp.web server on ALLOWED_HOST; yields its URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, ALLOWED_HOST, 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://{ALLOWED_HOST}:{port}/hook"
    finally:
        if release is not None:
            release.set()  # let held handlers finish, so cleanup does not wait for them
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serve_receiver(receiver: Receiver) -> AsyncIterator[str]:
    async with serve(receiver.handle, receiver.released) as url:
        yield url


@dataclass
class CountingListener:
    """A plain asyncio server that counts accepted connections and answers 204."""

    port: int = 0
    hosts: list[str] = field(default_factory=list)
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def counting_listener(hosts: Sequence[str]) -> AsyncIterator[CountingListener]:
    """Listen on one port on each host that can be bound (::1 may be missing)."""
    listener = CountingListener()
    servers: list[asyncio.Server] = []
    try:
        for host in hosts:
            try:
                server = await asyncio.start_server(listener.handle, host, listener.port)
            except OSError:
                if not listener.hosts:
                    raise
                continue  # e.g. no IPv6 loopback on this machine
            servers.append(server)
            listener.port = server.sockets[0].getsockname()[1]
            listener.hosts.append(host)
        yield listener
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


@contextlib.asynccontextmanager
async def sender(
    allowed: Sequence[IPNetwork] = ALLOWED, timeout: float = 2.0, secret: str | None = None
) -> AsyncIterator[CallbackSender]:
    session = create_session(allowed)
    try:
        yield CallbackSender(session, timeout, secret)
    finally:
        await session.close()


def closed_port(host: str = ALLOWED_HOST) -> int:
    """A port on `host` that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def whsec() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


# --------------------------------------------------------------------------- parse_networks


def test_parse_networks() -> None:
    assert parse_networks("127.0.0.1/32, ::1/128") == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    assert parse_networks("") == ()
    assert parse_networks("  ,  ") == ()
    assert parse_networks("10.0.0.0/8 192.168.0.0/16,") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.0.0/16"),
    )
    assert parse_networks("10.1.2.3") == (ipaddress.ip_network("10.1.2.3/32"),)


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "not-a-net", "10.0.0.1/8", "::1/129"])
def test_parse_networks_names_the_bad_entry(bad: str) -> None:
    with pytest.raises(ValueError, match=bad.replace(".", r"\.")):
        parse_networks(f"127.0.0.1/32, {bad}")


# --------------------------------------------------------------------------- delivery


def test_success_sends_exact_orjson_bytes() -> None:
    async def main() -> None:
        receiver = Receiver(statuses=(204,))
        async with serve_receiver(receiver) as url, sender() as s:
            result = await s.deliver(url, PAYLOAD)
        assert result == DeliveryResult(ok=True, error=None, attempts=1)
        [got] = receiver.received
        assert got.body == orjson.dumps(PAYLOAD)
        assert got.headers["Content-Type"] == "application/json"
        assert not any(h.lower().startswith("webhook-") for h in got.headers)

    asyncio.run(main())


def test_500_then_200_is_retried() -> None:
    async def main() -> None:
        receiver = Receiver(statuses=(500, 200))
        async with serve_receiver(receiver) as url, sender() as s:
            result = await s.deliver(url, PAYLOAD)
        assert result == DeliveryResult(ok=True, error=None, attempts=2)
        assert [r.body for r in receiver.received] == [orjson.dumps(PAYLOAD)] * 2

    asyncio.run(main())


def test_always_500_is_retried_within_budget() -> None:
    async def main() -> None:
        budget = 1.0
        receiver = Receiver(statuses=(500,))
        async with serve_receiver(receiver) as url, sender(timeout=budget) as s:
            start = time.monotonic()
            result = await s.deliver(url, PAYLOAD)
            elapsed = time.monotonic() - start
        assert not result.ok
        assert result.error is not None and "HTTP 500" in result.error
        assert result.attempts >= 2
        assert result.attempts == len(receiver.received)
        assert elapsed < budget + MARGIN

    asyncio.run(main())


def test_429_is_retried() -> None:
    async def main() -> None:
        receiver = Receiver(statuses=(429, 202))
        async with serve_receiver(receiver) as url, sender() as s:
            result = await s.deliver(url, PAYLOAD)
        assert result == DeliveryResult(ok=True, error=None, attempts=2)

    asyncio.run(main())


@pytest.mark.parametrize("status", [400, 404, 410])
def test_other_4xx_is_not_retried(status: int) -> None:
    async def main() -> None:
        receiver = Receiver(statuses=(status, 200))
        async with serve_receiver(receiver) as url, sender() as s:
            result = await s.deliver(url, PAYLOAD)
        assert result == DeliveryResult(ok=False, error=f"HTTP {status}", attempts=1)
        assert len(receiver.received) == 1

    asyncio.run(main())


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_not_followed(status: int) -> None:
    async def main() -> None:
        # The target is allow-listed too: only the no-redirect rule can keep it at 0.
        async with counting_listener([ALLOWED_HOST]) as target:
            receiver = Receiver(
                statuses=(status,), location=f"http://{ALLOWED_HOST}:{target.port}/"
            )
            async with serve_receiver(receiver) as url, sender() as s:
                result = await s.deliver(url, PAYLOAD)
            assert result == DeliveryResult(
                ok=False, error=f"redirect (HTTP {status}) not followed", attempts=1
            )
            assert target.connections == 0

    asyncio.run(main())


def test_slow_receiver_times_out_within_budget() -> None:
    async def main() -> None:
        budget = 0.5
        receiver = Receiver(hold=True)
        async with serve_receiver(receiver) as url, sender(timeout=budget) as s:
            start = time.monotonic()
            result = await s.deliver(url, PAYLOAD)
            elapsed = time.monotonic() - start
        assert result == DeliveryResult(ok=False, error="timed out after 0.5 s", attempts=1)
        assert elapsed < budget + MARGIN

    asyncio.run(main())


def test_huge_answer_is_not_read() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def endless(request: web.Request) -> web.StreamResponse:
            await request.read()
            response = web.StreamResponse(status=200)
            response.content_length = 1 << 30  # announces 1 GiB, sends 64 KiB, then stalls
            await response.prepare(request)
            with contextlib.suppress(OSError):
                await response.write(b"x" * 65536)
            await release.wait()
            return response

        budget = 5.0
        async with serve(endless, release) as url, sender(timeout=budget) as s:
            start = time.monotonic()
            result = await s.deliver(url, PAYLOAD)
            elapsed = time.monotonic() - start
        assert result == DeliveryResult(ok=True, error=None, attempts=1)
        # Waiting for the rest of the body would have taken the whole budget.
        assert elapsed < budget / 2

    asyncio.run(main())


def test_connection_refused_is_retried_then_fails() -> None:
    async def main() -> None:
        budget = 0.5
        async with sender(timeout=budget) as s:
            start = time.monotonic()
            result = await s.deliver(f"http://{ALLOWED_HOST}:{closed_port()}/", PAYLOAD)
            elapsed = time.monotonic() - start
        assert not result.ok
        assert result.error == "connection refused"
        assert result.attempts >= 2
        assert elapsed < budget + MARGIN

    asyncio.run(main())


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
def test_unserializable_payload_fails_cleanly(payload: dict[str, Any]) -> None:
    async def main() -> None:
        receiver = Receiver()
        async with serve_receiver(receiver) as url, sender() as s:
            result = await s.deliver(url, payload)
        assert not result.ok
        assert result.attempts == 0
        assert result.error is not None and "not JSON-serializable" in result.error
        assert receiver.received == []

    asyncio.run(main())


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/hook", "file:///etc/passwd", "not a url", "http://", "http://h:99999/"],
)
def test_unusable_url_fails_without_attempt(url: str) -> None:
    async def main() -> None:
        async with sender() as s:
            result = await s.deliver(url, PAYLOAD)
        assert not result.ok
        assert result.attempts == 0
        assert result.error

    asyncio.run(main())


def test_closed_session_does_not_raise() -> None:
    async def main() -> None:
        session = create_session(ALLOWED)
        await session.close()
        result = await CallbackSender(session, 1.0).deliver("http://127.0.0.2:1/", PAYLOAD)
        assert not result.ok
        assert result.error

    asyncio.run(main())


def test_failures_are_logged_without_payload_or_query(caplog: pytest.LogCaptureFixture) -> None:
    marker = "PAYLOAD-MARKER-7f3a"

    async def main() -> None:
        receiver = Receiver(statuses=(404,))
        async with serve_receiver(receiver) as url, sender() as s:
            result = await s.deliver(f"{url}?token=QUERY-SECRET", {"x": marker})
        assert not result.ok

    with caplog.at_level(logging.DEBUG, logger="gateway.webhooks"):
        asyncio.run(main())
    ours = [r for r in caplog.records if r.name == "gateway.webhooks"]
    assert any(r.levelno == logging.WARNING and "HTTP 404" in r.getMessage() for r in ours)
    assert all(marker not in r.getMessage() for r in ours)
    assert all("QUERY-SECRET" not in r.getMessage() for r in ours)


def test_environment_proxy_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with counting_listener([ALLOWED_HOST]) as proxy:
            proxy_url = f"http://{ALLOWED_HOST}:{proxy.port}"
            for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
                monkeypatch.setenv(name, proxy_url)
            for name in ("NO_PROXY", "no_proxy"):
                monkeypatch.delenv(name, raising=False)
            receiver = Receiver()
            async with serve_receiver(receiver) as url, sender() as s:
                result = await s.deliver(url, PAYLOAD)
            assert result.ok
            assert len(receiver.received) == 1
            assert proxy.connections == 0

    asyncio.run(main())


def test_bad_timeout_is_refused() -> None:
    async def main() -> None:
        session = create_session(ALLOWED)
        try:
            for bad in (0.0, -1.0, float("nan"), float("inf")):
                with pytest.raises(ValueError):
                    CallbackSender(session, bad)
        finally:
            await session.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- signing


def test_signed_with_whsec_secret_and_same_id_across_retries() -> None:
    secret = whsec()

    async def main() -> None:
        receiver = Receiver(statuses=(503, 500, 200))
        async with serve_receiver(receiver) as url, sender(secret=secret) as s:
            result = await s.deliver(url, PAYLOAD)
        assert result == DeliveryResult(ok=True, error=None, attempts=3)
        verifier = Webhook(secret)
        for got in receiver.received:
            assert verifier.verify(got.body, got.headers) == PAYLOAD
            assert got.headers["webhook-signature"].startswith("v1,")
            int(got.headers["webhook-timestamp"])  # integer seconds
        ids = {got.headers["webhook-id"] for got in receiver.received}
        assert len(ids) == 1
        assert ids.pop().startswith("msg_")

    asyncio.run(main())


def test_signed_with_plain_secret_uses_its_utf8_bytes() -> None:
    secret = "plain secret, not base64: ü"

    async def main() -> None:
        receiver = Receiver()
        async with serve_receiver(receiver) as url, sender(secret=secret) as s:
            assert (await s.deliver(url, PAYLOAD)).ok
        [got] = receiver.received
        # standardwebhooks base64-decodes any str secret: raw keys must be given as bytes.
        assert Webhook(secret.encode()).verify(got.body, got.headers) == PAYLOAD
        with pytest.raises(WebhookVerificationError):
            Webhook(whsec()).verify(got.body, got.headers)

    asyncio.run(main())


def test_unpadded_whsec_secret_is_accepted() -> None:
    key = os.urandom(16)  # 16 bytes -> base64 with "==" padding, stripped here
    secret = "whsec_" + base64.b64encode(key).decode().rstrip("=")

    async def main() -> None:
        receiver = Receiver()
        async with serve_receiver(receiver) as url, sender(secret=secret) as s:
            assert (await s.deliver(url, PAYLOAD)).ok
        [got] = receiver.received
        assert Webhook(key).verify(got.body, got.headers) == PAYLOAD

    asyncio.run(main())


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_not*base64!"])
def test_unusable_secret_is_refused(secret: str) -> None:
    async def main() -> None:
        session = create_session(ALLOWED)
        try:
            with pytest.raises(ValueError) as info:
                CallbackSender(session, 1.0, secret)
            if secret.startswith("whsec_") and len(secret) > 6:
                assert secret not in str(info.value)  # never echo the secret
        finally:
            await session.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- SSRF guard

FORBIDDEN_URLS = {
    "v4-literal": "http://127.0.0.1:{port}/",
    "localhost": "http://localhost:{port}/",
    "v6-literal": "http://[::1]:{port}/",
    "v4-mapped": "http://[::ffff:127.0.0.1]:{port}/",
    "short-form": "http://127.1:{port}/",
    "integer-form": "http://2130706433:{port}/",
    "unspecified": "http://0.0.0.0:{port}/",
    "hex-via-resolver": "http://0x7f.0.0.1:{port}/",
}
# Forms aiohttp (or our URL check) refuses before any connection: no routing to compare.
NOT_DIALLABLE = {"short-form", "integer-form"}


def skip_unless_reachable(case: str, listener: CountingListener) -> None:
    if case == "v6-literal" and "::1" not in listener.hosts:
        pytest.skip("no IPv6 loopback on this machine")
    if case == "hex-via-resolver":
        try:
            socket.getaddrinfo("0x7f.0.0.1", listener.port)
        except OSError:
            pytest.skip("this resolver does not accept inet_aton forms")


@pytest.mark.parametrize("case", FORBIDDEN_URLS)
def test_guard_refuses_loopback_forms(case: str) -> None:
    async def main() -> None:
        async with counting_listener(["127.0.0.1", "::1"]) as listener, sender() as s:
            skip_unless_reachable(case, listener)
            result = await s.deliver(FORBIDDEN_URLS[case].format(port=listener.port), PAYLOAD)
            assert not result.ok
            assert result.error is not None and "not allowed" in result.error
            assert result.attempts <= 1  # a refusal is final
            assert listener.connections == 0

    asyncio.run(main())


@pytest.mark.parametrize("case", sorted(set(FORBIDDEN_URLS) - NOT_DIALLABLE))
def test_same_urls_reach_the_listener_when_allowed(case: str) -> None:
    """Control: without the guard's refusal these URLs do land on the counting listener."""

    async def main() -> None:
        async with counting_listener(["127.0.0.1", "::1"]) as listener:
            skip_unless_reachable(case, listener)
            async with sender(allowed=ALLOW_ALL) as s:
                result = await s.deliver(FORBIDDEN_URLS[case].format(port=listener.port), PAYLOAD)
            assert result.ok, result.error
            assert listener.connections == 1

    asyncio.run(main())


def test_refused_address_is_named() -> None:
    async def main() -> None:
        async with counting_listener(["127.0.0.1"]) as listener, sender() as s:
            result = await s.deliver(f"http://[::ffff:127.0.0.1]:{listener.port}/", PAYLOAD)
        assert result == DeliveryResult(
            ok=False, error="address ::ffff:127.0.0.1 is not allowed", attempts=1
        )

    asyncio.run(main())


def test_redirect_to_forbidden_address_is_not_followed() -> None:
    async def main() -> None:
        async with counting_listener(["127.0.0.1"]) as listener:
            receiver = Receiver(statuses=(302,), location=f"http://127.0.0.1:{listener.port}/")
            async with serve_receiver(receiver) as url, sender() as s:
                result = await s.deliver(url, PAYLOAD)
            assert result.error == "redirect (HTTP 302) not followed"
            assert listener.connections == 0

    asyncio.run(main())


def test_create_session_needs_running_loop() -> None:
    with pytest.raises(RuntimeError):
        create_session(ALLOWED)


# --------------------------------------------------------------------------- is_address_allowed

CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
IETF_V4 = ipaddress.IPv4Network("192.0.0.0/24")  # refused whole; stdlib exempts parts
DOC_V6 = ipaddress.IPv6Network("3fff::/20")  # RFC 9637, newer than the stdlib tables
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def reference_v4(ip: ipaddress.IPv4Address) -> bool:
    """Public unicast per the stdlib's flags, written independently of the module's table."""
    forbidden = (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip in CGNAT
        or ip in IETF_V4
    )
    return ip.is_global and not forbidden


def reference_v6(ip: ipaddress.IPv6Address) -> bool:
    forbidden = (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_site_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip in DOC_V6
    )
    return ip.is_global and not forbidden


def embeddings(v4: ipaddress.IPv4Address, low: int) -> list[ipaddress.IPv6Address]:
    """The IPv6 forms that carry `v4`: mapped, NAT64 well-known prefix, 6to4."""
    return [
        ipaddress.IPv6Address(f"::ffff:{v4}"),
        ipaddress.IPv6Address(int(NAT64.network_address) | int(v4)),
        ipaddress.IPv6Address(int(SIX_TO_FOUR.network_address) | int(v4) << 80 | low),
    ]


@settings(max_examples=1000)
@given(st.ip_addresses(v=4))
def test_v4_matches_reference(ip: ipaddress.IPv4Address) -> None:
    assert is_address_allowed(ip, ()) == reference_v4(ip)


@settings(max_examples=1000)
@given(st.ip_addresses(v=6))
def test_v6_matches_reference_outside_embedding_forms(ip: ipaddress.IPv6Address) -> None:
    if ip.ipv4_mapped is not None or ip in NAT64 or ip in SIX_TO_FOUR:
        return  # decided by the embedded IPv4 address: see the next test
    assert is_address_allowed(ip, ()) == reference_v6(ip)


@settings(max_examples=1000)
@given(st.ip_addresses(v=4), st.integers(0, (1 << 80) - 1))
def test_embedded_v4_decides(v4: ipaddress.IPv4Address, low: int) -> None:
    verdict = reference_v4(v4)
    for ip in embeddings(v4, low):
        assert is_address_allowed(ip, ()) == verdict, ip
        # allow-listing the IPv4 address allows the forms that lead to it
        assert is_address_allowed(ip, [ipaddress.IPv4Network(v4)])


@settings(max_examples=1000)
@given(st.data(), st.sampled_from([4, 6]))
def test_anything_inside_an_allowed_network_is_allowed(
    data: st.DataObject, version: Literal[4, 6]
) -> None:
    base = data.draw(st.ip_addresses(v=version))
    prefix = data.draw(st.integers(0, base.max_prefixlen))
    network = ipaddress.ip_network(f"{base}/{prefix}", strict=False)
    offset = data.draw(st.integers(0, network.num_addresses - 1))
    ip = network.network_address + offset
    other = ipaddress.ip_network("2001:db8::/32" if version == 4 else "192.0.2.0/24")
    assert is_address_allowed(ip, [other, network])


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::8.8.8.8", True),
        ("2002:808:808::1", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("100.64.0.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("172.31.255.255", False),
        ("192.0.0.170", False),
        ("192.168.1.1", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::", False),
        ("::1", False),
        ("::127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("64:ff9b:1::a00:1", False),
        ("2002:a9fe:a9fe::1", False),
        ("2002:7f00:1::", False),
        ("2001::1", False),
        ("2001:db8::1", False),
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("fe80::1", False),
        ("fec0::1", False),
        ("ff02::1", False),
    ],
)
def test_known_addresses(address: str, allowed: bool) -> None:
    assert is_address_allowed(ipaddress.ip_address(address), ()) is allowed


def test_allow_list_opens_only_what_it_names() -> None:
    nets = parse_networks("10.0.0.0/8, fd00::/8")
    assert is_address_allowed(ipaddress.ip_address("10.9.8.7"), nets)
    assert is_address_allowed(ipaddress.ip_address("::ffff:10.9.8.7"), nets)
    assert is_address_allowed(ipaddress.ip_address("fd00::1"), nets)
    assert not is_address_allowed(ipaddress.ip_address("192.168.0.1"), nets)
    assert not is_address_allowed(ipaddress.ip_address("fc00::1"), nets)
