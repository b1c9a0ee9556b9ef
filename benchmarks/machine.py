"""The machine and the software a run measured, for the top of BENCHMARKS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

import psutil


def _cpuinfo_model() -> str:
    # psutil does not name the CPU model; /proc/cpuinfo does.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    return f"{psutil.virtual_memory().total / 2**30:.1f} GiB"


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def wrk_version() -> str:
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
        "wrk": wrk_version(),
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }
