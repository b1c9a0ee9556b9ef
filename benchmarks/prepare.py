"""The steps before any server runs: the environment, the registry, the demo model and the
micro-benchmark, each in a child process."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import procs, wrk
from benchmarks.drive import Driver
from benchmarks.options import ROOT, Options
from scripts.local_registry import free_port

log = logging.getLogger("benchmarks")
Say = Callable[[str], None]


def bench_env() -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        # `mlflow models serve` runs `uvicorn` by name: it must be this venv's.
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        # A dead registry should fail in seconds, not after minutes of retries.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    }


def first_driver(options: Options, env: dict[str, str]) -> Driver:
    """wrk when asked or available (installed if missing), until the comparison decides."""
    wrk_path = wrk.ensure_wrk(install=True) if options.generator in ("auto", "wrk") else None
    if wrk_path is None and options.generator == "wrk":
        raise RuntimeError("wrk is not available and could not be installed")
    generator = "wrk" if wrk_path else "python"
    return Driver(generator, options.warmup, options.duration, env, wrk_path)


def start_registry(children: procs.Children, workdir: Path, say: Say) -> str:
    from scripts.local_registry import start_mlflow_server, wait_until_healthy

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    say(f"starting a temporary mlflow server at {uri} (its first start is slow)")
    log_path = workdir / "registry.log"
    process = start_mlflow_server(workdir / "mlflow", "127.0.0.1", port, log_path, detach=True)
    children.adopt(procs.Child("registry", process, log_path))
    wait_until_healthy(uri, timeout=300, process=process)
    return uri


def run_child(
    name: str, argv: list[str], env: dict[str, str], workdir: Path, timeout: float
) -> None:
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as out:
        done = subprocess.run(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
        )
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{name} failed ({done.returncode}); its log ends with:\n{tail}")


def train_models(options: Options, env: dict[str, str], workdir: Path, say: Say) -> Any:
    say(f"training and registering the demo model ({options.epochs} epochs, short on purpose)")
    run_child(
        "models",
        [sys.executable, "-m", "benchmarks.models", "--out", str(workdir),
         "--epochs", str(options.epochs), "--candles", str(options.candles)],
        env, workdir, timeout=600,
    )  # fmt: skip
    setup = json.loads((workdir / "models.json").read_text())
    say(
        f"registered {setup['model_name']} v{setup['version']} @{setup['alias']} and "
        f"{setup['keras_model_name']} v{setup['keras_version']}"
    )
    return setup


def _rows_from_child(
    name: str, what: str, args: list[str], env: dict[str, str], workdir: Path, timeout: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """`python -m benchmarks.<name> --setup DIR --out DIR/<name>.json ARGS`: its rows, or none and
    a note saying `what` failed (the rest of the run can still be measured)."""
    out = workdir / f"{name}.json"
    try:
        run_child(
            name,
            [sys.executable, "-m", f"benchmarks.{name}", "--setup", str(workdir), "--out",
             str(out), *args],
            env, workdir, timeout,
        )  # fmt: skip
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        log.error("%s failed: %s", what, e)
        return [], [f"the {what} failed: {str(e)[:300]}"]
    return list(json.loads(out.read_text())), []


def micro_benchmark(
    options: Options, env: dict[str, str], workdir: Path, say: Say
) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows, and a note when it failed (the servers can still be measured)."""
    say("micro-benchmark of the wrapper (in-process)")
    args = ["--budget", str(options.micro_budget)]
    return _rows_from_child("micro", "micro-benchmark", args, env, workdir, timeout=300)


def batch_benchmark(
    options: Options, env: dict[str, str], workdir: Path, say: Say
) -> tuple[list[dict[str, Any]], list[str]]:
    """`score` on Spark (benchmarks/batch.py), with no server running; a note when it failed."""
    if not shutil.which("java"):
        return [], ["score was not measured: Spark needs a JRE (default-jre-headless)"]
    say(f"`score` on {options.score_windows:,} windows, Spark {options.spark_master}")
    args = ["--windows", str(options.score_windows), "--master", options.spark_master]
    return _rows_from_child("batch", "batch benchmark", args, env, workdir, timeout=900)
