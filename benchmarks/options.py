"""The command line of `make bench` (`python -m benchmarks.run --help`)."""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.targets import BASELINE

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("floor", "gateway", "gateway-shadow", "gateway-oip", "gateway-w2", "serve", "keras")


@dataclass(frozen=True)
class Options:
    duration: float
    warmup: float
    generator: str
    epochs: int
    candles: int
    serve_workers: int | None
    servers: tuple[str, ...]
    repeats: int
    micro: bool
    micro_budget: float
    score_windows: int
    spark_master: str
    profile_seconds: int
    output: Path
    json: Path | None
    from_json: Path | None
    baseline: Path
    time_limit: int
    keep_workdir: bool
    strict: bool
    quick: bool


# --quick: every step, just long enough to show that it works.
QUICK = {"duration": 2.0, "warmup": 1.0, "epochs": 1, "candles": 600, "repeats": 0,
         "micro_budget": 0.2, "profile_seconds": 2, "score_windows": 2000}  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--quick",
        action="store_true",
        help="smoke run: every step with short runs, a 1-epoch model, no repeats; writes "
        "BENCHMARKS.quick.md in the temp directory unless --output is given",
    )
    add("--duration", type=float, default=10.0, help="measured seconds per run")
    add("--warmup", type=float, default=3.0, help="seconds before measuring")
    add("--generator", choices=("auto", "wrk", "python"), default="auto")
    add("--epochs", type=int, default=3)
    add("--candles", type=int, default=3000)
    add(
        "--serve-workers",
        type=int,
        default=None,
        help="--workers for mlflow models serve (default: its own default, 1)",
    )
    add("--servers", default=",".join(SERVERS), help=f"some of {','.join(SERVERS)}")
    add(
        "--repeats",
        type=int,
        default=5,
        help="disturbed runs that may be repeated, in all (default 5)",
    )
    add("--no-micro", action="store_true")
    add("--micro-budget", type=float, default=2.0, help="seconds per micro-benchmark case")
    add(
        "--score-windows",
        type=int,
        default=100_000,
        help="windows the `score` entry point scores on Spark (0: not measured)",
    )
    add("--spark-master", default="local[2]", help="Spark master for the score benchmark")
    add(
        "--profile-seconds",
        type=int,
        default=8,
        help="py-spy seconds on the gateway at each of c=1 and c=64 (0: no profile)",
    )
    add("--output", type=Path, default=None, help="default: BENCHMARKS.md at the repository root")
    add("--json", type=Path, help="also save the raw results here")
    add(
        "--from-json",
        type=Path,
        help="measure nothing: rewrite --output from results saved by --json",
    )
    add("--baseline", type=Path, default=BASELINE, help="the run the targets compare against")
    add("--time-limit", type=int, default=1200, help="seconds for everything (then all stops)")
    add("--keep-workdir", action="store_true")
    add("--strict", action="store_true", help="exit 1 when a target fails")
    return parser  # fmt: skip


def parse_args(argv: list[str] | None, description: str | None = None) -> Options:
    parser = _parser()
    parser.description = description
    if parser.parse_known_args(argv)[0].quick:
        parser.set_defaults(**QUICK)  # what is given on the command line still wins
    args = parser.parse_args(argv)
    servers = tuple(s for s in args.servers.split(",") if s)
    if unknown := set(servers) - set(SERVERS):
        parser.error(f"unknown servers: {', '.join(sorted(unknown))} (known: {', '.join(SERVERS)})")
    quick_output = Path(tempfile.gettempdir()) / "BENCHMARKS.quick.md"
    output = args.output or (quick_output if args.quick else ROOT / "BENCHMARKS.md")
    values = {k: v for k, v in vars(args).items() if k not in ("no_micro", "output", "servers")}
    return Options(**values, micro=not args.no_micro, output=output, servers=servers)
