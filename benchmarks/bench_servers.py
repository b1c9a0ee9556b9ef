"""The servers step: each server in turn, started alone, looked at, driven at each of its
concurrencies, (the floor) used to pick the load generator, (the gateway) profiled, stopped."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from benchmarks import procs, profile
from benchmarks.drive import Driver, choose_generator, describe
from benchmarks.quiet import Quiet
from benchmarks.results import Measured, ServerResult
from benchmarks.servers import ServerSpec, probe, read_runtime

log = logging.getLogger("benchmarks")

PROFILE_AT = (1, 64)
# Servers of the same registered version as the gateway, which must give its answer ((c) is the
# bare network: scaled outputs).
SAME_ANSWER = frozenset(("gateway-shadow", "gateway-oip", "gateway-w2", "serve"))
Say = Callable[[str], None]


@contextlib.contextmanager
def serving(
    spec: ServerSpec, children: procs.Children, port: int, say: Say
) -> Iterator[tuple[procs.Child, float]]:
    """The server started and ready (with the seconds that took), stopped on leaving."""
    say(f"starting {spec.key}: {spec.shown}")
    child = children.start(spec.key, spec.argv, spec.env)
    try:
        ready = procs.wait_until(child, lambda: spec.ready(port), spec.ready_timeout, "readiness")
        yield child, ready
    finally:
        children.stop(child)


def first_look(
    spec: ServerSpec, child: procs.Child, port: int, startup_s: float, gateway: ServerResult | None
) -> tuple[ServerResult, list[str]]:
    """Before the load: one real request, what serves, the idle memory."""
    result = ServerResult(spec.key, spec.label, spec.shown, startup_s=startup_s)
    result.prediction = probe(spec, f"http://127.0.0.1:{port}{spec.predict_path}")
    result.runtime = read_runtime(port) if spec.runtime_field else ""
    result.idle_rss_bytes = procs.tree_rss_bytes(child.pid)
    result.idle_rss_detail = procs.tree_rss_detail(child.pid)
    notes = []
    if result.prediction is None:
        result.probe = "Answers 200 to a real request."
    else:
        result.probe = f"First window's answer: {result.prediction:.6g}"
        if spec.key in SAME_ANSWER and gateway is not None and gateway.prediction is not None:
            # The same registered version behind both: the same answer, or the comparison is moot.
            gw = gateway.prediction
            same = abs(result.prediction - gw) <= 1e-6 * max(1.0, abs(gw))
            result.probe += (
                f" ({'the same as' if same else 'DIFFERENT from'} the gateway's {gw:.6g})"
            )
            if not same:
                notes.append(
                    f"{spec.key} and the gateway disagree on one window: {result.prediction} "
                    f"vs {gw}"
                )
        result.probe += "."
    return result, notes


def profile_gateway(
    driver: Driver, child: procs.Child, url: str, bodies: Path, seconds: int, workdir: Path,
    say: Say,
) -> list[profile.Profile]:  # fmt: skip
    profiles = []
    for c in PROFILE_AT:
        say(f"  py-spy on {child.name} at c={c} for {seconds} s")
        out = workdir / f"py-spy-{child.name}-c{c}.txt"
        p = profile.record(child, driver, url, bodies, c, seconds, out)
        if p.error:
            log.error("profile at c=%d: %s", c, p.error)
        profiles.append(p)
    return profiles


def measure_runs(
    driver: Driver, child: procs.Child, url: str, spec: ServerSpec, quiet: Quiet, say: Say
) -> list[Measured]:
    runs = []
    for c in spec.concurrency:
        m = quiet.least_disturbed(partial(driver.measure, child, url, spec.bodies, c), say)
        say(describe(child, m))
        runs.append(m)
    return runs


@dataclass
class ServerRuns:
    """What the servers step gives the report."""

    results: dict[str, ServerResult]
    generator_note: str
    profiles: list[profile.Profile]
    notes: list[str]
    failed: bool


def bench_servers(
    specs: list[ServerSpec], port: int, driver: Driver, compare: bool, profile_seconds: int,
    quiet: Quiet, children: procs.Children, workdir: Path, say: Say,
) -> ServerRuns:  # fmt: skip
    """Every server in `specs`, in order. `compare`: pick the generator against the floor (the
    driver's otherwise); `profile_seconds`: py-spy on the gateway (0: not)."""
    out = ServerRuns({}, "", [], [], False)
    for spec in specs:
        url = f"http://127.0.0.1:{port}{spec.predict_path}"
        try:
            with serving(spec, children, port, say) as (child, startup_s):
                result, notes = first_look(spec, child, port, startup_s, out.results.get("gateway"))
                out.notes += notes
                say(f"{spec.key} ready in {startup_s:.1f} s, idle RSS "
                    f"{result.idle_rss_bytes / 2**20:.0f} MiB; {result.probe}")  # fmt: skip
                if spec.key == "floor" and compare:
                    say("comparing the load generators against the floor")
                    driver, out.generator_note = choose_generator(
                        driver, child, url, spec.bodies, quiet, say
                    )
                result.runs = measure_runs(driver, child, url, spec, quiet, say)
                if spec.key == "gateway" and profile_seconds > 0:
                    out.profiles = profile_gateway(
                        driver, child, url, spec.bodies, profile_seconds, workdir, say
                    )
        except Exception as e:  # Ctrl+C, SIGTERM and the time limit are not Exceptions
            out.failed = True
            log.error("%s could not be benchmarked: %s", spec.key, e)
            out.notes.append(f"{spec.key} could not be benchmarked: {str(e)[:300]}")
            continue
        out.results[spec.key] = result
    return out
