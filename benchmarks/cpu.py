"""Where the machine's CPU went during a run: the server's process tree, the load generator
(a finished child of this process), this process, and everyone else."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import psutil

from benchmarks.procs import process_tree


def machine_busy_s() -> float:
    # user + nice + system; irq/softirq (loopback traffic) and steal are left out.
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system)


def tree_cpu_s(root: int) -> float:
    total = 0.0
    for process in process_tree(root):
        try:
            t = process.cpu_times()  # all its threads
        except psutil.NoSuchProcess:
            continue  # exited meanwhile
        total += t.user + t.system
    return total


def _rusage_s(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def background_cores(seconds: float = 1.0) -> float:
    """Cores the whole machine keeps busy over `seconds` (call it while nothing is measured)."""
    before = machine_busy_s()
    time.sleep(seconds)
    return (machine_busy_s() - before) / seconds


@dataclass(frozen=True)
class CpuMark:
    wall: float
    machine_s: float
    server_s: float
    children_s: float  # finished children of this process: the load generator
    self_s: float

    @classmethod
    def now(cls, server_pid: int) -> CpuMark:
        return cls(
            time.monotonic(),
            machine_busy_s(),
            tree_cpu_s(server_pid),
            _rusage_s(resource.RUSAGE_CHILDREN),
            _rusage_s(resource.RUSAGE_SELF),
        )


@dataclass(frozen=True)
class CpuShare:
    """Cores used between two marks."""

    server: float
    generator: float
    other: float  # everything else on the machine

    @classmethod
    def between(cls, before: CpuMark, after: CpuMark) -> CpuShare:
        wall = after.wall - before.wall
        server = after.server_s - before.server_s
        generator = after.children_s - before.children_s
        own = after.self_s - before.self_s
        machine = after.machine_s - before.machine_s
        return cls(
            server=server / wall,
            generator=generator / wall,
            other=max(0.0, machine - server - generator - own) / wall,
        )
