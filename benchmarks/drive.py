"""One closed-loop run against a running server, measured: the load generator's figures, the
server tree's peak RSS and where the machine's CPU went meanwhile. And the choice of generator."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from benchmarks import wrk
from benchmarks.cpu import CpuMark, CpuShare
from benchmarks.procs import Child, RssSampler
from benchmarks.quiet import Quiet
from benchmarks.results import LoadResult, Measured

ROOT = Path(__file__).resolve().parents[1]
# Generator comparison against the floor: at 1 the generator's own latency is on the critical
# path, at 64 its CPU competes with the server's.
COMPARE_AT = (1, 64)
NAMES = {
    "wrk": "wrk (Debian package, 1 thread, Lua script)",
    "python": "the Python asyncio generator (benchmarks/loadgen.py)",
}


@dataclass(frozen=True)
class Driver:
    """How every run is driven: which generator, and for how long."""

    generator: str  # "wrk" or "python"
    warmup: float
    duration: float
    env: dict[str, str]
    wrk_path: str | None = None

    def load(self, url: str, bodies: Path, concurrency: int) -> LoadResult:
        if self.generator == "wrk":
            assert self.wrk_path is not None
            return wrk.run(self.wrk_path, url, bodies, concurrency, self.warmup, self.duration)
        argv = [
            sys.executable, "-m", "benchmarks.loadgen", "--url", url, "--bodies", str(bodies),
            "--concurrency", str(concurrency), "--warmup", str(self.warmup),
            "--duration", str(self.duration),
        ]  # fmt: skip
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=self.warmup + self.duration + 60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
        return LoadResult.from_json(json.loads(done.stdout.strip().splitlines()[-1]))

    def measure(self, child: Child, url: str, bodies: Path, concurrency: int) -> Measured:
        """One run, with the server tree's RSS sampled and the machine's CPU accounted."""
        sampler = RssSampler(child.pid)
        before = CpuMark.now(child.pid)
        with sampler.running():
            load = self.load(url, bodies, concurrency)
        cpu = CpuShare.between(before, CpuMark.now(child.pid))
        if not child.alive():
            raise RuntimeError(f"{child.name} died under load:\n{child.log_tail()}")
        return Measured(
            load=load,
            peak_rss_bytes=sampler.peak,
            server_cores=cpu.server,
            generator_cores=cpu.generator,
            other_cores=cpu.other,
        )


def describe(child: Child, m: Measured) -> str:
    load = m.load
    return (
        f"  {child.name:10} c={load.concurrency:<3} {load.rps:9.1f} req/s  "
        f"p50 {load.p50_ms:7.2f} ms  p99 {load.p99_ms:7.2f} ms  errors {load.errors}  "
        f"RSS {m.peak_rss_bytes / 2**20:.0f} MiB  CPU server {m.server_cores:.2f} "
        f"gen {m.generator_cores:.2f} other {m.other_cores:.2f}"
    )


def choose_generator(
    driver: Driver,
    child: Child,
    url: str,
    bodies: Path,
    quiet: Quiet,
    say: Callable[[str], None],
) -> tuple[Driver, str]:
    """Both generators against the floor: the one that reaches the higher rates drives the
    rest. Returns that driver and the report's sentence on the choice."""
    rates: dict[str, list[Measured]] = {"wrk": [], "python": []}
    for c in COMPARE_AT:
        for generator, runs in rates.items():
            trial = replace(driver, generator=generator)
            m = quiet.least_disturbed(partial(trial.measure, child, url, bodies, c), say)
            say(describe(child, m) + f" ({generator})")
            runs.append(m)
    total = {g: sum(m.load.rps for m in runs) for g, runs in rates.items()}
    chosen = max(total, key=lambda g: (total[g], g == "wrk"))
    detail = "; ".join(
        f"{g}: "
        + ", ".join(
            f"{m.load.rps:.0f} req/s at c={m.load.concurrency} using "
            f"{1000 * m.generator_cores / max(m.load.rps, 1e-9):.3f} ms of CPU per request"
            for m in runs
        )
        for g, runs in rates.items()
    )
    say(f"load generator: {chosen} ({detail})")
    note = (
        f"{NAMES[chosen]}, chosen because its rates against the floor at concurrency "
        f"{' and '.join(map(str, COMPARE_AT))} added up to more ({detail}). "
        "The floor's rate is bounded by the 2 cores that the server and the generator share, so "
        "the generator that costs less CPU per request leaves more to the server."
    )
    return replace(driver, generator=chosen), note
