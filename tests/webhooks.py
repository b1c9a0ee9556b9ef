"""What the webhook tests share: the allow-listed host, a payload, a sender over a guarded session,
and a listener that counts the connections it accepts.

Receivers that must be reachable listen on 127.0.0.2, the only allow-listed address (Linux
routes all of 127/8 to loopback); a forbidden target listens on 127.0.0.1 and ::1 and counts
every connection it accepts, so "refused" means "never dialled", not "dialled then dropped".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.webhooks.delivery import CallbackSender
from gateway.webhooks.policy import IPNetwork, create_session, parse_networks

ALLOWED_HOST = "127.0.0.2"
ALLOWED = parse_networks(f"{ALLOWED_HOST}/32")
PAYLOAD: dict[str, Any] = {
    "pred_btc_close_next": 97123.4567,
    "metadata": {"request_id": "r-1", "tags": ["a", "ü"]},
    "model_alias": "Production",
    "model_version": "3",
}


@contextlib.asynccontextmanager
async def sender(
    allowed: Sequence[IPNetwork] = ALLOWED, timeout: float = 2.0, secret: str | None = None
) -> AsyncIterator[CallbackSender]:
    session = create_session(allowed)
    try:
        yield CallbackSender(session, timeout, secret)
    finally:
        await session.close()


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
