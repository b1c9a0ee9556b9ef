"""THE webhook receiver for tests: a real aiohttp server that records every request it gets.

One class, two ways to run it:
- `async with Receiver(...) as r:` serves on the test's own running loop (callback unit tests);
- `with Receiver(...) as r:` serves from a thread with its own loop, for tests whose gateway is a
  subprocess and whose own code blocks (`run_receiver` is the short form).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import NamedTuple

from aiohttp import web

from tests.loop_thread import LoopThread


class Received(NamedTuple):
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers `statuses` in turn (the last repeats), after `delay` seconds, with a `location`
    header if given; with `hold`, keeps every request waiting until the receiver stops.
    Listens on `host` at a free port; `url` is set once it serves."""

    statuses: Sequence[int] = (200,)
    delay: float = 0.0
    location: str | None = None
    hold: bool = False
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)
    url: str = ""
    released: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = field(default=None, repr=False)
    _loop_thread: LoopThread | None = field(default=None, repr=False)

    async def respond(self, request: web.Request) -> web.StreamResponse:
        """The answer to a request already recorded; a test may override it."""
        if self.hold:
            await self.released.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.statuses[min(len(self.received), len(self.statuses)) - 1]
        headers = {"Location": self.location} if self.location else {}
        return web.Response(status=status, headers=headers)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(Received(dict(request.headers), await request.read()))
        return await self.respond(request)

    # In the running loop.

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short grace at stop: a slow receiver's pending answers are not worth waiting for.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}/hook"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.released.set()  # let held handlers finish, so cleanup does not wait for them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # In a thread of its own.

    def __enter__(self) -> Receiver:
        self._loop_thread = LoopThread()
        try:
            self._loop_thread.call(self.__aenter__())
        except BaseException:
            self._loop_thread.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._loop_thread is not None
        self._loop_thread.close(self.__aexit__(None, None, None))
        self._loop_thread = None


def run_receiver(mode: str = "ok", delay: float = 0.0) -> Receiver:
    """A receiver for `with`: "ok" answers 200, "error" 500, "slow" 200 after `delay` seconds."""
    if mode == "ok":
        return Receiver()
    if mode == "error":
        return Receiver(statuses=(500,))
    if mode == "slow":
        return Receiver(delay=delay)
    raise ValueError(f"unknown receiver mode {mode!r}")


@contextlib.contextmanager
def garbage_receiver() -> Iterator[int]:
    """A TCP server on 127.0.0.1 (its port is yielded) that answers every request with something
    that is not HTTP: aiohttp's error then quotes the URL it dialled, in its own spelling."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()
