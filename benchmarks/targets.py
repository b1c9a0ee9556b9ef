"""Issue 13's targets, each a ratio from one run: the gateway (1 worker) against the HTTP floor at
the same concurrency, against the anchors (MLflow's own servers) as the baseline run measured
them, and its peak RSS against the baseline's."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.results import Measured, ServerResult

BASELINE = Path(__file__).with_name("baseline.json")
MiB = 1024 * 1024
# Run-to-run noise on a shared VM: rates vary by up to ~20%, so a ratio of two rates more.
ANCHOR_SLACK = 0.8  # the lead over an anchor may fall to this fraction of the baseline's
RSS_SLACK = 1.02  # RSS varies by a few MiB between runs of the same code
SHORT = {
    "gateway": "(a) gateway",
    "gateway-w2": "(a2) gateway, 2 workers",
    "serve": "(b) mlflow serve",
    "keras": "(c) keras flavor",
    "floor": "(d) floor",
}


@dataclass(frozen=True)
class Target:
    text: str
    measured: str
    ratio: str
    limit: str
    ok: bool | None  # None: not measured


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
) -> Target:
    text = f"concurrency {concurrency}: gateway {what} / floor's"
    bound = f"{'<=' if at_most else '>='} {limit:g} x"
    gateway, floor = results.get("gateway"), results.get("floor")
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


def targets(results: dict[str, ServerResult], baseline: dict[str, Any]) -> list[Target]:
    return [
        _versus_floor(results, 1, "p50", lambda m: m.load.p50_ms, "ms", 2, True),
        _versus_floor(results, 64, "requests/s", lambda m: m.load.rps, "req/s", 0.6, False),
        _versus_floor(results, 64, "p99", lambda m: m.load.p99_ms, "ms", 2.5, True),
        _versus_floor(results, 64, "server CPU per request", cpu_ms_per_request, "ms", 2.5, True),
        _anchor(results, "serve", baseline),
        _anchor(results, "keras", baseline),
        _errors(results),
        _peak_rss(results, baseline),
    ]


def verdict(ok: bool | None) -> str:
    return "PASS" if ok else ("FAIL" if ok is False else "NOT MEASURED")
