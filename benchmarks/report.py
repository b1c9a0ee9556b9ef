"""What one run measured, as the console summary and as BENCHMARKS.md."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from benchmarks import profile
from benchmarks.results import Measured, ServerResult
from benchmarks.targets import SHORT, Target, cpu_ms_per_request, targets, verdict

ORDER = ("gateway", "gateway-shadow", "gateway-w2", "floor", "serve", "keras", "gateway-oip")
MiB = 1024 * 1024


@dataclass
class Run:
    """Everything one `make bench` measured: what --json saves and BENCHMARKS.md is written from."""

    machine: dict[str, str]
    setup: dict[str, Any]
    method: dict[str, Any]
    generator_note: str
    results: dict[str, ServerResult]
    baseline: dict[str, Any]
    micro: list[dict[str, Any]] = field(default_factory=list)
    profiles: list[profile.Profile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    batch: list[dict[str, Any]] = field(default_factory=list)  # `score` on Spark

    @property
    def targets(self) -> list[Target]:
        return targets(self.results, self.baseline, self.micro, self.batch)

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine, "setup": self.setup, "method": self.method,
            "generator_note": self.generator_note,
            "results": {k: r.to_json() for k, r in self.results.items()},
            "baseline": self.baseline, "micro": self.micro,
            "profiles": [p.to_json() for p in self.profiles], "notes": self.notes,
            "batch": self.batch,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        return cls(
            machine=data["machine"],
            setup=data["setup"],
            method=data["method"],
            generator_note=data["generator_note"],
            results={k: ServerResult.from_json(r) for k, r in data["results"].items()},
            baseline=data.get("baseline", {}),
            micro=data.get("micro", []),
            profiles=[profile.Profile.from_json(p) for p in data.get("profiles", [])],
            notes=data.get("notes", data.get("warnings", [])),  # "warnings": in older runs
            batch=data.get("batch", []),
        )


RESULT_HEADER = (
    "server", "conc.", "req/s", "p50 ms", "p99 ms", "max ms", "non-2xx", "socket err.",
    "peak RSS MiB", "server CPU", "CPU ms/req", "loadgen CPU", "other CPU",
)  # fmt: skip


def _num(value: float, digits: int) -> str:
    return "-" if math.isnan(value) or math.isinf(value) else f"{value:.{digits}f}"


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.inf


def _row(name: str, m: Measured) -> tuple[str, ...]:
    r = m.load
    return (
        name, str(r.concurrency), f"{r.rps:.1f}", _num(r.p50_ms, 2), _num(r.p99_ms, 2),
        _num(r.max_ms, 1), str(r.non_2xx), str(r.socket_errors),
        f"{m.peak_rss_bytes / MiB:.0f}", f"{m.server_cores:.2f}",
        _num(cpu_ms_per_request(m), 3), f"{m.generator_cores:.2f}", f"{m.other_cores:.2f}",
    )  # fmt: skip


def result_rows(results: dict[str, ServerResult]) -> list[tuple[str, ...]]:
    return [_row(SHORT[key], m) for key in ORDER if key in results for m in results[key].runs or []]


RATIO_HEADER = ("conc.", "gateway/floor", "gateway/(b)", "gateway/(c)", "p50 gw/floor",
                "p99 gw/floor", "CPU/req gw/floor")  # fmt: skip


def ratio_rows(results: dict[str, ServerResult]) -> list[tuple[str, ...]]:
    def at(key: str, c: int) -> Measured | None:
        server = results.get(key)
        return server.at(c) if server else None

    rows: list[tuple[str, ...]] = []
    for c in (1, 16, 64):
        g = at("gateway", c)
        if g is None:
            continue
        cells = [str(c)]
        for key in ("floor", "serve", "keras"):
            o = at(key, c)
            cells.append(f"{_ratio(g.load.rps, o.load.rps):.2f} x" if o and o.load.rps else "-")
        f = at("floor", c)
        for value in (
            lambda m: m.load.p50_ms,
            lambda m: m.load.p99_ms,
            cpu_ms_per_request,
        ):
            cells.append(f"{_ratio(value(g), value(f)):.2f} x" if f else "-")
        rows.append(tuple(cells))
    return rows


WORKERS_HEADER = ("conc.", "req/s 1 -> 2 workers", "p50 ms", "p99 ms", "CPU ms/req",
                  "peak RSS MiB")  # fmt: skip


def workers_rows(results: dict[str, ServerResult]) -> list[tuple[str, ...]]:
    one, two = results.get("gateway"), results.get("gateway-w2")
    rows: list[tuple[str, ...]] = []
    for m2 in two.runs or [] if two else []:
        m1 = one.at(m2.load.concurrency) if one else None
        if m1 is None:
            continue

        def pair(a: float, b: float, digits: int) -> str:
            return f"{_num(a, digits)} -> {_num(b, digits)} ({_ratio(b, a):.2f} x)"

        rows.append(
            (
                str(m2.load.concurrency),
                pair(m1.load.rps, m2.load.rps, 0),
                pair(m1.load.p50_ms, m2.load.p50_ms, 2),
                pair(m1.load.p99_ms, m2.load.p99_ms, 2),
                pair(cpu_ms_per_request(m1), cpu_ms_per_request(m2), 3),
                pair(m1.peak_rss_bytes / MiB, m2.peak_rss_bytes / MiB, 0),
            )
        )
    return rows


TARGET_HEADER = ("target", "measured", "ratio", "target ratio", "verdict")


def target_rows(ts: list[Target]) -> list[tuple[str, ...]]:
    return [(t.text, t.measured, t.ratio, t.limit, verdict(t)) for t in ts]


def runtime(results: dict[str, ServerResult]) -> str:
    gateway = results.get("gateway")
    if gateway is None:
        return "not measured"
    return gateway.runtime or "unknown (the gateway's /health names no runtime)"


def text_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def md_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def console(run: Run) -> str:
    parts = [
        text_table(RESULT_HEADER, result_rows(run.results)),
        "",
        "ratios at each concurrency:",
        text_table(RATIO_HEADER, ratio_rows(run.results)),
    ]
    if workers := workers_rows(run.results):
        parts += ["", "one worker -> two:", text_table(WORKERS_HEADER, workers)]
    parts += [
        "",
        f"serving runtime: {runtime(run.results)}",
        "targets:",
        *(f"  {verdict(t):4}  {t.text}: {t.measured} = {t.ratio} ({t.limit})"
          for t in run.targets),
        *(f"note: {n}" for n in run.notes),
    ]  # fmt: skip
    return "\n".join(parts)


def micro_rows(micro: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    names = list(dict.fromkeys(r["name"] for r in micro))
    by = {(r["name"], r["batch"]): r for r in micro}

    def cell(name: str, n: int) -> str:
        r = by.get((name, n))
        return f"{r['median_ms']:.3f} (p90 {r['p90_ms']:.3f})" if r else "-"

    def rate(name: str) -> str:
        r = by.get((name, 1000))
        return f"{r['median_ms']:.3f} ({1000 / r['median_ms'] * 1000:,.0f} windows/s)" if r else "-"

    return [(name, cell(name, 1), cell(name, 64), rate(name)) for name in names]
