"""BENCHMARKS.md, written from one run's record (benchmarks.report.Run)."""

from __future__ import annotations

from benchmarks import profile
from benchmarks.report import (
    ORDER,
    RATIO_HEADER,
    RESULT_HEADER,
    TARGET_HEADER,
    WORKERS_HEADER,
    MiB,
    Run,
    md_table,
    micro_rows,
    ratio_rows,
    result_rows,
    runtime,
    target_rows,
    workers_rows,
)
from benchmarks.results import ServerResult
from benchmarks.targets import ANCHOR_SLACK, RSS_SLACK, SHORT


def benchmarks_md(run: Run, hand_written: str = "") -> str:
    """The whole file; `hand_written` (benchmarks/PROFILE.md) is appended as it is."""
    sections = [
        _head(run),
        _targets(run),
        "## Machine\n\n" + md_table(("", ""), list(run.machine.items())),
        _what_ran(run),
        _results(run),
        _workers(run),
        _micro(run),
        _batch(run),
        profile.markdown(run.profiles, SHORT["gateway"] + " (1 worker)"),
        _notes(run.notes),
        hand_written,
    ]
    return "\n\n".join(s.strip("\n") for s in sections if s.strip()) + "\n"


def _head(run: Run) -> str:
    ts = run.targets
    judged = [t for t in ts if not t.reported]
    passed = sum(1 for t in judged if t.ok)
    smoke = (
        "\n\n**Smoke run (`--quick`)**: runs of a few seconds, a barely trained model; the figures "
        "only show that every step works."
        if run.method.get("quick")
        else ""
    )
    return f"""# Benchmarks

Written by `make bench` (`python -m benchmarks.run`, code in `benchmarks/`) on
{run.machine["date (UTC)"]} UTC. One run on one machine: rerun `make bench` on yours before
comparing. Targets met: **{passed} of {len(judged)}**. The network is served by:
**{runtime(run.results)}**.{smoke}"""


def _targets(run: Run) -> str:
    source = run.baseline.get("source", "none given")
    return f"""## Targets, each beside its limit

Each from this run, and each compared with what bounds it. The request path's limit is the HTTP
floor (d): a minimal Starlette app parsing the same body under the same uvicorn, so a ratio of 1
would mean the model and the gateway's checks cost nothing; the gateway (1 worker) is measured
over it at the same concurrency. The shadow's cost is the gateway with its shadow on (a-s) over
the same gateway with it off. The in-process pyfunc's target is a fixed rate; its arithmetic
bound is below ("In-process micro-benchmark"). The batch route's windows/s are given over the
wrapper's own `forecast_unchecked` on as many windows in process (the route's floor: the model
with no HTTP), and `score`'s over the in-process pyfunc on 1,000 windows (Spark's overhead);
those two are reported, not judged. The anchors (b) and (c) are compared with the same ratio in
the baseline run (`benchmarks/baseline.json`: {source}); those ratios may fall to
{ANCHOR_SLACK:g} x (rates vary by up to ~20% between runs on a shared VM) and the peak RSS rise by
{RSS_SLACK - 1:.0%} before a target fails.

{md_table(TARGET_HEADER, target_rows(run.targets))}"""


def _what_ran(run: Run) -> str:
    setup, method = run.setup, run.method
    servers = "\n".join(_server_line(k, run.results[k]) for k in ORDER if k in run.results)
    return f"""## What ran

Every server listened on 127.0.0.1 and ran alone: each was stopped before the next started, so
none competed with another for the {run.machine["cores"]} cores (the load generator shares them).

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
errors and 30 s timeouts. Peak RSS is the highest sum of RSS over the server's process tree,
sampled with psutil every 0.1 s during the run. CPU columns are cores used during the run
(warm-up included) by the server's process tree, by the load generator and by everything else
("other": 0 for a clean run); "CPU ms/req" is the server's CPU time per answer, the figure that
other load disturbs least. On a shared VM, absolute rates vary by up to ~20% from one run to
the next even when "other" is 0; ratios within one run vary less.

Load generator: {run.generator_note}"""


def _server_line(key: str, r: ServerResult) -> str:
    detail = f" ({r.idle_rss_detail})" if " + " in r.idle_rss_detail else ""
    served = f" Serving runtime: {r.runtime}." if r.runtime else ""
    return (
        f"- **{SHORT[key]}**, {r.label}: `{r.command}`. Ready after {r.startup_s:.1f} s; idle RSS "
        f"{r.idle_rss_bytes / MiB:.0f} MiB{detail}. {r.probe}{served}"
    )


def _results(run: Run) -> str:
    return f"""## Results

{md_table(RESULT_HEADER, result_rows(run.results))}

Ratios (requests/s of the gateway over the other server at the same concurrency; latency and CPU
per request against the floor):

{md_table(RATIO_HEADER, ratio_rows(run.results))}"""


def _workers(run: Run) -> str:
    rows = workers_rows(run.results)
    if not rows:
        return ""
    return f"""## One worker or two

The gateway as one process (`python -m gateway`, (a)) against two uvicorn workers ((a2): two
processes, each with its own event loop, model and TensorFlow runtime, sharing the port). Each
cell reads "1 worker -> 2 workers (ratio)", from the same generator at the same concurrency:

{md_table(WORKERS_HEADER, rows)}

A second worker adds an event loop, which is what limits one process under load, but also a
second copy of the model and its runtime; on {run.machine["cores"]} cores shared with the load
generator the two loops compete for the same CPU. Use workers when the machine has cores the one
event loop cannot use and memory for another copy; use replicas (more machines or pods behind
the load balancer) to scale beyond one machine or to survive one process failing. The README's
"Running N replicas against one registry" section says how either follows an alias."""


def _micro(run: Run) -> str:
    if not run.micro:
        return ""
    return f"""## In-process micro-benchmark of the wrapper

Milliseconds per call, median (and 90th percentile) over many calls after a warm-up, in one
process with no server running (`benchmarks/micro.py`); the wrapper's own calls also on 1,000
windows, with the windows per second that gives:

{md_table(("call", "1 window", "64 windows", "1,000 windows"), micro_rows(run.micro))}

The bound rows are the arithmetic no forward pass avoids, timed on this machine in the NumPy
runtime's own layout (float32, blocks of 256 windows): each of the 12 LSTM steps is one [4 units,
18 + units + 1] x [18 + units + 1, N] product per member (units 32: 0.16 MFLOP a window), and
then at least one tanh over the gates. The runtime's forward pass (the inference-function row)
adds the cell update's few element-wise operations to the second bound; the pyfunc adds the
input check, scaling and the output DataFrame. A single window is bound instead by Python's
per-step overhead: twelve steps of a few NumPy calls, about a microsecond each."""


def _batch(run: Run) -> str:
    if not run.batch:
        return ""
    rows: list[tuple[str, ...]] = [
        (str(r["run"]), f"{r['windows']:,}", f"{r['seconds']:.1f}",
         f"{r['windows_per_s']:,.0f}", str(r["master"]))
        for r in run.batch
    ]  # fmt: skip
    return f"""## Batch scoring on Spark

The `score` entry point's job (`model_wrapper.scoring.score`: candles to windows in the driver,
`mlflow.pyfunc.spark_udf` on the registered version, Parquet out; `benchmarks/batch.py`), twice
on the same synthetic candles; the first run starts Spark's JVM and Python workers, the second
reuses the session:

{md_table(("run", "windows", "seconds", "windows/s", "master"), rows)}"""


def _notes(notes: list[str]) -> str:
    if not notes:
        return ""
    return "## Notes from this run\n\n" + "\n".join(f"- {n}" for n in notes)
