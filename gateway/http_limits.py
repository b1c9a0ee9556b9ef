"""Connection limits for uvicorn's httptools protocol, which has none of its own.

uvicorn (httptools) arms its keep-alive timer only after a response, has no deadline for a
request that never finishes arriving, no cap on the size of a request head, and only a
concurrency limit that answers once a request's headers are in, long after the socket was
taken. This subclass adds, per connection:

- an idle timeout from the moment the connection opens (uvicorn's keep-alive timer, armed early);
- a read deadline from the first byte of a request to the end of its body: 408, then close;
- a cap on the bytes of a request head (request line and headers): 431, then close;
- a cap on open connections: the one over it gets 503 at once and is closed, so that idle
  sockets cannot use up the process's file descriptors.

It relies on uvicorn's protocol internals (parser callbacks, `cycle`, `pipeline`), which is why
uvicorn is pinned; tests/test_connection_limits.py exercises every branch on real sockets.
"""

from __future__ import annotations

import asyncio
import http
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Key in the request's `scope["state"]`: the read deadline passed while the app read the body.
READ_TIMED_OUT = "gateway.read_timed_out"

log = logging.getLogger("gateway.connections")


@dataclass(frozen=True)
class HttpLimits:
    idle_timeout: float  # seconds a connection may wait for the first byte of a request
    read_timeout: float  # seconds from a request's first byte to the end of its body
    max_header_bytes: int  # request line and headers
    max_connections: int


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[HttpLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._in_head = True  # the parser awaits, or is inside, a request head
        self._head_bytes = 0  # bytes received of a head not yet parsed whole (memory bound)
        self._head_size = 0  # the parsed head: request target plus headers (the exact cap)
        self._refused = False
        # Head and message completions seen: a chunk during which one happened is not counted
        # towards the head size (it also held a body or the end of another head).
        self._transitions = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(
                503,
                f"too many connections: at most {self.limits.max_connections}",
                b"retry-after: 1\r\n",
            )
            return
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_reading()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._read_deadline is None:
            self._start_reading()
        transitions = self._transitions
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            if transitions == self._transitions:
                self._head_bytes += len(data)
            else:
                self._head_bytes = 0
            if self._head_bytes > self.limits.max_header_bytes:
                self._head_too_large()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_size = 0
        if self._read_deadline is None:  # a pipelined request, already in the buffer
            self._start_reading()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._transitions += 1
        if self._head_size > self.limits.max_header_bytes:
            self._head_too_large()  # and the app never sees this request
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._in_head = True
        self._transitions += 1
        self._stop_reading()

    def _start_reading(self) -> None:
        self._read_deadline = self.loop.call_later(self.limits.read_timeout, self._read_timed_out)

    def _stop_reading(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        busy = self.pipeline or (cycle is not None and not cycle.response_complete)
        if self._in_head and not busy:
            detail = f"request not received within {self.limits.read_timeout:g} s"
        elif not self._in_head and not self.pipeline and not cycle.response_started:
            # The app is waiting for the rest of the body: it gets a disconnect (and labels
            # its log line 408); its own answer, if any, goes nowhere.
            cycle.scope["state"][READ_TIMED_OUT] = True
            cycle.disconnected = True
            cycle.message_event.set()
            detail = f"request body not received within {self.limits.read_timeout:g} s"
        else:
            # An answer is already on its way: a 408 cannot be sent any more.
            self.transport.close()
            return
        self._refuse(408, detail)

    def _head_too_large(self) -> None:
        self._refuse(
            431, f"request header fields too large: at most {self.limits.max_header_bytes} bytes"
        )

    def _refuse(self, status: int, detail: str, extra_headers: bytes = b"") -> None:
        self._refused = True
        body = orjson.dumps({"detail": detail})
        head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n%s\r\n"
            % (len(body), extra_headers)
        )
        self.transport.write(b"".join(head) + body)
        self.transport.close()
        self._stop_reading()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown client"
        log.warning("%s: %d %s", client, status, detail)


def protocol_with(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to hand to uvicorn (`http=`), bound to these limits."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})
