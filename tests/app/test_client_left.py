"""A client that leaves while its window waits for the model costs no model time and is one 499
line: the app under uvicorn in this process, with a slow stand-in model setting the timing."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import orjson

from tests.helpers import (
    real_windows,
    record_figures,
    wait_for,
)
from tests.in_process import StandInSource, serve_on_port

WINDOW = real_windows(1)[0].tolist()


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


@contextlib.contextmanager
def closing_all(socks: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


# 1. Write-side limits ------------------------------------------------------------------------


def test_clients_that_left_before_their_batch_are_499_and_skip_the_model(tmp_path: Path) -> None:
    """A slow stand-in model holds the thread; ten clients send a window, wait in the queue and
    leave: none of the ten reaches the model, each is one 499 line."""
    source = SlowSource(seconds=1.5)
    with serve_on_port({"INLINE_PREDICT_MAX_MS": "0"}, source=source) as server:
        body = orjson.dumps({"X": WINDOW})
        request = (
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )

        def queued() -> float:
            for line in httpx.get(f"{server.url}/metrics").text.splitlines():
                if line.startswith("gateway_batch_queue_depth "):
                    return float(line.split()[1])
            return 0.0

        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(
                httpx.post,
                f"{server.url}/predict",
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            wait_for(lambda: source.calls >= 1, 10, "the first window to reach the model")
            with closing_all(
                [socket.create_connection(host_port(server.url), timeout=5) for _ in range(10)]
            ) as leaving:
                for sock in leaving:
                    sock.sendall(request)
                wait_for(lambda: queued() >= 10, 10, "ten windows waiting for the model")
            assert first.result(30).status_code == 200
        wait_for(lambda: server.log().count("POST /predict 499") >= 10, 10, "ten 499 lines")
        metrics = httpx.get(f"{server.url}/metrics").text
    record_figures(tmp_path, "left_before_batch", {"left": 10, "windows_run": source.windows})
    assert source.windows == 1
    assert 'gateway_requests_total{method="POST",route="/predict",status="499"} 10.0' in metrics


class SlowSource(StandInSource):
    """Stand-in versions whose every model call takes `seconds`, counting windows."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.calls = 0
        self.windows = 0

    def load(self, alias: str, version: str):  # type: ignore[no-untyped-def]
        model = super().load(alias, version)

        def slow(x: np.ndarray) -> np.ndarray:
            self.calls += 1
            self.windows += len(x)
            time.sleep(self.seconds)
            return model.predict(x)

        from dataclasses import replace

        return replace(model, predict=slow)


# The Python client and the webhook check ------------------------------------------------------
