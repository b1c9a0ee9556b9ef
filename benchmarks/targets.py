"""The targets, each from one run: the gateway (1 worker) against the HTTP floor at the same
concurrency, against the anchors (MLflow's own servers) as the baseline run measured them, with
its shadow on against off, and its peak RSS against the baseline's; the in-process pyfunc's
windows/s on 1,000 windows against a fixed bound; and, reported beside their bounds, the batch
route's and `score`'s windows/s."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.results import Measured, ServerResult

OIP_BATCH = 64  # benchmarks.models' windows per batch-route request
BASELINE = Path(__file__).with_name("baseline.json")
MiB = 1024 * 1024
# Run-to-run noise on a shared VM: rates vary by up to ~20%, so a ratio of two rates more.
ANCHOR_SLACK = 0.8  # the lead over an anchor may fall to this fraction of the baseline's
RSS_SLACK = 1.02  # RSS varies by a few MiB between runs of the same code
SHORT = {
    "gateway": "(a) gateway",
    "gateway-shadow": "(a-s) gateway, shadow on",
    "gateway-oip": "(a-v2) gateway, batch route",
    "gateway-w2": "(a2) gateway, 2 workers",
    "serve": "(b) mlflow serve",
    "keras": "(c) keras flavor",
    "floor": "(d) floor",
}


PYFUNC_BULK = 1000  # windows per call for the in-process throughput target
PYFUNC_WINDOWS_PER_S = 150_000
PYFUNC_CASE = "pyfunc predict (mlflow.pyfunc.load_model; the checked path)"
UNCHECKED_CASE = "wrapper forecast_unchecked (what the gateway calls)"


@dataclass(frozen=True)
class Target:
    text: str
    measured: str
    ratio: str
    limit: str
    ok: bool | None  # None: not measured (or, when `reported`, a figure with no pass/fail)
    reported: bool = False


def load_baseline(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text())) if path.exists() else {}


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def cpu_ms_per_request(m: Measured) -> float:
    return 1000 * m.server_cores / m.load.rps if m.load.rps else float("inf")


def _versus_floor(
    results: dict[str, ServerResult],
    concurrency: int,
    what: str,
    value: Callable[[Measured], float],
    unit: str,
    limit: float,
    at_most: bool,
    pair: tuple[str, str] = ("gateway", "floor"),
) -> Target:
    """One server over another at one concurrency (by default the gateway over the floor)."""
    text = f"concurrency {concurrency}: {SHORT[pair[0]]} {what} / {SHORT[pair[1]]}'s"
    bound = f"{'<=' if at_most else '>='} {limit:g} x"
    gateway, floor = results.get(pair[0]), results.get(pair[1])
    g = gateway.at(concurrency) if gateway else None
    f = floor.at(concurrency) if floor else None
    if g is None or f is None:
        return Target(text, "not measured", "-", bound, None)
    gv, fv = value(g), value(f)
    r = _ratio(gv, fv)
    return Target(
        text,
        f"{_fmt(gv)} vs {_fmt(fv)} {unit}",
        f"{r:.2f} x",
        bound,
        r <= limit if at_most else r >= limit,
    )


def _anchor(results: dict[str, ServerResult], key: str, baseline: dict[str, Any]) -> Target:
    text = f"gateway req/s / {SHORT[key]}'s at each concurrency, against the baseline's ratio"
    bound = f">= {ANCHOR_SLACK:g} x baseline"
    gateway, anchor = results.get("gateway"), results.get(key)
    was: dict[str, float] = baseline.get("anchor_ratios", {}).get(key, {})
    cells, relative = [], []
    for c in sorted(int(k) for k in was):
        g = gateway.at(c) if gateway else None
        a = anchor.at(c) if anchor else None
        if g is None or a is None or a.load.requests == 0:
            continue  # an anchor that answered nothing in the run (too short) gives no ratio
        now = _ratio(g.load.rps, a.load.rps)
        relative.append(now / was[str(c)])
        cells.append(f"c={c}: {now:.2f} x (baseline {was[str(c)]:.2f} x)")
    if not relative:
        return Target(text, "not measured", "-", bound, None)
    worst = min(relative)
    return Target(
        text, "; ".join(cells), f"{worst:.2f} x baseline (worst)", bound, worst >= ANCHOR_SLACK
    )


def _errors(results: dict[str, ServerResult]) -> Target:
    text = "zero errors (non-2xx, socket errors, timeouts) from every server at every concurrency"
    cells = []
    total = 0
    for key, server in results.items():
        errors = sum(m.load.errors for m in server.runs or [])
        total += errors
        cells.append(f"{SHORT.get(key, key)}: {errors}")
    gateway = results.get("gateway")
    measured = bool(gateway and gateway.runs)
    return Target(
        text, ", ".join(cells) or "not measured", "-", "0", total == 0 if measured else None
    )


def _peak_rss(results: dict[str, ServerResult], baseline: dict[str, Any]) -> Target:
    text = "gateway peak RSS under load / the baseline's"
    bound = f"<= {RSS_SLACK:g} x"
    gateway, was = results.get("gateway"), baseline.get("gateway_peak_rss_mib")
    if gateway is None or not gateway.runs or not was:
        return Target(text, "not measured", "-", bound, None)
    now = gateway.peak_rss_bytes / MiB
    r = now / was
    return Target(text, f"{now:.0f} vs {was:.0f} MiB", f"{r:.3f} x", bound, r <= RSS_SLACK)


def _micro(micro: list[dict[str, Any]], name: str, batch: int) -> float | None:
    row = next((r for r in micro if r["name"] == name and r["batch"] == batch), None)
    return None if row is None else float(batch / (row["median_ms"] / 1000))


def _pyfunc_bulk(micro: list[dict[str, Any]]) -> Target:
    text = f"in-process pyfunc predict on {PYFUNC_BULK:,} windows: windows/s"
    bound = f">= {PYFUNC_WINDOWS_PER_S:,}"
    rate = _micro(micro, PYFUNC_CASE, PYFUNC_BULK)
    if rate is None:
        return Target(text, "not measured", "-", bound, None)
    return Target(
        text, f"{rate:,.0f} windows/s", f"{rate / PYFUNC_WINDOWS_PER_S:.2f} x",
        bound, rate >= PYFUNC_WINDOWS_PER_S,
    )  # fmt: skip


def _batch_route(results: dict[str, ServerResult], micro: list[dict[str, Any]]) -> Target:
    """Windows/s through the batch route at its best concurrency, over the bound: the wrapper's
    own forecast_unchecked on the same number of windows, in process."""
    oip = results.get("gateway-oip")
    batch = OIP_BATCH
    text = f"batch route (/v2 infer, {batch} windows a request): windows/s / in-process bound"
    bound_rate = _micro(micro, UNCHECKED_CASE, batch)
    best = max(oip.runs or [], key=lambda m: m.load.rps, default=None) if oip else None
    if best is None:
        return Target(text, "not measured", "-", "reported", None, reported=True)
    rate = best.load.rps * batch
    versus = f" vs {bound_rate:,.0f}" if bound_rate else ""
    return Target(
        text,
        f"{rate:,.0f}{versus} windows/s (c={best.load.concurrency})",
        f"{rate / bound_rate:.2f} x" if bound_rate else "-",
        "reported",
        None,
        reported=True,
    )


def _score(batch: list[dict[str, Any]], micro: list[dict[str, Any]]) -> Target:
    text = "`score` on Spark: windows/s / in-process pyfunc's on 1,000 windows"
    pyfunc = _micro(micro, PYFUNC_CASE, PYFUNC_BULK)
    if not batch:
        return Target(text, "not measured", "-", "reported", None, reported=True)
    cells = "; ".join(
        f"{r['run']}: {r['windows_per_s']:,.0f} ({r['windows']:,} windows, {r['seconds']:.1f} s)"
        for r in batch
    )
    best = max(r["windows_per_s"] for r in batch)
    return Target(
        text,
        f"{cells}; pyfunc {pyfunc:,.0f}" if pyfunc else cells,
        f"{best / pyfunc:.2f} x" if pyfunc else "-",
        "reported",
        None,
        reported=True,
    )


def targets(
    results: dict[str, ServerResult],
    baseline: dict[str, Any],
    micro: list[dict[str, Any]] | None = None,
    batch: list[dict[str, Any]] | None = None,
) -> list[Target]:
    shadow = ("gateway-shadow", "gateway")
    micro = micro or []
    rps = "requests/s"
    # fmt: off
    return [
        _versus_floor(results, 1, "p50", lambda m: m.load.p50_ms, "ms", 2, True),
        _versus_floor(results, 64, rps, lambda m: m.load.rps, "req/s", 0.65, False),
        _versus_floor(results, 64, "p99", lambda m: m.load.p99_ms, "ms", 2.5, True),
        _versus_floor(results, 64, "server CPU per request", cpu_ms_per_request, "ms", 2.5, True),
        _versus_floor(results, 1, "p50", lambda m: m.load.p50_ms, "ms", 1.15, True, shadow),
        _versus_floor(results, 64, rps, lambda m: m.load.rps, "req/s", 0.85, False, shadow),
        _pyfunc_bulk(micro),
        _anchor(results, "serve", baseline),
        _anchor(results, "keras", baseline),
        _errors(results),
        _peak_rss(results, baseline),
        _batch_route(results, micro),
        _score(batch or [], micro),
    ]
    # fmt: on


def verdict(target: Target) -> str:
    if target.reported:
        return "REPORTED" if target.measured != "not measured" else "NOT MEASURED"
    ok = target.ok
    return "PASS" if ok else ("FAIL" if ok is False else "NOT MEASURED")
