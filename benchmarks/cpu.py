"""Where the machine's CPU went during a run: the server's process tree, the load generator
(a finished child of this process), this process, and everyone else."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import process_tree

CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    # user + nice + system; irq/softirq (loopback traffic) and steal are left out.
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return (int(fields[0]) + int(fields[1]) + int(fields[2])) / CLK_TCK


def tree_cpu_s(root: int) -> float:
    ticks = 0
    for pid in process_tree(root):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        ticks += int(stat[11]) + int(stat[12])  # utime, stime of all its threads
    return ticks / CLK_TCK


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
