"""Drive a server with `wrk` (Debian's package, installed here when missing).

wrk is closed-loop: -c connections, each sending its next request when the previous answer is in.
One thread (-t1) is enough for these rates and leaves the second core to the server. wrk has no
warm-up option, so a short run is thrown away first. bodies.lua cycles through the same pre-built
bodies as the Python generator and prints the summary as JSON.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
from pathlib import Path

from benchmarks.results import LoadResult

log = logging.getLogger("benchmarks.wrk")

LUA = Path(__file__).with_name("bodies.lua")
TIMEOUT = "30s"  # a slow server's answers count as latency, not as wrk's 2 s default timeout


def ensure_wrk(install: bool = True) -> str | None:
    """The wrk executable, installed with apt-get if missing and allowed; None if unavailable."""
    path = shutil.which("wrk")
    if path or not install:
        return path
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        log.warning("wrk is not installed and apt-get cannot install it here (needs root)")
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install_cmd = ["apt-get", "install", "-y", "-q", "wrk"]
    log.info("installing wrk: %s", " ".join(install_cmd))
    if subprocess.run(install_cmd, env=env, capture_output=True, timeout=300).returncode != 0:
        # A fresh machine has no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300)
        done = subprocess.run(install_cmd, env=env, capture_output=True, timeout=300)
        if done.returncode != 0:
            log.warning("apt-get could not install wrk:\n%s", done.stderr.decode()[-2000:])
            return None
    return shutil.which("wrk")


def _wrk(wrk: str, url: str, bodies: Path, concurrency: int, seconds: int) -> str:
    argv = [
        wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", TIMEOUT,
        "-s", str(LUA), url, "--", str(bodies),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def run(
    wrk: str, url: str, bodies: Path, concurrency: int, warmup: float, duration: float
) -> LoadResult:
    if warmup > 0:
        _wrk(wrk, url, bodies, concurrency, max(1, math.ceil(warmup)))
    out = _wrk(wrk, url, bodies, concurrency, max(1, math.ceil(duration)))
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out[-2000:]}")
    s = json.loads(line.removeprefix("WRK_JSON "))

    def ms(us: float) -> float:
        # No answer in the whole run: no latency to report (wrk would say 0).
        return math.nan if s["requests"] == 0 else us / 1000

    return LoadResult(
        generator="wrk",
        concurrency=concurrency,
        seconds=s["duration_us"] / 1e6,
        requests=s["requests"],
        non_2xx=s["status"],  # wrk counts answers with status >= 400
        socket_errors=s["connect"] + s["read"] + s["write"] + s["timeout"],
        p50_ms=ms(s["p50_us"]),
        p99_ms=ms(s["p99_us"]),
        max_ms=ms(s["max_us"]),
    )
