"""Start a local `mlflow server` (SQLite backend, local artifact store) and wait for it; pick a
free port for it (or any local server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's pick), for a local server to take."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_until_healthy(
    url: str, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {process.returncode}")
        if is_healthy(url):
            return
        time.sleep(0.25)
    raise TimeoutError(f"mlflow server at {url} not healthy after {timeout:.0f} s")


def start_mlflow_server(
    data_dir: Path,
    host: str,
    port: int,
    log_file: Path | None = None,
    detach: bool = False,
    backend_store_uri: str | None = None,
) -> subprocess.Popen[bytes]:
    """`mlflow server` storing runs and the registry in data_dir/mlflow.db (or in
    `backend_store_uri`, e.g. a PostgreSQL database) and artifacts in data_dir/artifacts (served
    through the server, so clients need no shared disk)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if backend_store_uri is None:
        backend_store_uri = f"sqlite:///{data_dir.resolve() / 'mlflow.db'}"
    env = {
        **os.environ,
        # The job runner spawns worker processes we do not use; on 2 cores they cost start-up.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    with open(log_file or os.devnull, "ab") as out:  # the child keeps its own copy of the fd
        return subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--backend-store-uri",
                backend_store_uri,
                "--artifacts-destination",
                str((data_dir / "artifacts").resolve()),
                "--host",
                host,
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
        )
