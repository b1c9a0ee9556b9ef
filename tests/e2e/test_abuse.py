"""What a hostile or careless client must not be able to do: hold connections by never reading,
queue pipelined requests without bound, starve the liveness probe, serve an ungated version
through `latest`, switch the model from another web site, read callback secrets back in another
spelling, or queue reloads. Against a real gateway process on real sockets; each test records
what it measured (`pytest -s`)."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import psutil
import pytest

from tests.helpers import (
    ROOT,
    GatewayProcess,
    TrainedVersions,
    free_port,
    real_windows,
    record_figures,
    wait_for,
)
from tests.receiver import garbage_receiver

WINDOW = real_windows(1)[0].tolist()
CAP = 8  # HTTP_MAX_CONNECTIONS of the module's gateway
WRITE_TIMEOUT = 2.0
PATIENCE = 30.0  # how long a test waits before concluding the gateway would wait forever


@pytest.fixture(scope="module")
def probe_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def prediction_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("abuse") / "predictions.jsonl"


@pytest.fixture(scope="module")
def gateway(
    start_gateway: Callable[..., GatewayProcess], probe_port: int, prediction_log: Path
) -> GatewayProcess:
    return start_gateway(
        {
            "HTTP_MAX_CONNECTIONS": str(CAP),
            "HTTP_WRITE_TIMEOUT": str(WRITE_TIMEOUT),
            "HTTP_IDLE_TIMEOUT": "30",  # idle sockets fill the cap for the whole of a test
            "PROBE_PORT": str(probe_port),
            "PREDICTION_LOG": str(prediction_log),
            "CALLBACK_TIMEOUT": "3",
            "MODEL_POLL_INTERVAL": "0",
        }
    )


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def silent_socket(url: str) -> socket.socket:
    """A connection whose receive buffer is as small as the kernel allows: a client that does
    not read stops the server's writes at once instead of after megabytes."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(host_port(url))
    return sock


def status_now(url: str, path: str = "/health") -> int:
    try:
        return httpx.get(f"{url}{path}", timeout=5).status_code
    except httpx.TransportError:
        return 0


def seconds_until_served(url: str, patience: float = PATIENCE) -> float | None:
    """Seconds until GET /health answers 200 again, or None after `patience`."""
    began = time.monotonic()
    while time.monotonic() - began < patience:
        if status_now(url) == 200:
            return time.monotonic() - began
        time.sleep(0.2)
    return None


def metric(gw: GatewayProcess, line_start: str) -> float:
    total = 0.0
    for line in gw.http.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            total += float(line.rsplit(" ", 1)[1])
    return total


def rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


@contextlib.contextmanager
def closing_all(socks: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


# 1. Write-side limits ------------------------------------------------------------------------


def test_clients_that_never_read_are_cut_off_after_the_write_timeout(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    """CAP sockets each ask for Swagger UI's bundle (1.4 MB) four times, more than the kernel's
    buffers hold, and never read: the gateway cuts them off HTTP_WRITE_TIMEOUT after their
    writes stop, and serves everyone again. (A single answer that fits in the buffers is done
    as far as the gateway can tell: HTTP_IDLE_TIMEOUT closes that connection.)"""
    request = b"GET /docs/assets/swagger-ui-bundle.js HTTP/1.1\r\nHost: x\r\n\r\n" * 4
    with closing_all([silent_socket(gateway.url) for _ in range(CAP)]) as socks:
        for sock in socks:
            sock.sendall(request)
        locked_out = status_now(gateway.url)
        served_after = seconds_until_served(gateway.url)
    closed = metric(gateway, 'gateway_connections_closed_total{reason="write_timeout"}')
    record_figures(
        tmp_path,
        "write_timeout",
        {
            "sockets": CAP,
            "status_while_held": locked_out,
            "seconds_until_served": served_after,
            "closed_for_write_timeout": closed,
        },
    )
    assert served_after is not None, "the gateway never served again while the sockets stayed"
    assert served_after < WRITE_TIMEOUT + 10
    assert closed >= CAP


def test_pipelined_requests_are_bounded_per_connection(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    """CAP sockets each pipeline 30,000 GET /health and never read: the gateway closes them
    without queueing the requests, memory stays put and others are served within seconds."""
    burst = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 30_000
    before = rss_mib(gateway.process.pid)
    with closing_all([silent_socket(gateway.url) for _ in range(CAP)]) as socks:
        sent = 0
        for sock in socks:
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # a full buffer, or closed by the gateway
                sent += sock.send(burst)
        served_after = seconds_until_served(gateway.url)
        grown = rss_mib(gateway.process.pid) - before
    closed = metric(gateway, 'gateway_connections_closed_total{reason="pipeline_limit"}')
    record_figures(
        tmp_path,
        "pipelining",
        {
            "sockets": CAP,
            "bytes_sent": sent,
            "seconds_until_served": served_after,
            "rss_growth_mib": round(grown, 1),
            "closed_for_pipeline_limit": closed,
        },
    )
    assert served_after is not None and served_after < 10
    assert grown < 50
    assert closed >= 1


def test_liveness_is_answered_on_the_probe_port_when_the_cap_is_full(
    gateway: GatewayProcess, probe_port: int, tmp_path: Path
) -> None:
    probe = f"http://127.0.0.1:{probe_port}"
    with closing_all([silent_socket(gateway.url) for _ in range(CAP)]):
        wait_for(lambda: status_now(gateway.url) == 503, 10, "the main port to be full")
        health = httpx.get(f"{probe}/health", timeout=5)
        ready = status_now(probe, "/ready")
        other = status_now(probe, "/predict")
    record_figures(
        tmp_path,
        "probe_port",
        {"main_status": 503, "probe_health": health.status_code, "probe_ready": ready},
    )
    assert health.status_code == 200 and health.json()["model_loaded"] is True
    assert ready == 200
    assert other == 404  # the probe listener answers probes only


def test_docs_serves_only_the_assets_its_page_uses(gateway: GatewayProcess) -> None:
    for used in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
        assert status_now(gateway.url, f"/docs/assets/{used}") == 200, used
    for unused in (
        "swagger-editor-es-bundle.js.map",
        "swagger-ui-es-bundle.js",
        "oauth2-redirect.html",
        "LICENSE",
    ):
        assert status_now(gateway.url, f"/docs/assets/{unused}") == 404, unused


# 2. Aliases are aliases ----------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["latest", "LATEST", "Latest", "v1", "V2", "stag ing", "a/b"])
def test_reload_refuses_what_mlflow_does_not_take_as_an_alias(
    gateway: GatewayProcess, trained: TrainedVersions, alias: str
) -> None:
    r = gateway.http.post("/reload", json={"alias": alias}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith("모델 리로드 실패: alias ")
    assert gateway.health()["model_version"] == trained.staging


def test_a_long_alias_is_not_echoed_whole(gateway: GatewayProcess) -> None:
    r = gateway.http.post("/reload", json={"alias": "x" * 60_000}, timeout=60)
    assert r.status_code == 400
    assert len(r.json()["detail"]) < 300


def start_fails(env: dict[str, str]) -> str:
    """`python -m gateway` with only `env` (and PATH): its stderr, once it has exited non-zero
    without a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--port", "1"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    return result.stderr


def test_model_alias_latest_stops_start_up() -> None:
    assert "gateway: bad setting: MODEL_ALIAS" in start_fails({"MODEL_ALIAS": "latest"})


# 3. /reload is not a cross-site target -------------------------------------------------------


def test_cross_site_posts_are_refused_and_same_origin_ones_served(
    gateway: GatewayProcess, trained: TrainedVersions
) -> None:
    own = gateway.url
    body = orjson.dumps({"alias": "Production"})
    cases = [
        ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403),
        ({"Content-Type": "application/json", "Origin": "null"}, 403),
        (
            {
                "Content-Type": "application/json",
                "Origin": "http://evil.example",
                "Host": "evil.example",
            },
            403,
        ),
    ]
    try:
        for headers, status in cases:
            r = gateway.http.post("/reload", content=body, headers=headers, timeout=60)
            assert r.status_code == status, (headers, r.text)
            assert r.json()["detail"].startswith("모델 리로드 실패: ")
            assert gateway.health()["model_version"] == trained.staging
        r = gateway.http.post(
            "/predict", content=orjson.dumps({"X": WINDOW}), headers={"Content-Type": "text/plain"}
        )
        assert r.status_code == 415 and r.json()["detail"].startswith("예측 실패: ")
        r = gateway.http.post(
            "/reload",
            content=body,
            headers={"Content-Type": "application/json; charset=utf-8", "Origin": own},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == trained.production
    finally:
        gateway.http.post("/reload", json={"alias": "staging"}, timeout=60)


# 4. Reloads are bounded work -----------------------------------------------------------------


def test_abandoned_reloads_do_not_queue(gateway: GatewayProcess, tmp_path: Path) -> None:
    """1,500 /reloads of distinct aliases whose clients leave at once, then a real one: the
    abandoned ones are dropped, not run one after another (all 1,500 ran before, and the real
    reload waited 20.8 s behind them)."""
    failed = 'gateway_reloads_total{trigger="api",result="failure"}'
    failed_before = metric(gateway, failed)
    host, port = host_port(gateway.url)
    began = time.monotonic()
    for i in range(1500):
        body = orjson.dumps({"alias": f"flood-{i}"})
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(
                b"POST /reload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
    flooded = time.monotonic() - began
    # A reload sent while the flood is still being read may be refused (two under way): the
    # operator's retry is served once the gateway has dropped what the flood left.
    began, attempts = time.monotonic(), 0
    while True:
        attempts += 1
        r = gateway.http.post("/reload", json={"alias": "staging"}, timeout=120)
        if r.status_code == 200 or time.monotonic() - began > 60:
            break
        assert "under way" in r.json()["detail"], r.text
        time.sleep(0.1)  # a client's pause between retries
    seconds = time.monotonic() - began
    ran = metric(gateway, failed) - failed_before  # every flood alias is unknown: a failure
    record_figures(
        tmp_path,
        "reload_flood",
        {
            "abandoned": 1500,
            "abandoned_that_ran": ran,
            "flood_s": round(flooded, 2),
            "real_reload_s": round(seconds, 2),
            "attempts": attempts,
        },
    )
    assert r.status_code == 200, r.text
    assert ran < 50


SECRET = "Zq7SECRETvalue"


def spellings(secret: str) -> list[str]:
    """The secret as aiohttp, yarl or a client may write it."""
    return [secret, quote(secret, safe=""), secret.lower(), secret[3:]]


def test_callback_secrets_stay_out_in_every_spelling(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    encoded = "".join(f"%{ord(c):02X}" if c in "SECRET" else c for c in SECRET)
    with garbage_receiver() as port:
        base = f"http://127.0.0.1:{port}"
        urls = [
            f"{base}/hook?token={encoded}",
            f"{base}/services/T/B/{SECRET}",
            f"{base}/services/T/B/{encoded}",
            f"{base}/services/T/B/{SECRET}?x=1",
            f"{base}/a%2Fb/{encoded}",
            f"{base}/hook#{SECRET}",
            f"http://user:{encoded}@127.0.0.1:{port}/hook",
            f"{base}/./{SECRET}/../hook",
            f"{base}/hook?{SECRET}",
        ]
        with ThreadPoolExecutor(CAP // 2) as pool:  # within the connection cap
            answers = list(
                pool.map(
                    lambda url: gateway.http.post(
                        "/predict", json={"X": WINDOW, "callback_url": url}, timeout=30
                    ),
                    urls,
                )
            )
    leaks = []
    for url, r in zip(urls, answers, strict=True):
        assert r.status_code == 200, r.text
        assert r.json()["posted_to_callback"] is False
        leaks += [(url, "answer") for s in spellings(SECRET) if s in r.text]
    wait_for(lambda: gateway.log().count("callback to ") >= len(urls), 10, "the log lines")
    text = gateway.log() + gateway.http.get("/metrics").text
    leaks += [("log or metrics", s) for s in spellings(SECRET) if s in text]
    record_figures(tmp_path, "callback_secrets", {"spellings": len(urls), "leaks": len(leaks)})
    assert leaks == []
    assert f"callback to http://127.0.0.1:{port} failed" in gateway.log()


# 6. The low ones -----------------------------------------------------------------------------


def test_slash_redirects_never_come_from_the_host_header(gateway: GatewayProcess) -> None:
    with socket.create_connection(host_port(gateway.url), timeout=10) as sock:
        sock.sendall(b"GET /health/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode().lower()
    assert head.split(" ", 2)[1] in ("307", "308", "404"), head
    assert "evil.example" not in head


def test_protocol_level_400s_are_counted_and_logged(gateway: GatewayProcess) -> None:
    before = metric(gateway, 'gateway_requests_total{method="other",route="other",status="400"}')
    for _ in range(3):
        with socket.create_connection(host_port(gateway.url), timeout=10) as sock:
            sock.sendall(b"NOT HTTP\x00\r\n\r\n")
            while sock.recv(65536):
                pass
    after = metric(gateway, 'gateway_requests_total{method="other",route="other",status="400"}')
    assert after - before == 3
    wait_for(lambda: " 400 " in gateway.log(), 10, "an access-log line for the 400")


def test_refusal_logs_are_rate_limited(gateway: GatewayProcess, tmp_path: Path) -> None:
    before = gateway.log().count("too many connections")
    with closing_all([silent_socket(gateway.url) for _ in range(CAP)]):
        wait_for(lambda: status_now(gateway.url) == 503, 10, "the main port to be full")
        for _ in range(200):
            with (
                contextlib.suppress(OSError),
                socket.create_connection(host_port(gateway.url), timeout=5) as sock,
            ):
                sock.recv(4096)
    wait_for(lambda: seconds_until_served(gateway.url, 1) is not None, 20, "the cap to free")
    lines = gateway.log().count("too many connections") - before
    record_figures(tmp_path, "refusal_log", {"refused": 200, "log_lines": lines})
    assert lines <= 20


def test_model_info_keeps_one_series(gateway: GatewayProcess, trained: TrainedVersions) -> None:
    try:
        for alias in ("Production", "staging", "Production", "staging"):
            assert (
                gateway.http.post("/reload", json={"alias": alias}, timeout=60).status_code == 200
            )
        series = [
            line
            for line in gateway.http.get("/metrics").text.splitlines()
            if line.startswith("gateway_model_info{")
        ]
    finally:
        gateway.http.post("/reload", json={"alias": "staging"}, timeout=60)
    assert series == [f'gateway_model_info{{alias="staging",version="{trained.staging}"}} 1.0']


def test_the_prediction_log_is_private(gateway: GatewayProcess, prediction_log: Path) -> None:
    assert gateway.http.post("/predict", json={"X": WINDOW}).status_code == 200
    wait_for(prediction_log.exists, 10, "the prediction log")
    assert stat.S_IMODE(prediction_log.stat().st_mode) == 0o600


def test_a_bad_callback_secret_names_the_setting() -> None:
    stderr = start_fails({"CALLBACK_SECRET": "whsec_not*base64"})
    assert "gateway: bad setting: CALLBACK_SECRET" in stderr


# The Python client and the webhook check ------------------------------------------------------
