"""`make bench`: the gateway against the HTTP floor and MLflow's own servers, on this machine.

    python -m benchmarks.run [--duration 10] [--warmup 3] [--generator auto|wrk|python]

1. Starts a temporary `mlflow server` (SQLite in a temp dir, free port), trains a small demo model
   with the project's pipeline, registers it behind an alias, and logs the same Keras network with
   MLflow's own Keras flavor (benchmarks/models.py, a child process).
2. Micro-benchmarks the wrapper in a child process (benchmarks/micro.py).
3. Starts, in turn and alone on the machine, the floor (d), the gateway (a), `mlflow models serve`
   of the same version (b) and of the Keras flavor (c); drives each with a closed-loop generator
   in its own process at concurrency 1, 16, 64 (the gateway also 256), sampling the server tree's
   RSS and the machine's CPU; stops it before starting the next.
4. Prints the table, the ratios and the targets, and writes BENCHMARKS.md at the repository root.

Every process it starts is stopped on success, failure, Ctrl+C, SIGTERM or the time limit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import procs, report, wrk
from benchmarks.cpu import CpuMark, CpuShare, background_cores
from benchmarks.results import LoadResult, Measured, ServerResult
from benchmarks.servers import ServerSpec, probe, server_specs

log = logging.getLogger("benchmarks")

ROOT = Path(__file__).resolve().parents[1]
# Generator comparison against the floor: at 1 the generator's own latency is on the critical
# path, at 64 its CPU competes with the server's.
COMPARE_AT = (1, 64)
QUIET_CORES = 0.3  # machine busier than this before a run: wait a little for others to finish
QUIET_WAIT_S = 15.0  # per run
QUIET_WAIT_TOTAL_S = 120.0  # per benchmark: a machine that stays busy is measured anyway


class Aborted(Exception):
    """SIGTERM or the overall time limit: stop everything, write nothing."""


@dataclass
class Context:
    args: argparse.Namespace
    workdir: Path
    env: dict[str, str]
    generator: str = "python"  # "wrk" or "python"
    wrk_path: str | None = None
    started: float = field(default_factory=time.monotonic)
    children: list[procs.Child] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    waited_s: float = 0.0  # waiting for a quiet machine, all runs together
    busy_runs: list[float] = field(default_factory=list)  # other processes' cores, per run
    repeats_left: int = 0  # runs disturbed by other processes that may still be repeated
    repeated: int = 0
    predictions: dict[str, float] = field(default_factory=dict)

    def progress(self, message: str) -> None:
        print(f"== [{time.monotonic() - self.started:5.0f} s] {message}", flush=True)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> procs.Child:
        child = procs.start(name, argv, env or self.env, self.workdir, ROOT)
        self.children.append(child)
        return child

    def stop(self, child: procs.Child) -> None:
        child.stop()
        if child in self.children:
            self.children.remove(child)


def wait_for_quiet(ctx: Context) -> float:
    """Wait (bounded) until the machine is idle; others' work would skew the numbers."""
    started = time.monotonic()
    deadline = started + min(QUIET_WAIT_S, max(0.0, QUIET_WAIT_TOTAL_S - ctx.waited_s))
    busy = background_cores()
    while busy > QUIET_CORES and time.monotonic() < deadline:
        busy = background_cores()
    ctx.waited_s += time.monotonic() - started
    if busy > QUIET_CORES:
        log.warning("the machine is busy (%.2f cores) before a run; measuring anyway", busy)
    return busy


# --- load -----------------------------------------------------------------------------------


def drive(ctx: Context, generator: str, url: str, bodies: Path, concurrency: int) -> LoadResult:
    warmup, duration = ctx.args.warmup, ctx.args.duration
    if generator == "wrk":
        assert ctx.wrk_path is not None
        return wrk.run(ctx.wrk_path, url, bodies, concurrency, warmup, duration)
    argv = [
        sys.executable, "-m", "benchmarks.loadgen", "--url", url, "--bodies", str(bodies),
        "--concurrency", str(concurrency), "--warmup", str(warmup), "--duration", str(duration),
    ]  # fmt: skip
    done = subprocess.run(
        argv, cwd=ROOT, env=ctx.env, capture_output=True, text=True, timeout=warmup + duration + 60
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    return LoadResult.from_json(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(
    ctx: Context, child: procs.Child, generator: str, url: str, bodies: Path, concurrency: int
) -> Measured:
    """One run; repeated (a bounded number of times per benchmark) when other processes took
    CPU meanwhile, keeping the least disturbed of the tries."""
    best = measure_once(ctx, child, generator, url, bodies, concurrency)
    while best.other_cores > QUIET_CORES and ctx.repeats_left > 0:
        ctx.repeats_left -= 1
        ctx.repeated += 1
        ctx.progress(f"  other processes took {best.other_cores:.2f} cores: once more")
        again = measure_once(ctx, child, generator, url, bodies, concurrency)
        best = min(best, again, key=lambda m: m.other_cores)
    ctx.busy_runs.append(best.other_cores)
    return best


def measure_once(
    ctx: Context, child: procs.Child, generator: str, url: str, bodies: Path, concurrency: int
) -> Measured:
    wait_for_quiet(ctx)
    sampler = procs.RssSampler(child.pid)
    before = CpuMark.now(child.pid)
    with sampler.running():
        load = drive(ctx, generator, url, bodies, concurrency)
    cpu = CpuShare.between(before, CpuMark.now(child.pid))
    if not child.alive():
        raise RuntimeError(f"{child.name} died under load:\n{child.log_tail()}")
    m = Measured(
        load=load,
        peak_rss_bytes=sampler.peak,
        server_cores=cpu.server,
        generator_cores=cpu.generator,
        other_cores=cpu.other,
    )
    ctx.progress(
        f"  {child.name:8} c={concurrency:<3} {load.rps:9.1f} req/s  p50 {load.p50_ms:7.2f} ms  "
        f"p99 {load.p99_ms:7.2f} ms  errors {load.errors}  RSS {sampler.peak / 2**20:.0f} MiB  "
        f"CPU server {m.server_cores:.2f} gen {m.generator_cores:.2f} other {m.other_cores:.2f}"
    )
    return m


# --- servers --------------------------------------------------------------------------------


def bench_server(
    ctx: Context, spec: ServerSpec, port: int, compare: bool
) -> tuple[ServerResult, str]:
    result = ServerResult(spec.key, spec.label, spec.shown)
    ctx.progress(f"starting {spec.key}: {spec.shown}")
    child = ctx.start(spec.key, spec.argv, spec.env)
    generator_note = ""
    try:
        result.startup_s = procs.wait_until(
            child, lambda: spec.ready(port), spec.ready_timeout, "readiness"
        )
        url = f"http://127.0.0.1:{port}{spec.predict_path}"
        result.probe = describe_probe(ctx, spec.key, probe(spec, url))
        result.idle_rss_bytes = procs.tree_rss_bytes(child.pid)
        result.idle_rss_detail = procs.tree_rss_detail(child.pid)
        ctx.progress(
            f"{spec.key} ready in {result.startup_s:.1f} s, idle RSS "
            f"{result.idle_rss_bytes / 2**20:.0f} MiB; {result.probe}"
        )
        if compare:
            generator_note = choose_generator(ctx, child, url, spec.bodies)
        result.runs = [
            measure(ctx, child, ctx.generator, url, spec.bodies, c) for c in spec.concurrency
        ]
    finally:
        ctx.stop(child)
    return result, generator_note


def describe_probe(ctx: Context, key: str, value: float | None) -> str:
    if value is None:
        return "Answers 200 to a real request."
    ctx.predictions[key] = value
    text = f"First window's answer: {value:.6g}"
    if key == "serve" and "gateway" in ctx.predictions:
        # The same registered version behind both: the same answer, or the comparison is moot.
        gw = ctx.predictions["gateway"]
        same = abs(value - gw) <= 1e-6 * max(1.0, abs(gw))
        text += f" ({'the same as' if same else 'DIFFERENT from'} the gateway's {gw:.6g})"
        if not same:
            ctx.warnings.append(f"(b) and the gateway disagree on the same window: {value} vs {gw}")
    return text + "."


def choose_generator(ctx: Context, child: procs.Child, url: str, bodies: Path) -> str:
    """Both generators against the floor; the one that reaches the higher rate drives the rest."""
    if ctx.args.generator != "auto" or ctx.wrk_path is None:
        why = "asked for" if ctx.args.generator != "auto" else "wrk unavailable"
        return f"{ctx.generator} ({why}; no comparison run)."
    ctx.progress("comparing the load generators against the floor")
    rates: dict[str, list[Measured]] = {"wrk": [], "python": []}
    for c in COMPARE_AT:
        for generator in rates:
            rates[generator].append(measure(ctx, child, generator, url, bodies, c))
    total = {g: sum(m.load.rps for m in ms) for g, ms in rates.items()}
    ctx.generator = max(total, key=lambda g: (total[g], g == "wrk"))
    detail = "; ".join(
        f"{g}: "
        + ", ".join(
            f"{m.load.rps:.0f} req/s at c={m.load.concurrency} using "
            f"{1000 * m.generator_cores / m.load.rps:.3f} ms of CPU per request"
            for m in ms
        )
        for g, ms in rates.items()
    )
    names = {"wrk": "wrk (Debian package, 1 thread, Lua script)",
             "python": "the Python asyncio generator (benchmarks/loadgen.py)"}  # fmt: skip
    note = (
        f"{names[ctx.generator]}, chosen because its rates against the floor at concurrency "
        f"{' and '.join(map(str, COMPARE_AT))} added up to more ({detail}). "
        "The floor's rate is bounded by the 2 cores that the server and the generator share, so "
        "the generator that costs less CPU per request leaves more to the server."
    )
    ctx.progress(f"load generator: {ctx.generator} ({detail})")
    return note


# --- set-up ---------------------------------------------------------------------------------


def start_registry(ctx: Context) -> str:
    from scripts.local_registry import start_mlflow_server, wait_until_healthy

    port = procs.free_port()
    uri = f"http://127.0.0.1:{port}"
    ctx.progress(f"starting a temporary mlflow server at {uri} (first start takes ~40 s)")
    log_path = ctx.workdir / "registry.log"
    process = start_mlflow_server(ctx.workdir / "mlflow", "127.0.0.1", port, log_path, detach=True)
    ctx.children.append(procs.Child("registry", process, log_path))
    wait_until_healthy(uri, timeout=300, process=process)
    return uri


def run_child(ctx: Context, name: str, argv: list[str], timeout: float) -> None:
    log_path = ctx.workdir / f"{name}.log"
    with open(log_path, "wb") as out:
        done = subprocess.run(
            argv, cwd=ROOT, env=ctx.env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
        )
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{name} failed ({done.returncode}); its log ends with:\n{tail}")


# --- main -----------------------------------------------------------------------------------


@contextlib.contextmanager
def abort_on_signals(limit_s: int) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        name = "the time limit" if signum == signal.SIGALRM else signal.Signals(signum).name
        raise Aborted(f"stopped by {name}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGALRM)}
    # Ctrl+C raises KeyboardInterrupt even when started in the background (SIGINT ignored).
    old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.alarm(limit_s)
    try:
        yield
    finally:
        signal.alarm(0)
        for s, h in old.items():
            signal.signal(s, h)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--candles", type=int, default=3000)
    parser.add_argument(
        "--serve-workers",
        type=int,
        default=None,
        help="--workers for mlflow models serve (default: its own default, 1)",
    )
    parser.add_argument("--servers", default="floor,gateway,serve,keras")
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="disturbed runs that may be repeated, in all (default 5)",
    )
    parser.add_argument("--no-micro", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="also save the raw results here")
    parser.add_argument(
        "--from-json",
        type=Path,
        help="measure nothing: rewrite --output from results saved by --json",
    )
    parser.add_argument("--time-limit", type=int, default=900, help="seconds for everything")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    return parser.parse_args(argv)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.from_json:
        publish(json.loads(args.from_json.read_text()), args.output)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="btc-bench-"))
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        # `mlflow models serve` runs `uvicorn` by name: it must be this venv's.
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        # A dead registry should fail in seconds, not after minutes of retries.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    }
    ctx = Context(args, workdir, env, repeats_left=args.repeats)
    failed = False
    try:
        with abort_on_signals(args.time_limit):
            failed = run(ctx)
    except (KeyboardInterrupt, Aborted) as e:
        print(f"\n== interrupted ({str(e) or 'Ctrl+C'}): stopping everything", file=sys.stderr)
        failed = True
        return 130
    except Exception:
        failed = True
        raise
    finally:
        for child in reversed(ctx.children):
            child.stop()
        if failed or args.keep_workdir:
            print(f"== logs and data kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def run(ctx: Context) -> bool:
    """Everything; True when some part failed (the report is still written)."""
    args = ctx.args
    machine = report.machine_info(ROOT)
    if args.generator in ("auto", "wrk"):
        ctx.wrk_path = wrk.ensure_wrk(install=True)
        if ctx.wrk_path is None and args.generator == "wrk":
            raise RuntimeError("wrk is not available and could not be installed")
        machine["wrk"] = report._wrk_version()
    ctx.generator = "wrk" if args.generator == "wrk" else "python"
    if args.generator == "auto" and ctx.wrk_path:
        ctx.generator = "wrk"  # until the comparison says otherwise

    uri = start_registry(ctx)
    ctx.env["MLFLOW_TRACKING_URI"] = uri
    ctx.progress(
        f"training and registering the demo model ({args.epochs} epochs, short on purpose)"
    )
    run_child(
        ctx, "models",
        [sys.executable, "-m", "benchmarks.models", "--out", str(ctx.workdir),
         "--epochs", str(args.epochs), "--candles", str(args.candles)],
        timeout=600,
    )  # fmt: skip
    setup = json.loads((ctx.workdir / "models.json").read_text())
    ctx.progress(
        f"registered {setup['model_name']} v{setup['version']} @{setup['alias']} and "
        f"{setup['keras_model_name']} v{setup['keras_version']}"
    )

    micro: list[dict[str, Any]] = []
    if not args.no_micro:
        ctx.progress("micro-benchmark of the wrapper (in-process)")
        micro_out = ctx.workdir / "micro.json"
        try:
            run_child(
                ctx, "micro",
                [sys.executable, "-m", "benchmarks.micro", "--setup", str(ctx.workdir),
                 "--out", str(micro_out)],
                timeout=300,
            )  # fmt: skip
            micro = json.loads(micro_out.read_text())
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            # The servers can still be measured; the report says what is missing.
            log.error("micro-benchmark failed: %s", e)
            ctx.warnings.append(f"the micro-benchmark failed: {str(e)[:300]}")

    results: dict[str, ServerResult] = {}
    generator_note = ""
    failed = False
    port = procs.free_port()
    wanted = args.servers.split(",")
    specs = server_specs(setup, ctx.workdir, ctx.env, port, args.serve_workers)
    for spec in [s for s in specs if s.key in wanted]:
        try:
            result, note = bench_server(ctx, spec, port, compare=spec.key == "floor")
        except (KeyboardInterrupt, Aborted):
            raise
        except Exception as e:
            failed = True
            log.error("%s could not be benchmarked: %s", spec.key, e)
            ctx.warnings.append(f"{spec.key} could not be benchmarked: {str(e)[:300]}")
            continue
        results[spec.key] = result
        generator_note = generator_note or note
    if not generator_note:
        generator_note = f"{ctx.generator}."

    busy = [c for c in ctx.busy_runs if c > QUIET_CORES]
    if ctx.repeated:
        ctx.warnings.append(
            f"{ctx.repeated} runs were repeated because other processes took CPU meanwhile; "
            "the table keeps the least disturbed try of each."
        )
    if busy:
        ctx.warnings.append(
            f"Other processes on the machine still used more than {QUIET_CORES} cores during "
            f"{len(busy)} of {len(ctx.busy_runs)} runs (up to {max(busy):.2f}; see the "
            '"other CPU" column): those rates are low and their latencies high. Rerun '
            '`make bench` on a quiet machine to compare; "CPU ms/req" is the least disturbed.'
        )
    data = {
        "machine": machine, "setup": setup, "generator_note": generator_note,
        "method": {"warmup": args.warmup, "duration": args.duration}, "micro": micro,
        "warnings": ctx.warnings, "results": {k: r.to_json() for k, r in results.items()},
    }  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    publish(data, args.output)
    ctx.progress(f"wrote {args.output}")
    if args.strict and any(t.ok is False for t in report.targets(results)):
        failed = True
    return failed


def publish(data: dict[str, Any], output: Path) -> None:
    """Print the table, the ratios and the targets; write BENCHMARKS.md (also from --json)."""
    results = {k: ServerResult.from_json(r) for k, r in data["results"].items()}
    print()
    print(report.console_report(results))
    for warning in data["warnings"]:
        print(f"note: {warning}")
    text = report.markdown(
        data["machine"], data["setup"], results, data["generator_note"], data["method"],
        data["micro"], data["warnings"],
    )  # fmt: skip
    # The profile behind the numbers is written by hand (py-spy runs are not automated):
    # kept in benchmarks/PROFILE.md and appended, so a new run does not lose it.
    profile = Path(__file__).with_name("PROFILE.md")
    if profile.exists():
        text = text.rstrip("\n") + "\n\n" + profile.read_text()
    output.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
