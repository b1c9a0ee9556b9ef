"""Child processes of the benchmark: start in their own process group, wait, stop for sure,
and measure the resident memory of a whole process tree (psutil)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass
class Child:
    """A process started by the benchmark, with its own process group so that stopping it also
    stops whatever it spawned (`mlflow models serve` execs uvicorn in a child)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace: float = 15.0) -> None:
        # The group id is this child's pid (start_new_session): only what we started is signalled.
        pgid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(grace)
        # A grandchild may outlive the leader: give the group the rest of the grace, then kill.
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def start(name: str, argv: list[str], env: dict[str, str], log_dir: Path, cwd: Path) -> Child:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name, process, log_path)


@dataclass
class Children:
    """What the benchmark started and has not stopped yet; `stop_all` stops it for sure."""

    log_dir: Path
    cwd: Path
    running: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        return self.adopt(start(name, argv, env, self.log_dir, self.cwd))

    def adopt(self, child: Child) -> Child:
        self.running.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        if child in self.running:
            self.running.remove(child)

    def stop_all(self) -> None:
        for child in reversed(self.running):
            child.stop()
        self.running.clear()


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return None


def post_json(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()


def wait_until(child: Child, ready: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `ready()`; raises if the child exits or the timeout passes."""
    started = time.monotonic()
    while not ready():
        if not child.alive():
            raise RuntimeError(
                f"{child.name} exited with code {child.process.returncode} while waiting for "
                f"{what}; its log ends with:\n{child.log_tail()}"
            )
        if time.monotonic() - started > timeout:
            raise TimeoutError(
                f"{child.name}: no {what} after {timeout:.0f} s; its log ends with:\n"
                f"{child.log_tail()}"
            )
        time.sleep(0.25)
    return time.monotonic() - started


def process_tree(root: int) -> list[psutil.Process]:
    """The process and all its descendants (empty once it has exited)."""
    try:
        top = psutil.Process(root)
        return [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.NoSuchProcess:
        return 0  # exited while we looked


def _command(process: psutil.Process) -> str:
    try:
        argv = process.cmdline()
    except psutil.Error:
        return "?"
    words = [Path(a).name for a in argv[:4] if a]
    text = " ".join(" ".join(words).split())
    return text if len(text) <= 60 else text[:57] + "..."


def tree_rss_detail(root: int) -> str:
    """Each process of the tree with its RSS, e.g. 'mlflow models serve: 250 MiB + ...'."""
    return " + ".join(f"`{_command(p)}` {_rss(p) / 2**20:.0f} MiB" for p in process_tree(root))


def tree_rss_bytes(root: int) -> int:
    return sum(_rss(p) for p in process_tree(root))


@dataclass
class RssSampler:
    """Polls the summed RSS of a process tree in a thread; `peak` is the highest sample."""

    root: int
    interval: float = 0.1
    peak: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.root))
            self.samples += 1
            self._stop.wait(self.interval)

    @contextlib.contextmanager
    def running(self) -> Iterator[RssSampler]:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
