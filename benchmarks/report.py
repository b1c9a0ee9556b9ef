"""The machine description, the results table, the ratios, the targets and BENCHMARKS.md."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from benchmarks.results import LoadResult, Measured, ServerResult

ORDER = ("gateway", "floor", "serve", "keras")
SHORT = {"gateway": "(a) gateway", "serve": "(b) mlflow serve", "keras": "(c) keras flavor",
         "floor": "(d) floor"}  # fmt: skip
MiB = 1024 * 1024


def _cpuinfo_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _wrk_version() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        return "not installed"
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else "?"


def code_version(root: Path) -> str:
    """The commit under test, and whether the served code had uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "gateway", "model_wrapper"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    if not sha:
        return "unknown (no git)"
    return f"{sha}" + (" with uncommitted changes in gateway/ or model_wrapper/" if dirty else "")


def machine_info(root: Path) -> dict[str, str]:
    load = os.getloadavg()
    return {
        "date (UTC)": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "code": code_version(root),
        "CPU": _cpuinfo_model(),
        "cores": str(os.cpu_count()),
        "memory": _mem_total(),
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "TensorFlow": _version("tensorflow"),
        "Keras": _version("keras"),
        "MLflow": _version("mlflow"),
        "uvicorn": _version("uvicorn")
        + f" (HTTP: {'httptools' if find_spec('httptools') else 'h11'}, "
        f"loop: {'uvloop' if find_spec('uvloop') else 'asyncio'})",
        "Starlette": _version("starlette"),
        "wrk": _wrk_version(),
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }


@dataclass(frozen=True)
class Target:
    text: str
    measured: str
    ok: bool | None  # None: not measured


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def targets(results: dict[str, ServerResult]) -> list[Target]:
    def at(key: str, c: int) -> LoadResult | None:
        server = results.get(key)
        m = server.at(c) if server else None
        return m.load if m else None

    out: list[Target] = []

    def rps_target(c: int, other: str, factor: float) -> None:
        g, o = at("gateway", c), at(other, c)
        text = f"concurrency {c}: gateway req/s >= {factor:g} x {SHORT[other]}'s"
        if g is None or o is None:
            out.append(Target(text, "not measured", None))
            return
        r = _ratio(g.rps, o.rps)
        out.append(Target(text, f"{g.rps:.0f} vs {o.rps:.1f} req/s = {r:.2f} x", r >= factor))

    def latency_target(c: int, field: str, factor: float) -> None:
        g, f = at("gateway", c), at("floor", c)
        text = f"concurrency {c}: gateway {field} <= {factor:g} x floor's {field}"
        if g is None or f is None:
            out.append(Target(text, "not measured", None))
            return
        gv, fv = getattr(g, f"{field}_ms"), getattr(f, f"{field}_ms")
        r = _ratio(gv, fv)
        out.append(Target(text, f"{gv:.2f} vs {fv:.2f} ms = {r:.2f} x", r <= factor))

    rps_target(64, "floor", 0.5)
    rps_target(64, "serve", 5)
    rps_target(16, "keras", 100)
    latency_target(1, "p50", 2)
    latency_target(64, "p99", 3)

    gateway = results.get("gateway")
    runs = gateway.runs if gateway and gateway.runs else []
    errors = {m.load.concurrency: m.load.errors for m in runs}
    out.append(
        Target(
            "zero errors (non-2xx and socket errors) from the gateway at every concurrency, "
            "256 included",
            ", ".join(f"c={c}: {e}" for c, e in errors.items()) or "not measured",
            (sum(errors.values()) == 0 and 256 in errors) if errors else None,
        )
    )
    serve = results.get("serve")
    if gateway and serve and gateway.runs and serve.runs:
        g, s = gateway.peak_rss_bytes, serve.peak_rss_bytes
        out.append(
            Target(
                "gateway peak RSS under load <= (b) mlflow serve's",
                f"{g / MiB:.0f} vs {s / MiB:.0f} MiB",
                g <= s,
            )
        )
    else:
        out.append(Target("gateway peak RSS under load <= (b)'s", "not measured", None))
    return out


def _verdict(ok: bool | None) -> str:
    return "PASS" if ok else ("FAIL" if ok is False else "NOT MEASURED")


RESULT_HEADER = (
    "server", "conc.", "req/s", "p50 ms", "p99 ms", "max ms", "non-2xx", "socket err.",
    "peak RSS MiB", "server CPU", "CPU ms/req", "loadgen CPU", "other CPU",
)  # fmt: skip


def result_rows(results: dict[str, ServerResult]) -> list[tuple[str, ...]]:
    rows = []
    for key in ORDER:
        server = results.get(key)
        for m in server.runs or [] if server else []:
            rows.append(_row(SHORT[key], m))
    return rows


def _num(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _row(name: str, m: Measured) -> tuple[str, ...]:
    r = m.load
    return (
        name, str(r.concurrency), f"{r.rps:.1f}", _num(r.p50_ms, 2), _num(r.p99_ms, 2),
        _num(r.max_ms, 1), str(r.non_2xx), str(r.socket_errors),
        f"{m.peak_rss_bytes / MiB:.0f}", f"{m.server_cores:.2f}",
        _num(1000 * m.server_cores / r.rps if r.rps else math.nan, 3), f"{m.generator_cores:.2f}",
        f"{m.other_cores:.2f}",
    )  # fmt: skip


RATIO_HEADER = ("conc.", "gateway/floor", "gateway/(b)", "gateway/(c)", "p50 gw/floor",
                "p99 gw/floor")  # fmt: skip


def ratio_rows(results: dict[str, ServerResult]) -> list[tuple[str, ...]]:
    gateway = results.get("gateway")
    rows = []
    for c in (1, 16, 64):
        g = gateway.at(c) if gateway else None
        if g is None:
            continue
        cells = [str(c)]
        for key in ("floor", "serve", "keras"):
            other = results.get(key)
            o = other.at(c) if other else None
            cells.append(f"{_ratio(g.load.rps, o.load.rps):.2f} x" if o else "-")
        floor = results.get("floor")
        f = floor.at(c) if floor else None
        cells.append(f"{_ratio(g.load.p50_ms, f.load.p50_ms):.2f} x" if f else "-")
        cells.append(f"{_ratio(g.load.p99_ms, f.load.p99_ms):.2f} x" if f else "-")
        rows.append(tuple(cells))
    return rows


def text_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def md_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def console_report(results: dict[str, ServerResult]) -> str:
    parts = [
        text_table(RESULT_HEADER, result_rows(results)),
        "",
        "ratios of requests/s (and latency) at each concurrency:",
        text_table(RATIO_HEADER, ratio_rows(results)),
        "",
        "targets:",
        *(f"  {_verdict(t.ok):4}  {t.text}: {t.measured}" for t in targets(results)),
    ]
    return "\n".join(parts)


def micro_rows(micro: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    names = list(dict.fromkeys(r["name"] for r in micro))
    by = {(r["name"], r["batch"]): r for r in micro}

    def cell(name: str, n: int) -> str:
        r = by.get((name, n))
        return f"{r['median_ms']:.3f} (p90 {r['p90_ms']:.3f})" if r else "-"

    return [(name, cell(name, 1), cell(name, 64)) for name in names]


def markdown(
    machine: dict[str, str],
    setup: dict[str, Any],
    results: dict[str, ServerResult],
    generator_note: str,
    method: dict[str, Any],
    micro: list[dict[str, Any]],
    warnings: list[str],
) -> str:
    ts = targets(results)
    passed = sum(1 for t in ts if t.ok)
    servers = "\n".join(_server_line(k, results[k]) for k in ORDER if k in results)
    return f"""# Benchmarks

Written by `make bench` (`python -m benchmarks.run`, code in `benchmarks/`) on
{machine["date (UTC)"]} UTC. One run on one machine: rerun `make bench` on yours before comparing.
Targets met: **{passed} of {len(ts)}**.

## Machine

{md_table(("", ""), [(k, v) for k, v in machine.items()])}

## What ran

Every server listened on 127.0.0.1 and ran alone: each was stopped before the next started, so
none competed with another for the {machine["cores"]} cores (the load generator shares them).

- Model: `{setup["model_name"]}` v{setup["version"]} behind `@{setup["alias"]}`, trained by
  `train_and_register` on `synthetic_candles({setup["candles"]})` for {setup["epochs"]} epochs
  ({setup["train_seconds"]:.0f} s) in a temporary `mlflow server` that `make bench` starts and
  removes. The training is short on purpose: serving speed does not depend on how well the
  network learned. (c) is the same network (`artifacts/network.keras` of that version) logged
  with `mlflow.keras.log_model` as `{setup["keras_model_name"]}` v{setup["keras_version"]}.
{servers}

Method: a closed-loop generator in its own process keeps N keep-alive connections busy (each
sends its next request when the previous answer arrives): {method["warmup"]:g} s of warm-up,
then {method["duration"]:g} s measured. Bodies cycle through {setup["windows"]} real windows
built with `window_from_candles` from synthetic candles the model never saw: `{{"X": window}}`
for the gateway and the floor, `{{"inputs": [window]}}` for (b), and for (c)
`{{"inputs": [window]}}` with the window already scaled by the wrapper's own scaler, since the
bare network takes scaled inputs; every model sees one [1, 12, 18] float32 window per request.
Errors are answers with status >= 400 (wrk's count; none of these servers sends a 3xx), socket
errors and 30 s timeouts. Peak RSS is the highest sum of VmRSS over the server's process tree,
polled from /proc every 0.1 s during the run. CPU columns are cores used during the run
(warm-up included) by the server's process tree, by the load generator and by everything else
("other": 0 for a clean run); "CPU ms/req" is the server's CPU time per answer, the figure that
other load disturbs least. On a shared VM, absolute rates vary by up to ~20% from one run to
the next even when "other" is 0; ratios within one run vary less.

Load generator: {generator_note}

## Results

{md_table(RESULT_HEADER, result_rows(results))}

Ratios (requests/s of the gateway over the other server at the same concurrency; latency ratios
against the floor):

{md_table(RATIO_HEADER, ratio_rows(results))}

## Targets

{md_table(("target", "measured", "verdict"), [(t.text, t.measured, _verdict(t.ok)) for t in ts])}

## In-process micro-benchmark of the wrapper

Milliseconds per call, median (and 90th percentile) over many calls after a warm-up, in one
process with no server running (`benchmarks/micro.py`):

{md_table(("call", "1 window", "64 windows"), micro_rows(micro))}
{_warnings_md(warnings)}"""


def _server_line(key: str, r: ServerResult) -> str:
    detail = f" ({r.idle_rss_detail})" if " + " in r.idle_rss_detail else ""
    return (
        f"- **{SHORT[key]}**, {r.label}: `{r.command}`. Ready after {r.startup_s:.1f} s; idle RSS "
        f"{r.idle_rss_bytes / MiB:.0f} MiB{detail}. {r.probe}"
    )


def _warnings_md(warnings: list[str]) -> str:
    if not warnings:
        return ""
    return "\n## Notes from this run\n\n" + "\n".join(f"- {w}" for w in warnings) + "\n"
