"""Connection limits for uvicorn's httptools protocol, which has none of its own.

uvicorn (httptools) arms its keep-alive timer only after a response, has no deadline for a
request that never finishes arriving or for a client that never reads its answer, queues
pipelined requests without bound, has no cap on the size of a request head, and only a
concurrency limit that answers once a request's headers are in, long after the socket was
taken. This subclass adds, per connection:

- an idle timeout from the moment the connection opens (uvicorn's keep-alive timer, armed early);
- a read deadline from the first byte of a request to the end of its body: 408, then close;
- a write deadline: a client that reads nothing of what is written to it for that long is cut
  off (a close that still has data to flush is bounded the same way);
- at most `max_pipeline` requests queued behind the one being answered: past that, the
  connection is closed (its parsed requests are dropped, so memory stays bounded);
- a cap on the bytes of a request head (request line and headers): 431, then close;
- a cap on open connections per listener: the one over it gets 503 at once and is closed, so
  that idle sockets cannot use up the process's file descriptors.

A second listener, for probes only (PROBE_PORT), has a small cap of its own and serves
`/health` and `/ready` alone: clients that fill the main listener cannot fail the liveness probe.

Every refusal and cut-off is counted (`gateway_connections_closed_total{reason}`; answered ones
also in `gateway_requests_total`, route "other") and logged at a bounded rate.

It relies on uvicorn's protocol internals (parser callbacks, `cycle`, `pipeline`, `flow`), which
is why uvicorn is pinned; tests/app/test_connection_limits.py and tests/e2e/test_abuse.py
exercise every branch on real sockets.
"""

from __future__ import annotations

import asyncio
import http
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.connections import PROBE_MAX_CONNECTIONS, Connections, probes_only
from gateway.metrics import Metrics

# Keys in a request's `scope["state"]`: the read deadline passed while the app read the body;
# a function telling whether the client has gone (its connection was lost).
READ_TIMED_OUT = "gateway.read_timed_out"
CLIENT_GONE = "gateway.client_gone"
__all__ = ["CLIENT_GONE", "PROBE_MAX_CONNECTIONS", "READ_TIMED_OUT", "HttpLimits", "protocol_with"]


@dataclass(frozen=True)
class HttpLimits:
    idle_timeout: float  # seconds a connection may wait for the first byte of a request
    read_timeout: float  # seconds from a request's first byte to the end of its body
    write_timeout: float  # seconds a connection may wait for its client to read
    max_header_bytes: int  # request line and headers
    max_connections: int  # on the main listener
    max_pipeline: int  # requests waiting behind the one being answered
    probe_port: int | None = None  # the probes' listener, if any


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[HttpLimits]
    shared: ClassVar[Connections]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self._in_head = True  # the parser awaits, or is inside, a request head
        self._head_bytes = 0  # bytes received of a head not yet parsed whole (memory bound)
        self._head_size = 0  # the parsed head: request target plus headers (the exact cap)
        self._refused = False
        self._probe = False  # a connection to the probes' listener
        self._counted = False
        # Head and message completions seen: a chunk during which one happened is not counted
        # towards the head size (it also held a body or the end of another head).
        self._transitions = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        probe_port = self.limits.probe_port
        self._probe = (
            probe_port is not None and self.server is not None and (self.server[1] == probe_port)
        )
        if self._probe:
            self.app = probes_only(self.app)
        cap = PROBE_MAX_CONNECTIONS if self._probe else self.limits.max_connections
        if self.shared.open[self._probe] >= cap:
            self._refuse(
                503, "too_many_connections", f"too many connections: at most {cap}",
                b"retry-after: 1\r\n",
            )  # fmt: skip
            return
        self.shared.open[self._probe] += 1
        self._counted = True
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            self.shared.open[self._probe] -= 1
            self._counted = False
        self._stop_reading()
        self._stop_waiting_to_write()
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

    def send_400_response(self, msg: str) -> None:
        # httptools could not parse the request: uvicorn answers 400 without the app.
        self._refused = True
        self._stop_reading()
        self.shared.closed("invalid_request", self._client(), "invalid HTTP request", 400)
        super().send_400_response(msg)

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
        if self._refused:
            return  # the rest of a chunk parsed after the connection was given up
        if self._head_size > self.limits.max_header_bytes:
            self._head_too_large()  # and the app never sees this request
            return
        super().on_headers_complete()
        cycle = self.cycle
        cycle.scope["state"][CLIENT_GONE] = lambda: cycle.disconnected
        if len(self.pipeline) > self.limits.max_pipeline:
            # Each queued request holds a parsed head; a client that sends thousands and reads
            # nothing would hold them all. HTTP/1.1 clients retry what a closed pipeline lost.
            self._refused = True
            self._stop_reading()
            self.pipeline.clear()
            self.shared.closed(
                "pipeline_limit",
                self._client(),
                f"closed: more than {self.limits.max_pipeline} pipelined requests queued",
            )
            self._close()

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

    def pause_writing(self) -> None:
        # The transport's buffer is over its high-water mark: the client is not reading.
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(
                self.limits.write_timeout, self._write_timed_out
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stop_waiting_to_write()

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            self._close()

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._close()
        else:
            self.cycle.keep_alive = False

    def _close(self) -> None:
        """Close, flushing what is buffered; a client that never reads it is cut off after
        the write timeout (a plain close would wait for it forever)."""
        self.transport.close()
        if self.transport.get_write_buffer_size() and self._write_deadline is None:
            self._write_deadline = self.loop.call_later(
                self.limits.write_timeout, self._write_timed_out
            )

    def _write_timed_out(self) -> None:
        self._write_deadline = None
        self.shared.closed(
            "write_timeout",
            self._client(),
            f"closed: the client read nothing for {self.limits.write_timeout:g} s",
        )
        self.transport.abort()

    def _stop_waiting_to_write(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

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
            self._close()
            return
        self._refuse(408, "read_timeout", detail)

    def _head_too_large(self) -> None:
        self._refuse(
            431,
            "head_too_large",
            f"request header fields too large: at most {self.limits.max_header_bytes} bytes",
        )

    def _refuse(self, status: int, reason: str, detail: str, extra_headers: bytes = b"") -> None:
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
        self._close()
        self._stop_reading()
        self.shared.closed(reason, self._client(), detail, status)

    def _client(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "unknown client"


def protocol_with(
    limits: HttpLimits, metrics: Metrics, access_log: bool = True
) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to hand to uvicorn (`http=`), bound to these limits; its connections
    report to `metrics` (and to the access log, unless `access_log` is False)."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"limits": limits, "shared": Connections(metrics, access_log)},
    )
