"""Admin auth end to end, a refusal before the upload on a real socket, the exit on a bad
setting and graceful shutdown, against real gateway processes."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import orjson

from gateway.settings import Settings
from tests.helpers import (
    ROOT,
    LiveGateway,
    Registry,
    TrainedVersions,
    real_windows,
    run_gateway,
)
from tests.receiver import run_receiver


def test_reload_with_the_admin_token_works_end_to_end(
    live_gateway: LiveGateway, trained: TrainedVersions
) -> None:
    r = httpx.post(
        f"{live_gateway.url}/reload",
        headers={"Authorization": f"Bearer {live_gateway.admin_token}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "status": "reloaded",
        "model_alias": "staging",
        "model_version": trained.staging,
    }
    r = httpx.post(f"{live_gateway.url}/reload", timeout=30)
    assert r.status_code == 401


def test_body_over_the_limit_is_413_before_it_is_read(live_gateway: LiveGateway) -> None:
    """A declared Content-Length over the limit is refused before the upload: the client
    sends `Expect: 100-continue`, and the answer comes without the body ever being sent
    (uvicorn's own behaviour, so a real server)."""
    limit = Settings().max_body_bytes  # the live gateway's (the default)
    host, port = live_gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: 1073741824\r\n\r\n"
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, f"connection closed early: {answer!r}"
            answer += chunk
    head, body = answer.decode().split("\r\n\r\n", 1)
    assert head.startswith("HTTP/1.1 413"), head
    assert orjson.loads(body) == {
        "detail": f"예측 실패: request body too large: at most {limit} bytes, got 1073741824 bytes"
    }


def test_a_bad_setting_exits_the_process_non_zero_naming_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--port", "1"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "SEQ_LEN_REQUIRED": "twelve"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SEQ_LEN_REQUIRED must be an integer, got 'twelve'" in result.stderr


def _accepts_connections(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def test_sigterm_lets_requests_in_flight_finish_and_exits_0(
    registry: Registry, trained: TrainedVersions, tmp_path: Path
) -> None:
    """SIGTERM under load: requests already in flight (held open by a slow callback
    receiver) all finish with 200, new connections are refused, the process exits 0 and
    logs no unclosed session or destroyed task."""
    env = {
        "MLFLOW_TRACKING_URI": registry.uri,
        "CALLBACK_TIMEOUT": "5",
        "SHUTDOWN_GRACE_SECONDS": "10",
    }
    window = real_windows(1)[0].tolist()
    with run_receiver("slow", delay=1.5) as receiver, run_gateway(env, tmp_path) as gw:

        async def scenario() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                body = orjson.dumps({"X": window, "callback_url": receiver.url})
                in_flight = [
                    asyncio.create_task(client.post(f"{gw.url}/predict", content=body))
                    for _ in range(16)
                ]
                # Every request has reached the receiver: all 16 are inside the gateway.
                while len(receiver.received) < 16:
                    await asyncio.sleep(0.02)
                gw.process.send_signal(signal.SIGTERM)
                # The listener closes at once while the 16 are still being answered.
                while _accepts_connections(gw.url):
                    await asyncio.sleep(0.01)
                assert not all(task.done() for task in in_flight)
                return await asyncio.gather(*in_flight)

        responses = asyncio.run(scenario())
        assert [r.status_code for r in responses] == [200] * 16
        assert all(r.json()["posted_to_callback"] for r in responses)
        assert gw.process.wait(30) == 0
        log = gw.log()
    for bad in ("Unclosed client session", "Task was destroyed", "Traceback"):
        assert bad not in log
