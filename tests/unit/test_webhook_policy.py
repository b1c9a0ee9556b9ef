"""gateway.webhooks.policy: the address policy against an independent reference, and the guarded
session in action, against a listener on loopback that counts every connection it accepts."""

from __future__ import annotations

import ipaddress
import socket
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.webhooks.delivery import DeliveryResult
from gateway.webhooks.policy import create_session, is_address_allowed, parse_networks
from tests.helpers import PROPERTY_EXAMPLES
from tests.receiver import Receiver
from tests.webhooks import (
    ALLOWED,
    ALLOWED_HOST,
    PAYLOAD,
    CountingListener,
    counting_listener,
    sender,
)

ALLOW_ALL = parse_networks("0.0.0.0/0, ::/0")


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


# --------------------------------------------------------------------------- the guarded session

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


@pytest.mark.anyio
@pytest.mark.parametrize("case", FORBIDDEN_URLS)
async def test_guard_refuses_loopback_forms(case: str) -> None:
    async with counting_listener(["127.0.0.1", "::1"]) as listener, sender() as s:
        skip_unless_reachable(case, listener)
        result = await s.deliver(FORBIDDEN_URLS[case].format(port=listener.port), PAYLOAD)
        assert not result.ok
        assert result.error is not None and "not allowed" in result.error
        assert result.attempts <= 1  # a refusal is final
        assert listener.connections == 0


@pytest.mark.anyio
@pytest.mark.parametrize("case", sorted(set(FORBIDDEN_URLS) - NOT_DIALLABLE))
async def test_same_urls_reach_the_listener_when_allowed(case: str) -> None:
    """Control: without the guard's refusal these URLs do land on the counting listener."""
    async with counting_listener(["127.0.0.1", "::1"]) as listener:
        skip_unless_reachable(case, listener)
        async with sender(allowed=ALLOW_ALL) as s:
            result = await s.deliver(FORBIDDEN_URLS[case].format(port=listener.port), PAYLOAD)
        assert result.ok, result.error
        assert listener.connections == 1


@pytest.mark.anyio
async def test_refused_address_is_named() -> None:
    async with counting_listener(["127.0.0.1"]) as listener, sender() as s:
        result = await s.deliver(f"http://[::ffff:127.0.0.1]:{listener.port}/", PAYLOAD)
    assert result == DeliveryResult(
        ok=False, error="address ::ffff:127.0.0.1 is not allowed", attempts=1
    )


@pytest.mark.anyio
async def test_redirect_to_forbidden_address_is_not_followed() -> None:
    async with counting_listener(["127.0.0.1"]) as listener:
        location = f"http://127.0.0.1:{listener.port}/"
        async with (
            Receiver(statuses=(302,), location=location, host=ALLOWED_HOST) as receiver,
            sender() as s,
        ):
            result = await s.deliver(receiver.url, PAYLOAD)
        assert result.error == "redirect (HTTP 302) not followed"
        assert listener.connections == 0


@pytest.mark.anyio
async def test_environment_proxy_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    async with counting_listener([ALLOWED_HOST]) as proxy:
        proxy_url = f"http://{ALLOWED_HOST}:{proxy.port}"
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy_url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        async with Receiver(host=ALLOWED_HOST) as receiver, sender() as s:
            result = await s.deliver(receiver.url, PAYLOAD)
        assert result.ok
        assert len(receiver.received) == 1
        assert proxy.connections == 0


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


@settings(max_examples=PROPERTY_EXAMPLES)
@given(st.ip_addresses(v=4))
def test_v4_matches_reference(ip: ipaddress.IPv4Address) -> None:
    assert is_address_allowed(ip, ()) == reference_v4(ip)


@settings(max_examples=PROPERTY_EXAMPLES)
@given(st.ip_addresses(v=6))
def test_v6_matches_reference_outside_embedding_forms(ip: ipaddress.IPv6Address) -> None:
    if ip.ipv4_mapped is not None or ip in NAT64 or ip in SIX_TO_FOUR:
        return  # decided by the embedded IPv4 address: see the next test
    assert is_address_allowed(ip, ()) == reference_v6(ip)


@settings(max_examples=PROPERTY_EXAMPLES)
@given(st.ip_addresses(v=4), st.integers(0, (1 << 80) - 1))
def test_embedded_v4_decides(v4: ipaddress.IPv4Address, low: int) -> None:
    verdict = reference_v4(v4)
    for ip in embeddings(v4, low):
        assert is_address_allowed(ip, ()) == verdict, ip
        # allow-listing the IPv4 address allows the forms that lead to it
        assert is_address_allowed(ip, [ipaddress.IPv4Network(v4)])


@settings(max_examples=PROPERTY_EXAMPLES)
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
