"""Slow, idle and oversized requests on raw sockets against the app under uvicorn with the
gateway's protocol (gateway/http_limits.py) in this process. Each test records what it measured
(`pytest -s` prints it)."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.helpers import (
    record_figures,
    wait_for,
)
from tests.in_process import ServerInThread, serve_on_port

IDLE = 1  # HTTP_IDLE_TIMEOUT, seconds
READ = 2  # HTTP_READ_TIMEOUT, seconds
HEADER_CAP = 16 * 1024
PATIENCE = 10.0  # how long a client waits before concluding the server would wait forever


@pytest.fixture(scope="module")
def gateway() -> Iterator[ServerInThread]:
    """The app with a stand-in model under uvicorn with the gateway's own protocol and limits,
    in this process (the limits live in the socket layer, not in the model)."""
    env = {
        "HTTP_IDLE_TIMEOUT": str(IDLE),
        "HTTP_READ_TIMEOUT": str(READ),
        "HTTP_MAX_HEADER_BYTES": str(HEADER_CAP),
    }
    with serve_on_port(env) as server:
        yield server


def connect(gw: ServerInThread) -> socket.socket:
    host, port = gw.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=PATIENCE)
    return sock


def read_until_closed(sock: socket.socket) -> bytes | None:
    """Everything the server sends until it closes; None if it is still open after PATIENCE."""
    answer = b""
    sock.settimeout(PATIENCE)
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return answer


def trickle(sock: socket.socket, pieces: Iterator[bytes], every: float = 0.5) -> None:
    """Send a piece every `every` seconds until the server answers or closes, or PATIENCE."""
    deadline = time.monotonic() + PATIENCE
    for piece in pieces:
        if time.monotonic() > deadline:
            return
        try:
            sock.sendall(piece)
        except OSError:
            return  # closed by the server
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            return


def status_of(answer: bytes | None) -> int:
    if answer is None:
        return 0
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_idle_connection_is_closed(gateway: ServerInThread, tmp_path: Path) -> None:
    with connect(gateway) as sock:
        began = time.monotonic()
        answer = read_until_closed(sock)  # nothing sent: the server must hang up by itself
        waited = time.monotonic() - began
    record_figures(
        tmp_path, "idle_connection", {"open_s": round(waited, 2), "closed": answer == b""}
    )
    assert answer == b""


def test_trickled_headers_get_408(gateway: ServerInThread, tmp_path: Path) -> None:
    with connect(gateway) as sock:
        began = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        # One header line every 0.5 s, never the blank line that ends them.
        trickle(sock, (b"X-Slow-%d: y\r\n" % i for i in range(1000)))
        answer = read_until_closed(sock)
        waited = time.monotonic() - began
    record_figures(
        tmp_path, "trickled_headers", {"open_s": round(waited, 2), "status": status_of(answer)}
    )
    assert answer is not None and status_of(answer) == 408, answer
    assert b"request not received within 2 s" in answer


def test_trickled_body_gets_408_and_is_counted_408(gateway: ServerInThread, tmp_path: Path) -> None:
    with connect(gateway) as sock:
        began = time.monotonic()
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        trickle(sock, (b" " for _ in range(1000)))  # one byte every 0.5 s
        answer = read_until_closed(sock)
        waited = time.monotonic() - began
    record_figures(
        tmp_path, "trickled_body", {"open_s": round(waited, 2), "status": status_of(answer)}
    )
    assert answer is not None and status_of(answer) == 408, answer
    assert b"request body not received within 2 s" in answer
    wait_for(lambda: "POST /predict 408" in gateway.log(), 10, "the access log line")
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'gateway_requests_total{method="POST",route="/predict",status="408"} 1.0' in metrics
    assert "Traceback" not in gateway.log()


def test_oversized_head_gets_431_without_being_buffered(
    gateway: ServerInThread, tmp_path: Path
) -> None:
    # A header value that never ends, in 64 KiB pieces: the server must stop it near the cap.
    sent = 0
    with connect(gateway) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except OSError:
            pass  # closed by the server
    record_figures(tmp_path, "oversized_head", {"bytes_sent_before_close": sent})
    assert sent < 4 * 1024 * 1024
    # A complete head just over the cap gets its 431 (a complete one under it is served).
    with connect(gateway) as sock:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * HEADER_CAP + b"\r\n\r\n"
        )
        answer = read_until_closed(sock)
    assert answer is not None and status_of(answer) == 431, answer
    assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1]) == {
        "detail": f"request header fields too large: at most {HEADER_CAP} bytes"
    }
    r = httpx.get(f"{gateway.url}/health", headers={"X-Big": "a" * (HEADER_CAP // 2)})
    assert r.status_code == 200
