"""Too many connections against a gateway process limited to 256 open files: the cap answers
503 and the process keeps its files."""

from __future__ import annotations

import resource
import select
import socket
from pathlib import Path

import httpx

from tests.helpers import (
    Registry,
    TrainedVersions,
    record_figures,
    run_gateway,
    wait_for,
)

PATIENCE = 10.0  # how long a client waits before concluding the server would wait forever


def status_of(answer: bytes | None) -> int:
    if answer is None:
        return 0
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_connections_over_the_cap_get_503_and_the_process_keeps_its_files(
    registry: Registry, trained: TrainedVersions, tmp_path: Path
) -> None:
    """300 idle sockets against a process limited to 256 open files: the cap (100) keeps the
    process below its limit, the rest are answered 503, and it serves again once they go."""
    env = {
        "MLFLOW_TRACKING_URI": registry.uri,
        "HTTP_MAX_CONNECTIONS": "100",
        "HTTP_IDLE_TIMEOUT": "60",  # the idle sockets stay for the whole test
    }
    with run_gateway(env, tmp_path) as gw:
        resource.prlimit(gw.process.pid, resource.RLIMIT_NOFILE, (256, 256))
        host, port = gw.url.removeprefix("http://").split(":")
        idle = []
        refused = 0
        try:
            for _ in range(300):
                sock = socket.create_connection((host, int(port)), timeout=PATIENCE)
                idle.append(sock)
            # Those over the cap are answered at once; the rest stay silent.
            wait_for(lambda: len(select.select(idle, [], [], 0.1)[0]) >= 200, 20, "200 answers")
            readable, _, _ = select.select(idle, [], [], 0.5)
            refused = sum(status_of(sock.recv(4096)) == 503 for sock in readable)
            with httpx.Client(timeout=PATIENCE) as client:
                during = client.get(f"{gw.url}/health").status_code
        finally:
            for sock in idle:
                sock.close()
        wait_for(lambda: httpx.get(f"{gw.url}/health").status_code == 200, 10, "/health 200")
        record_figures(
            tmp_path,
            "connection_cap",
            {"idle_sockets": 300, "answered_503": refused, "health_while_full": during},
        )
        assert refused == 200
        assert during == 503
        assert gw.process.poll() is None
        assert "Too many open files" not in gw.log()
