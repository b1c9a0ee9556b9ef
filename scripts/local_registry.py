"""The local `mlflow server` (SQLite backend, local artifact store): start it, wait for it, stop
it; pick a free port for it (or any local server).

    python -m scripts.local_registry start    # `make registry`: start or reuse, in the background
    python -m scripts.local_registry stop     # `make stop`

Its data live in $REGISTRY_DIR (default .local/mlflow/) and it listens on
127.0.0.1:$REGISTRY_PORT (default 5000).
"""

from __future__ import annotations

import argparse
import os
import signal
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


ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def local_data() -> Path:
    """Where the local registry keeps its data: $REGISTRY_DIR, default .local/mlflow."""
    return Path(os.environ.get("REGISTRY_DIR", ROOT / ".local" / "mlflow"))


def local_port(environ: os._Environ[str] | dict[str, str] = os.environ) -> int:
    """REGISTRY_PORT, default 5000 (macOS AirPlay and other servers often hold 5000)."""
    return int(environ.get("REGISTRY_PORT", "5000"))


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def ensure_local_registry(port: int) -> str:
    """The local registry's URI: the server already answering there, or one started in the
    background (it keeps running after this process; `make stop` stops it)."""
    uri = f"http://{HOST}:{port}"
    if is_healthy(uri):
        print(f"== using the MLflow server already running at {uri}")
        return uri
    if not port_is_free(HOST, port):
        sys.exit(
            f"port {port} is taken by something that is not an MLflow server: set REGISTRY_PORT "
            "to a free port (or MLFLOW_TRACKING_URI to a registry of yours)"
        )
    data = local_data()
    print(f"== starting mlflow server at {uri} (data in {data}); first start ~30 s")
    process = start_mlflow_server(data, HOST, port, data / "server.log", detach=True)
    (data / "server.pid").write_text(f"{process.pid} {port}\n")
    wait_until_healthy(uri, timeout=300, process=process)
    return uri


def stop_local_registry() -> bool:
    """Stops the registry `ensure_local_registry` started; False if none was running."""
    pid_file = local_data() / "server.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    pid_file.unlink(missing_ok=True)
    try:
        os.killpg(pid, signal.SIGTERM)  # the server and its workers: a session of their own
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the local MLflow registry")
    parser.add_argument("action", choices=("start", "stop"))
    args = parser.parse_args(argv)
    if args.action == "start":
        print(f"MLFLOW_TRACKING_URI={ensure_local_registry(local_port())}")
    elif stop_local_registry():
        print("stopped the local mlflow server")
    else:
        print("no local mlflow server was running (started by make run or make registry)")


if __name__ == "__main__":
    main()
