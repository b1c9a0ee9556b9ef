"""Where a callback may connect: the address policy, and the SSRF-guarded session that enforces it.

The guard lives in the connector's socket factory, not in a resolver: aiohttp skips custom
resolvers for IP-literal URLs, and only the socket factory sees the address actually dialled,
for every connection attempt (each address of a host, every retry), after DNS.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from typing import TypeAlias

import aiohttp

__all__ = [
    "AddressNotAllowedError",
    "IPAddress",
    "IPNetwork",
    "create_session",
    "is_address_allowed",
    "parse_networks",
    "refused_address",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv4 ranges that are not globally reachable (IANA IPv4 special-purpose registry) plus
# multicast. Written out rather than taken from `ip.is_global`, whose tables changed between
# 3.11 patch releases: the guard must not depend on which patch release runs it.
_FORBIDDEN_V4: tuple[ipaddress.IPv4Network, ...] = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", includes the unspecified 0.0.0.0 (dials localhost)
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # carrier-grade NAT, RFC 6598
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, includes cloud metadata at 169.254.169.254
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, NAT64 discovery, ...)
        "192.0.2.0/24",  # TEST-NET-1
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes the broadcast 255.255.255.255
    )
)

# IPv6 is simpler by allow-list: only global unicast 2000::/3 is ever a public destination.
# Everything else (::, ::1, fc00::/7 ULA, fe80::/10 link-local, fec0::/10, ff00::/8 multicast,
# 100::/64 discard, 64:ff9b:1::/48 local NAT64, the IPv4-compatible ::/96, ...) is refused.
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_FORBIDDEN_V6: tuple[ipaddress.IPv6Network, ...] = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments, includes Teredo 2001::/32 (embeds IPv4)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
    )
)
# Forms that carry an IPv4 destination: the packet ends up at the embedded IPv4 address (the
# kernel for ::ffff:a.b.c.d, a translator for NAT64 and 6to4), so that address decides.
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")


class AddressNotAllowedError(OSError):
    """Raised by the guarded socket factory instead of dialling a refused address."""

    def __init__(self, address: str) -> None:
        # Constant text on purpose: when every address of a host is refused, aiohappyeyeballs
        # re-raises the first error only if all errors print the same; otherwise it merges them
        # into a plain OSError and this type (and its `address`) would be lost.
        super().__init__(errno.EACCES, "destination address not allowed")
        self.address = address


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Parse a comma- or space-separated list of CIDRs, e.g. "127.0.0.1/32, ::1/128"."""
    networks: list[IPNetwork] = []
    for item in re.split(r"[\s,]+", text.strip()):
        if not item:
            continue
        try:
            # strict: "10.0.0.1/8" is more likely a typo than a wish to allow all of 10/8.
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise ValueError(f"invalid network {item!r}: {exc}") from None
    return tuple(networks)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 destination an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return ip.sixtofour


def is_address_allowed(ip: IPAddress, allowed: Iterable[IPNetwork]) -> bool:
    """Whether a webhook may be sent to `ip`: public addresses, or ones an allowed net contains."""
    allowed = tuple(allowed)
    # `in` is simply False across IP versions, so mixed lists need no filtering.
    if any(ip in net for net in allowed):
        return True
    if isinstance(ip, ipaddress.IPv4Address):
        return not any(ip in net for net in _FORBIDDEN_V4)
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return is_address_allowed(embedded, allowed)
    return ip in _GLOBAL_UNICAST_V6 and not any(ip in net for net in _FORBIDDEN_V6)


def _display(ip: IPAddress) -> str:
    """An address as people write it: Python 3.11 prints ::ffff:127.0.0.1 as ::ffff:7f00:1."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


def _guarded_socket_factory(
    allowed: tuple[IPNetwork, ...],
) -> aiohttp.SocketFactoryType:
    """A socket factory that refuses to create a socket for a forbidden destination."""

    def factory(addr_info: aiohttp.AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise AddressNotAllowedError(str(sockaddr))
        # An IPv6 sockaddr may carry a zone ("fe80::1%eth0"); the zone does not change the verdict.
        host = str(sockaddr[0]).split("%", 1)[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise AddressNotAllowedError(host) from None
        if not is_address_allowed(ip, allowed):
            raise AddressNotAllowedError(_display(ip))
        return socket.socket(family, type_, proto)

    return factory


def refused_address(exc: BaseException) -> str | None:
    """The address named by the guard somewhere in an exception's chain, if it refused one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, AddressNotAllowedError):
            return current.address
        seen.add(id(current))
        if isinstance(current, aiohttp.ClientConnectorError):
            current = current.os_error
        else:
            current = current.__cause__ or current.__context__
    return None


def create_session(
    allowed_networks: Sequence[IPNetwork], max_connections: int = 100, max_per_host: int = 16
) -> aiohttp.ClientSession:
    """The app-wide callback session, SSRF-guarded; call inside the running loop, caller closes.

    It lives here, beside the guard, because the guard is only whole with it: a session built
    elsewhere could forget `trust_env=False` and let a proxy dial for us."""
    asyncio.get_running_loop()  # fail here, clearly, rather than deep inside aiohttp
    connector = aiohttp.TCPConnector(
        socket_factory=_guarded_socket_factory(tuple(allowed_networks)),
        # One slow receiver may hold at most `max_per_host` of the pool: the rest stays free
        # for everyone else's callbacks.
        limit=max_connections,
        limit_per_host=max_per_host,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # No HTTP(S)_PROXY / netrc from the environment: a proxy would dial the receiver for
        # us, out of the guard's sight.
        trust_env=False,
        # Receivers belong to different clients: nothing they set may travel to later calls.
        cookie_jar=aiohttp.DummyCookieJar(),
        # We never use the body, so never inflate it (no decompression bombs).
        auto_decompress=False,
        # `deliver` bounds every attempt with the remaining budget; aiohttp's own defaults
        # (300 s total, 30 s connect) would only blur which limit fired.
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None),
    )
