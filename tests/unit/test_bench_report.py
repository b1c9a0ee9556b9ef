"""`make bench`'s report, without running a benchmark: the py-spy summary, the targets and
BENCHMARKS.md from a hand-built run record (the figures are made up; the arithmetic is not)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.markdown import benchmarks_md
from benchmarks.profile import Profile, summarize
from benchmarks.report import Run, runtime
from benchmarks.results import LoadResult, Measured, ServerResult
from benchmarks.servers import read_runtime
from benchmarks.targets import targets

COLLAPSED = """\
thread (101): MainThread;<module> (gateway/__main__.py:91);run (uvloop/__init__.py:1);\
__call__ (gateway/request_log.py:60);predict (gateway/app.py:150);\
parse_predict (gateway/validation.py:40) 30
thread (101): MainThread;<module> (gateway/__main__.py:91);run (uvloop/__init__.py:1);\
__call__ (gateway/request_log.py:60);_send (uvicorn/protocols/http/httptools_impl.py:500) 20
thread (102): model-predict_0;_worker (concurrent/futures/thread.py:80);\
predict (model/forecaster.py:240) 50
"""


def measured(concurrency: int, rps: float, p50: float, p99: float, cores: float) -> Measured:
    load = LoadResult("wrk", concurrency, 10.0, int(rps * 10), 0, 0, p50, p99, p99 * 2)
    return Measured(load, 900 * 2**20, cores, 0.2, 0.0)


def server(key: str, *runs: Measured, runtime: str = "") -> ServerResult:
    return ServerResult(key, key, f"run {key}", runs=list(runs), runtime=runtime)


def test_summarize_counts_threads_packages_own_time_and_own_code() -> None:
    s = summarize(COLLAPSED)
    assert s.samples == 100
    assert [(t.name, t.samples) for t in s.threads] == [("MainThread", 50), ("model-predict", 50)]
    assert dict((p.name, p.samples) for p in s.packages) == {
        "the model's code": 50,  # a version runs the model package logged with it
        "gateway": 30,
        "uvicorn": 20,
    }
    assert s.functions[0].name == "predict (model/forecaster.py)"
    own = {o.name: o.samples for o in s.own_code}
    # Anywhere on the stack, each function counted once per sample.
    assert own["__call__ (gateway/request_log.py)"] == 50
    assert own["parse_predict (gateway/validation.py)"] == 30
    assert own["predict (model/forecaster.py)"] == 50
    assert "_send (uvicorn/protocols/http/httptools_impl.py)" not in own
    assert "<module> (gateway/__main__.py)" not in own  # on every stack: says nothing


def results() -> dict[str, ServerResult]:
    return {
        "gateway": server(
            "gateway",
            measured(1, 1000, 0.5, 1.0, 0.9),
            measured(16, 3000, 5, 9, 1.0),
            measured(64, 6000, 10, 15, 1.2),
            measured(256, 5000, 50, 90, 1.1),
            runtime="numpy",
        ),
        "gateway-w2": server(
            "gateway-w2", measured(1, 900, 0.6, 1.2, 1.0), measured(64, 7000, 9, 14, 1.6)
        ),
        "gateway-shadow": server(
            "gateway-shadow", measured(1, 950, 0.6, 1.1, 0.9), measured(64, 5000, 12, 18, 1.2)
        ),
        "gateway-oip": server(
            "gateway-oip", measured(1, 200, 5, 7, 1.0), measured(4, 250, 16, 20, 1.0)
        ),
        "floor": server(
            "floor",
            measured(1, 5000, 0.2, 0.3, 0.7),
            measured(16, 9000, 1, 3, 1.0),
            measured(64, 9000, 3, 7, 1.0),
        ),
        "serve": server(
            "serve",
            measured(1, 500, 2, 4, 0.9),
            measured(16, 400, 35, 60, 1.0),
            measured(64, 400, 150, 400, 1.0),
        ),
        "keras": server(
            "keras",
            measured(1, 20, 50, 80, 1.0),
            measured(16, 25, 550, 900, 1.5),
            measured(64, 30, 2000, 2300, 1.5),
        ),
    }


BASELINE = {
    "source": "a test",
    "gateway_peak_rss_mib": 881,
    "anchor_ratios": {"serve": {"1": 1.7, "16": 7.46, "64": 13.83}, "keras": {"64": 173.4}},
}


def test_targets_are_ratios_against_the_floor_the_anchors_and_the_baseline() -> None:
    t = {x.text: x for x in targets(results(), BASELINE)}
    p50 = t["concurrency 1: (a) gateway p50 / (d) floor's"]
    assert (p50.ratio, p50.ok) == ("2.50 x", False)
    rps = t["concurrency 64: (a) gateway requests/s / (d) floor's"]
    assert (rps.ratio, rps.ok) == ("0.67 x", True)
    cpu = t["concurrency 64: (a) gateway server CPU per request / (d) floor's"]
    # 1.2 cores / 6000 req/s = 0.2 ms; 1.0 / 9000 = 0.111 ms
    assert (cpu.ratio, cpu.ok) == ("1.80 x", True)
    serve = next(x for x in t.values() if "(b) mlflow serve" in x.text)
    # c=64: 6000 / 400 = 15 x against 13.83 x; c=1: 2 x against 1.7 x; c=16: 7.5 x against 7.46 x
    assert serve.ok is True and "c=64: 15.00 x (baseline 13.83 x)" in serve.measured
    keras = next(x for x in t.values() if "(c) keras flavor" in x.text)
    # 6000 / 30 = 200 x against 173.4 x
    assert keras.ok is True and keras.ratio == "1.15 x baseline (worst)"
    rss = t["gateway peak RSS under load / the baseline's"]
    assert rss.ok is False  # 900 MiB > 881 MiB x 1.02
    errors = next(x for x in t.values() if x.text.startswith("zero errors"))
    assert errors.ok is True
    # The shadow against the same gateway without it: 0.6 / 0.5 ms = 1.2 x; 5000 / 6000 req/s.
    shadow_p50 = t["concurrency 1: (a-s) gateway, shadow on p50 / (a) gateway's"]
    assert (shadow_p50.ratio, shadow_p50.ok) == ("1.20 x", False)
    shadow_rps = t["concurrency 64: (a-s) gateway, shadow on requests/s / (a) gateway's"]
    assert (shadow_rps.ratio, shadow_rps.ok) == ("0.83 x", False)


MICRO = [
    {"name": "pyfunc predict (mlflow.pyfunc.load_model; the checked path)", "batch": 1000,
     "median_ms": 5.0, "p90_ms": 6.0},
    {"name": "wrapper forecast_unchecked (what the gateway calls)", "batch": 64,
     "median_ms": 0.32, "p90_ms": 0.4},
]  # fmt: skip
BATCH = [
    {"run": "first", "windows": 100_000, "seconds": 50.0, "windows_per_s": 2000.0,
     "master": "local[2]"},
    {"run": "second", "windows": 100_000, "seconds": 20.0, "windows_per_s": 5000.0,
     "master": "local[2]"},
]  # fmt: skip


def test_throughput_targets_come_from_the_micro_benchmark_and_the_batch_runs() -> None:
    t = {x.text: x for x in targets(results(), BASELINE, MICRO, BATCH)}
    bulk = t["in-process pyfunc predict on 1,000 windows: windows/s"]
    # 1000 windows in 5 ms: 200,000 windows/s against 150,000
    assert (bulk.measured, bulk.ratio, bulk.ok) == ("200,000 windows/s", "1.33 x", True)
    route = next(x for x in t.values() if x.text.startswith("batch route"))
    # Its best run, c=4: 250 req/s x 64 windows = 16,000 windows/s; in process 64 / 0.32 ms
    assert route.reported and route.ok is None
    assert route.measured == "16,000 vs 200,000 windows/s (c=4)" and route.ratio == "0.08 x"
    score = next(x for x in t.values() if x.text.startswith("`score`"))
    assert score.reported and score.ratio == "0.03 x"  # 5,000 / 200,000
    assert not targets(results(), BASELINE)[6].ok  # no micro-benchmark: not measured


def test_missing_servers_are_not_measured_rather_than_passed() -> None:
    only_gateway = {"gateway": results()["gateway"]}
    verdicts = {x.text: x.ok for x in targets(only_gateway, {})}
    assert verdicts["concurrency 1: (a) gateway p50 / (d) floor's"] is None
    assert verdicts["gateway peak RSS under load / the baseline's"] is None


def test_benchmarks_md_has_every_section_and_survives_json() -> None:
    profile = Profile(1, 8, measured(1, 800, 0.6, 1.1, 0.9), summarize(COLLAPSED))
    failed = Profile(64, 8, None, None, "py-spy failed (1): permission denied")
    run = Run(
        machine={"date (UTC)": "2026-11-30 13:00", "cores": "2"},
        setup={"model_name": "M", "version": "1", "alias": "bench", "candles": 600, "epochs": 1,
               "train_seconds": 3.0, "keras_model_name": "K", "keras_version": "1", "windows": 200},
        method={"warmup": 1, "duration": 2, "quick": True},
        generator_note="wrk.",
        results=results(),
        baseline=BASELINE,
        micro=[{"name": "pyfunc predict", "batch": 1, "median_ms": 0.5, "p90_ms": 0.6}, *MICRO],
        profiles=[profile, failed],
        notes=["a note"],
        batch=BATCH,
    )  # fmt: skip
    again = Run.from_json(json.loads(json.dumps(run.to_json())))
    text = benchmarks_md(again, "## Before issue 13\n\nby hand\n")
    for heading in (
        "# Benchmarks",
        "## Targets, each beside its limit",
        "## Batch scoring on Spark",
        "## Machine",
        "## What ran",
        "## Results",
        "## One worker or two",
        "## In-process micro-benchmark of the wrapper",
        "## Where the time goes: py-spy on (a) gateway (1 worker), this run",
        "### Concurrency 1",
        "### Concurrency 64",
        "## Notes from this run",
        "## Before issue 13",
    ):
        assert f"\n{heading}\n" in f"\n{text}", heading
    words = " ".join(text.split())
    assert "The network is served by: **numpy**" in words
    assert "Smoke run (`--quick`)" in words
    assert "Not profiled: py-spy failed (1): permission denied" in words
    # 1 worker -> 2 workers at c=64: 6000 -> 7000 req/s
    assert "| 64 | 6000 -> 7000 (1.17 x) |" in text
    judged = [x for x in targets(run.results, BASELINE, run.micro, run.batch) if not x.reported]
    assert text.count("| PASS |") + text.count("| FAIL |") == len(judged)
    assert text.count("| REPORTED |") == 2
    assert "| second | 100,000 | 20.0 | 5,000 | local[2] |" in text


@pytest.mark.parametrize(
    ("health", "said"),
    [
        ({"status": "ok", "model_loaded": True}, ""),
        ({"status": "ok", "model_runtime": "numpy", "model_loaded": True}, "numpy"),
        ({"status": "ok", "model_runtime": None}, ""),
        ({"status": "ok", "runtime": "litert"}, "litert"),
        (
            {"status": "ok", "runtime": {"name": "onnx", "fallback": False}},
            '{"fallback": false, "name": "onnx"}',
        ),
    ],
)
def test_the_serving_runtime_is_read_from_health(health: dict[str, object], said: str) -> None:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(health).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Health) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
        thread.start()
        try:
            assert read_runtime(httpd.server_address[1]) == said
        finally:
            httpd.shutdown()
            thread.join()
    gateway = server("gateway", measured(1, 1, 1, 1, 1), runtime=said)
    assert runtime({"gateway": gateway}) == (
        said or "unknown (the gateway's /health names no runtime)"
    )
