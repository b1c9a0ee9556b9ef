"""A closed-loop HTTP/1.1 load generator on raw asyncio streams, run in its own process.

    python -m benchmarks.loadgen --url http://127.0.0.1:8000/predict --bodies gateway.jsonl \
        --concurrency 64 --warmup 3 --duration 10

Each of N keep-alive connections sends a request, waits for the whole answer and sends the next:
no pacing, so the rate is what the server sustains at that concurrency. Requests are built once
(one JSON body per line of --bodies, cycled through) and responses are parsed only as far as
finding their end; aiohttp's client would spend more CPU per request than the server under test.
Prints one LoadResult as JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.results import LoadResult


@dataclass
class _Stats:
    measuring: bool = False
    latencies: list[float] = field(default_factory=list)
    non_2xx: int = 0
    socket_errors: int = 0


def build_requests(url: str, bodies: list[bytes]) -> list[bytes]:
    parts = urlsplit(url)
    head = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Content-Type: application/json\r\n"
    )
    return [f"{head}Content-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep-alive) after consuming one whole response."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    keep_alive = b"connection: close" not in lower
    at = lower.find(b"content-length:")
    if at >= 0:
        await reader.readexactly(int(lower[at + 15 : lower.index(b"\r\n", at)]))
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)  # the chunk and its CRLF (no trailers expected)
            if size == 0:
                break
    else:  # the body ends when the server closes
        await reader.read()
        keep_alive = False
    return status, keep_alive


async def _client(host: str, port: int, requests: list[bytes], offset: int, stats: _Stats) -> None:
    i = offset
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while True:
        if conn is None:
            try:
                conn = await asyncio.open_connection(host, port, limit=1 << 20)
            except OSError:
                stats.socket_errors += stats.measuring
                await asyncio.sleep(0.05)
                continue
        reader, writer = conn
        request = requests[i % len(requests)]
        i += 1
        started = time.perf_counter()
        try:
            # One request in flight per connection, so the write never queues up: no drain.
            writer.write(request)
            status, keep_alive = await _read_response(reader)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            stats.socket_errors += stats.measuring
            writer.close()
            conn = None
            continue
        if stats.measuring:
            stats.latencies.append(time.perf_counter() - started)
            if not 200 <= status < 300:
                stats.non_2xx += 1
        if not keep_alive:
            writer.close()
            conn = None


def _percentile_ms(sorted_s: list[float], q: float) -> float:
    if not sorted_s:
        return math.nan
    return 1000 * sorted_s[max(0, math.ceil(q * len(sorted_s)) - 1)]


async def run(
    url: str, bodies: list[bytes], concurrency: int, warmup: float, duration: float
) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = build_requests(url, bodies)
    stats = _Stats()
    step = max(1, len(requests) // concurrency)
    tasks = [
        asyncio.create_task(_client(host, port, requests, k * step, stats))
        for k in range(concurrency)
    ]
    try:
        await asyncio.sleep(warmup)
        stats.measuring = True
        started = time.perf_counter()
        await asyncio.sleep(duration)
        stats.measuring = False
        seconds = time.perf_counter() - started
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    latencies = sorted(stats.latencies)
    return LoadResult(
        generator="python",
        concurrency=concurrency,
        seconds=seconds,
        requests=len(latencies),
        non_2xx=stats.non_2xx,
        socket_errors=stats.socket_errors,
        p50_ms=_percentile_ms(latencies, 0.50),
        p99_ms=_percentile_ms(latencies, 0.99),
        max_ms=1000 * latencies[-1] if latencies else math.nan,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", type=Path, required=True, help="one JSON body per line")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    bodies = [line.encode() for line in args.bodies.read_text().splitlines() if line.strip()]
    result = asyncio.run(run(args.url, bodies, args.concurrency, args.warmup, args.duration))
    print(json.dumps(result.to_json()))


if __name__ == "__main__":
    main()
