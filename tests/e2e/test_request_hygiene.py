"""Bounded work per request, secrets and log hygiene, client aborts, encodings and fair
callbacks against real gateway processes. Each test records what it measured (`pytest -s`)."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest

from tests.helpers import (
    GatewayProcess,
    free_port,
    real_windows,
    record_figures,
    run_gateway,
    wait_for,
)
from tests.receiver import Receiver, garbage_receiver, run_receiver

WINDOW = real_windows(1)[0].tolist()
SECRET = "Zq7secretValue"  # planted in URLs: must never come back out


@pytest.fixture(scope="module")
def gateway(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    return start_gateway(
        {
            "CALLBACK_TIMEOUT": "8",
            "HTTP_MAX_CONNECTIONS": "400",  # the fair-callbacks test holds 200 requests open
        }
    )


def metric(gw: GatewayProcess, line_start: str) -> float:
    for line in gw.http.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def proc_status(pid: int) -> dict[str, int]:
    # psutil has no peak RSS: the kernel's high-water mark (VmHWM) is only in /proc.
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            fields[name] = int(rest.split()[0])
    return fields


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


# 1. Work that exploded with the shape of metadata -------------------------------------------


def test_metadata_shapes_cost_bounded_memory_and_arrive_as_sent(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    """A long key over a long list made the old callback check build one path string per
    element (key length x list length). Now each costs a bounded amount, and the receiver gets
    the metadata as sent. Peak RSS is reset before each request (/proc/PID/clear_refs)."""
    pid = gateway.process.pid
    shapes: dict[str, Any] = {
        "long key over a long list": {"k" * 50_000: [0] * 5_000},
        "100k small integers": {"a": [7] * 100_000},
        "80k empty lists": {"a": [[]] * 80_000},
        "254 levels": orjson.loads(b'{"a":' * 253 + b"1" + b"}" * 253),
    }
    figures: dict[str, Any] = {}
    with run_receiver("ok") as receiver:
        for name, metadata in shapes.items():
            body = orjson.dumps({"X": WINDOW, "callback_url": receiver.url, "metadata": metadata})
            assert len(body) < 256 * 1024  # MAX_BODY_BYTES's default
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            before, cpu_before = proc_status(pid), cpu_seconds(pid)
            health_ms = probe_health_while(gateway, body)
            after, cpu_after = proc_status(pid), cpu_seconds(pid)
            answer, latencies = health_ms
            assert answer.status_code == 200, answer.text
            assert answer.json()["posted_to_callback"] is True, answer.text
            sent = orjson.loads(receiver.received[-1][1])["metadata"]
            assert sent == metadata
            peak_mb = (after["VmHWM"] - before["VmRSS"]) / 1024
            figures[name] = {
                "body_kb": round(len(body) / 1024),
                "gateway_cpu_ms": round((cpu_after - cpu_before) * 1000),
                "peak_rss_growth_mb": round(peak_mb, 1),
                "slowest_health_ms_meanwhile": round(max(latencies, default=0.0), 1),
            }
            assert peak_mb < 50, figures
    record_figures(tmp_path, "metadata_shapes", figures)


def probe_health_while(gw: GatewayProcess, body: bytes) -> tuple[httpx.Response, list[float]]:
    """POST `body` while another thread times /health every 10 ms."""
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=60) as client:
            while not done.is_set():
                began = time.perf_counter()
                client.get(f"{gw.url}/health")
                latencies.append((time.perf_counter() - began) * 1000)
                time.sleep(0.01)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        answer = httpx.post(f"{gw.url}/predict", content=body, timeout=120)
    finally:
        done.set()
        thread.join()
    return answer, latencies


# 7. Metadata accepted, then dropped ----------------------------------------------------------


def test_client_text_cannot_forge_or_colour_log_lines(gateway: GatewayProcess) -> None:
    forged = "2026-01-01 00:00:00,000 ERROR gateway.app: forged"
    paths = ["/health%0d%0a" + forged.replace(" ", "%20"), "/x%1b[2Jy", "/nul%00byte"]
    for path in paths:
        httpx.get(gateway.url + path)
    # A callback URL with a terminal escape in its host: the lookup fails, and aiohttp's error
    # quotes the host, escape included; delivery retries until its budget is spent.
    r = httpx.post(
        f"{gateway.url}/predict",
        json={"X": WINDOW, "callback_url": "http://a\x1bb.example/x"},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["posted_to_callback"] is False
    wait_for(lambda: "nul%00byte" in gateway.log(), 10, "the access log lines")
    lines = gateway.log_path.read_bytes().splitlines()
    assert not any(line.startswith(forged.encode()) for line in lines)
    # (MLflow's own warnings are coloured: only lines about requests and callbacks count.)
    ours = [line for line in lines if b"gateway.access" in line or b"callback to" in line]
    assert ours and not any(b"\x1b" in line or b"\x00" in line for line in ours)
    assert "/health%0d%0a2026-01-01" in gateway.log()


# 5. Client aborts are the client's -----------------------------------------------------------


PREDICT_STATUS = 'gateway_requests_total{method="POST",route="/predict",status="%d"}'


def test_aborted_uploads_are_one_499_line_each(gateway: GatewayProcess, tmp_path: Path) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    before = {status: metric(gateway, PREDICT_STATUS % status) for status in (499, 500)}
    lines_before = len(gateway.log().splitlines())
    aborts = 20
    for _ in range(aborts):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            sock.sendall(b'{"X": [' + b" " * 1000)

    def new_lines() -> list[str]:
        # The /metrics read above logs its own line, possibly after lines_before was taken.
        lines = gateway.log().splitlines()[lines_before:]
        return [line for line in lines if "GET /metrics " not in line]

    wait_for(
        lambda: sum("POST /predict " in line for line in new_lines()) >= aborts,
        20,
        f"{aborts} access log lines",
    )
    lines = new_lines()
    counted = {s: metric(gateway, PREDICT_STATUS % s) - before[s] for s in (499, 500)}
    record_figures(
        tmp_path,
        "aborted_uploads",
        {"aborts": aborts, "log_lines": len(lines), "counted": counted},
    )
    assert sum("POST /predict 499" in line for line in lines) == aborts
    assert len(lines) == aborts  # one line each: no traceback
    assert counted == {499: aborts, 500: 0}


# 6. Callback secrets are logged --------------------------------------------------------------


def test_callback_url_secrets_never_come_back(gateway: GatewayProcess) -> None:
    with run_receiver("error") as receiver, garbage_receiver() as garbage_port:
        origin = receiver.url.removesuffix("/hook")
        urls = [
            # a receiver that answers 500 (retried, then failed)
            receiver.url.replace("http://", f"http://user:{SECRET}@") + f"?token={SECRET}",
            # nothing listening
            f"http://user:{SECRET}@127.0.0.1:{free_port()}/hook?token={SECRET}",
            # a host that resolves nowhere: aiohttp's error quotes it (a terminal escape here)
            f"http://a\x1bb.example/hook?token={SECRET}",
            # a receiver that answers garbage: aiohttp's error quotes the URL with its query
            f"http://user:{SECRET}@127.0.0.1:{garbage_port}/hook?token={SECRET}",
        ]
        # All at once: each failing delivery retries until its whole budget is spent.
        with (
            httpx.Client(base_url=gateway.url, timeout=30) as client,
            ThreadPoolExecutor(len(urls)) as pool,
        ):
            answers = list(
                pool.map(
                    lambda url: client.post("/predict", json={"X": WINDOW, "callback_url": url}),
                    urls,
                )
            )
    for r in answers:
        assert r.status_code == 200, r.text
        assert r.json()["posted_to_callback"] is False
        assert SECRET not in r.text
    assert "HTTP 500" in answers[0].json()["callback_error"]
    wait_for(lambda: gateway.log().count("callback to ") >= 4, 10, "the callback log lines")
    assert SECRET not in gateway.log()
    assert SECRET not in httpx.get(f"{gateway.url}/metrics").text
    assert f"callback to {origin} failed" in gateway.log()


# 3. The registry password is echoed ----------------------------------------------------------


def test_registry_password_never_appears(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: every load and reload fails at once
    env = {
        "MLFLOW_TRACKING_URI": f"http://operator:{SECRET}@127.0.0.1:{port}",
        "MODEL_LOAD_TIMEOUT": "1",
    }
    with run_gateway(env, tmp_path, wait_loaded=False) as gw:
        wait_for(lambda: "giving up loading" in gw.log(), 30, "start-up to give up")
        r = httpx.post(f"{gw.url}/reload", timeout=30)
        assert r.status_code == 500
        assert r.json()["detail"] == (
            f"모델 리로드 실패: registry unreachable at http://127.0.0.1:{port}: connection refused"
        )
        metrics = httpx.get(f"{gw.url}/metrics").text
        log = gw.log()
    for text in (r.text, metrics, log):
        assert SECRET not in text
    assert f"http://127.0.0.1:{port}" in log


# 9. Non-ASCII is re-encoded ------------------------------------------------------------------


def test_a_non_ascii_request_id_is_replaced_everywhere_by_one_generated_id(
    gateway: GatewayProcess,
) -> None:
    with run_receiver("ok") as receiver:
        r = httpx.post(
            f"{gateway.url}/predict",
            content=orjson.dumps({"X": WINDOW, "callback_url": receiver.url}),
            headers={"X-Request-ID": "café".encode()},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        answered = r.headers["X-Request-ID"]
        sent = receiver.received[0][0]["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", answered), answered
    assert sent == answered
    wait_for(lambda: f"request_id={answered}" in gateway.log(), 10, "the access log line")
    # An ASCII id is kept as given, in all three places.
    r = httpx.get(f"{gateway.url}/health", headers={"X-Request-ID": "plain-id.42"})
    assert r.headers["X-Request-ID"] == "plain-id.42"


def test_one_slow_receiver_cannot_take_the_callback_pool(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    """200 callbacks pending to a receiver that holds every request (each ends when its
    CALLBACK_TIMEOUT budget does); then another client's callback to a healthy receiver must
    complete before any of the 200 does. Held rather than delayed: under load, making the 200
    forecasts can take longer than any fixed delay, and the first slow answers would then come
    before the flood was even complete."""
    body = orjson.dumps({"X": WINDOW})

    async def scenario(slow_url: str, fast_url: str) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=300)) as c:

            async def timed(url: str) -> tuple[float, httpx.Response]:
                began = time.perf_counter()
                r = await c.post(
                    f"{gateway.url}/predict",
                    content=body[:-1] + b', "callback_url": "%s"}' % url.encode(),
                )
                return (time.perf_counter() - began) * 1000, r

            alone = [await timed(fast_url) for _ in range(5)]
            answered = metric(gateway, "gateway_predictions_total")
            flood = [asyncio.create_task(timed(slow_url)) for _ in range(200)]
            # All 200 forecasts made: every one of them is now delivering its callback, or
            # waiting for a connection to do so.
            while metric(gateway, "gateway_predictions_total") < answered + 200:
                await asyncio.sleep(0.05)
            during_ms, during = await timed(fast_url)
            flood_done_before = sum(task.done() for task in flood)
            results = await asyncio.gather(*flood)
            return {
                "alone_ms": sorted(ms for ms, _ in alone)[2],
                "during_flood_ms": round(during_ms, 1),
                "during_posted": during.json()["posted_to_callback"],
                "slow_done_before_it": flood_done_before,
                "slow_posted": sum(r.json()["posted_to_callback"] for _, r in results),
            }

    with Receiver(hold=True) as slow, run_receiver("ok") as fast:
        figures = asyncio.run(scenario(slow.url, fast.url))
    record_figures(tmp_path, "fair_callbacks", figures)
    assert figures["during_posted"] is True
    assert figures["slow_done_before_it"] == 0
