"""`make bench`: the gateway against the HTTP floor and MLflow's own servers, on this machine.

    python -m benchmarks.run [--duration 10] [--warmup 3] [--generator auto|wrk|python]
    python -m benchmarks.run --quick     (a smoke run: every step, a few seconds each)

1. Starts a temporary `mlflow server` (SQLite in a temp dir, free port), trains a small demo model
   with the project's pipeline, registers it behind an alias, and logs the same Keras network with
   MLflow's own Keras flavor (benchmarks/models.py, a child process).
2. Micro-benchmarks the wrapper in a child process (benchmarks/micro.py).
3. Starts, in turn and alone on the machine, the floor (d), the gateway (a), the gateway with its
   shadow on (a-s), the gateway's batch route (a-v2), the gateway with two uvicorn workers (a2),
   `mlflow models serve` of the same version (b) and of the Keras flavor (c); drives each
   with a closed-loop generator in its own process at several concurrencies,
   sampling the server tree's RSS and the machine's CPU; stops it before starting the next.
   Against the floor it first picks the generator; the gateway is then also profiled with py-spy
   at concurrency 1 and 64 (benchmarks/profile.py).
4. Scores 100,000 windows with the `score` entry point's job on an embedded Spark
   (benchmarks/batch.py).
5. Prints the tables, the ratios and the targets, and writes BENCHMARKS.md at the
   repository root (benchmarks/markdown.py, then benchmarks/PROFILE.md as written by hand).

Every process it starts is stopped on success, failure, Ctrl+C, SIGTERM or the time limit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from benchmarks import procs
from benchmarks.bench_servers import bench_servers
from benchmarks.machine import machine_info
from benchmarks.markdown import benchmarks_md
from benchmarks.options import ROOT, Options, parse_args
from benchmarks.prepare import (
    batch_benchmark,
    bench_env,
    first_driver,
    micro_benchmark,
    start_registry,
    train_models,
)
from benchmarks.quiet import Quiet
from benchmarks.report import Run, console
from benchmarks.servers import server_specs
from benchmarks.targets import load_baseline
from scripts.local_registry import free_port

HAND_WRITTEN = Path(__file__).with_name("PROFILE.md")


class Aborted(BaseException):
    """SIGTERM or the overall time limit: stop everything, write nothing (like Ctrl+C, not an
    Exception, so that no step takes it for its own failure)."""


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"== [{time.monotonic() - self.started:5.0f} s] {message}", flush=True)


def publish(run: Run, output: Path) -> None:
    """Print the summary; write BENCHMARKS.md (also from --from-json)."""
    print()
    print(console(run))
    hand_written = HAND_WRITTEN.read_text() if HAND_WRITTEN.exists() else ""
    output.write_text(benchmarks_md(run, hand_written))


def run(options: Options, workdir: Path, children: procs.Children, say: Progress) -> bool:
    """Every step; True when some part failed (the report is still written)."""
    env = bench_env()
    driver = first_driver(options, env)
    machine = machine_info(ROOT)  # after wrk is installed: it names wrk's version
    env["MLFLOW_TRACKING_URI"] = start_registry(children, workdir, say)
    setup = train_models(options, env, workdir, say)
    micro, notes = micro_benchmark(options, env, workdir, say) if options.micro else ([], [])

    quiet = Quiet(repeats_left=options.repeats, wait_left_s=0.0 if options.quick else 120.0)
    port = free_port()
    specs = server_specs(setup, workdir, env, port, options.serve_workers)
    wanted = [s for s in specs if s.key in options.servers]
    compare = options.generator == "auto" and driver.wrk_path is not None
    servers = bench_servers(
        wanted, port, driver, compare, options.profile_seconds, quiet, children, workdir, say
    )
    batch, batch_notes = (
        batch_benchmark(options, env, workdir, say) if options.score_windows > 0 else ([], [])
    )
    why = "asked for" if options.generator != "auto" else "wrk unavailable"
    generator_note = servers.generator_note or f"{driver.generator} ({why}; no comparison run)."

    method = {"warmup": options.warmup, "duration": options.duration, "quick": options.quick}
    record = Run(
        machine, setup, method, generator_note, servers.results,
        load_baseline(options.baseline), micro, servers.profiles,
        notes + servers.notes + batch_notes + quiet.notes(), batch,
    )  # fmt: skip
    if options.json:
        options.json.write_text(json.dumps(record.to_json(), indent=2))
    publish(record, options.output)
    say(f"wrote {options.output}")
    return servers.failed or (options.strict and any(t.ok is False for t in record.targets))


# --- the command ----------------------------------------------------------------------------


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


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv, __doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if options.from_json:
        publish(Run.from_json(json.loads(options.from_json.read_text())), options.output)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="btc-bench-"))
    children = procs.Children(workdir, ROOT)
    failed = True
    try:
        with abort_on_signals(options.time_limit):
            failed = run(options, workdir, children, Progress())
    except (KeyboardInterrupt, Aborted) as e:
        print(f"\n== interrupted ({str(e) or 'Ctrl+C'}): stopping everything", file=sys.stderr)
        return 130
    finally:
        children.stop_all()
        if failed or options.keep_workdir:
            print(f"== logs and data kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
