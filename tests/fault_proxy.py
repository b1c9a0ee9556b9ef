"""A TCP proxy in front of the run's real `mlflow server`, for outage tests: it forwards, refuses
or hangs, which is how a stopped or a frozen server looks from its clients, without stopping the
server the other workers' tests share (and without the cost of starting a registry of one's
own).

- refusing: nothing listens on the port (connection refused), and the connections that were
  open are reset, as when the server process dies;
- hung: connections are accepted and requests read, but nothing is forwarded either way until it
  forwards again, as when the server is stopped with SIGSTOP (the kernel still accepts);
- forwarding: bytes pass both ways unchanged.

It runs on an event loop in a thread of its own, so tests with blocking code can use it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from scripts.local_registry import free_port
from tests.loop_thread import LoopThread

CHUNK = 1 << 16


class FaultProxy:
    """`with FaultProxy(upstream_port) as proxy:` listens on a free port of 127.0.0.1 and
    forwards to 127.0.0.1:upstream_port; `refusing=True` starts it refusing. `proxy.uri` is the
    registry URI to give a gateway."""

    def __init__(self, upstream_port: int, refusing: bool = False) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._start_refusing = refusing
        self._loop_thread: LoopThread | None = None
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()  # set: forwarding; clear: hung (or refusing)
        self._open: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> FaultProxy:
        self._loop_thread = LoopThread()
        if not self._start_refusing:
            self.forward()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._loop_thread is not None
        self._loop_thread.close(self._close())
        self._loop_thread = None

    def forward(self) -> None:
        self._on_loop(self._forward)

    def refuse(self) -> None:
        self._on_loop(self._refuse)

    def hang(self) -> None:
        self._on_loop(self._hang)

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """Stopped for the block, forwarding again after it, whatever happened."""
        self.refuse()
        try:
            yield
        finally:
            self.forward()

    @contextlib.contextmanager
    def hung(self) -> Iterator[None]:
        """Frozen for the block, forwarding again after it (held bytes go on), whatever
        happened."""
        self.hang()
        try:
            yield
        finally:
            self.forward()

    def _on_loop(self, step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        assert self._loop_thread is not None, "use the proxy in a `with` block"
        self._loop_thread.call(step())

    # On the proxy's loop.

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _forward(self) -> None:
        await self._listen()
        self._flowing.set()

    async def _hang(self) -> None:
        await self._listen()
        self._flowing.clear()

    async def _refuse(self) -> None:
        self._flowing.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()  # a reset, as the kernel sends for a dead process
        self._open.clear()

    async def _close(self) -> None:
        await self._refuse()
        # Connections accepted while hung still wait to be forwarded: end them.
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._open.add(client_w)
        upstream_w: asyncio.StreamWriter | None = None
        try:
            await self._flowing.wait()  # hung: accepted, never answered
            upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._open.add(upstream_w)
            await asyncio.gather(self._pump(client_r, upstream_w), self._pump(upstream_r, client_w))
        except OSError:
            pass
        finally:
            for writer in (client_w, upstream_w):
                if writer is not None:
                    self._open.discard(writer)
                    writer.close()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(CHUNK):
                await self._flowing.wait()  # hung: what was read waits, as in a frozen process
                sink.write(data)
                await sink.drain()
            # The end waits too: the real server closes idle connections, a frozen one does not.
            await self._flowing.wait()
        except OSError:
            pass
        finally:
            sink.close()  # one side is done: so is the exchange (HTTP/1.1, no half-close)
