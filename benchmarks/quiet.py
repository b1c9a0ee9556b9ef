"""Other processes on a shared machine skew a run. Before each run, wait (a bounded time) for the
machine to go quiet; after it, repeat a run that others disturbed (a bounded number of times in
all) and keep the least disturbed try."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.cpu import background_cores
from benchmarks.results import Measured

log = logging.getLogger("benchmarks.quiet")

QUIET_CORES = 0.3  # other processes busier than this: the machine is not quiet
QUIET_WAIT_S = 15.0  # per run
QUIET_WAIT_TOTAL_S = 120.0  # per benchmark: a machine that stays busy is measured anyway


@dataclass
class Quiet:
    repeats_left: int  # disturbed runs that may still be repeated
    wait_left_s: float = QUIET_WAIT_TOTAL_S  # 0: never wait
    repeated: int = 0
    others: list[float] = field(default_factory=list)  # others' cores during each kept run

    def wait(self) -> float:
        """Cores others keep busy now, after waiting (bounded) for them to finish."""
        started = time.monotonic()
        deadline = started + min(QUIET_WAIT_S, self.wait_left_s)
        busy = background_cores()
        while busy > QUIET_CORES and time.monotonic() < deadline:
            busy = background_cores()
        self.wait_left_s = max(0.0, self.wait_left_s - (time.monotonic() - started))
        if busy > QUIET_CORES:
            log.warning("the machine is busy (%.2f cores) before a run; measuring anyway", busy)
        return busy

    def least_disturbed(self, once: Callable[[], Measured], say: Callable[[str], None]) -> Measured:
        """`once()` after a wait, repeated while others took CPU and repeats are left."""
        self.wait()
        best = once()
        while best.other_cores > QUIET_CORES and self.repeats_left > 0:
            self.repeats_left -= 1
            self.repeated += 1
            say(f"  other processes took {best.other_cores:.2f} cores: once more")
            self.wait()
            again = once()
            best = min(best, again, key=lambda m: m.other_cores)
        self.others.append(best.other_cores)
        return best

    def notes(self) -> list[str]:
        """What the report must say about disturbed runs."""
        notes = []
        if self.repeated:
            notes.append(
                f"{self.repeated} runs were repeated because other processes took CPU "
                "meanwhile; the table keeps the least disturbed try of each."
            )
        busy = [c for c in self.others if c > QUIET_CORES]
        if busy:
            notes.append(
                f"Other processes on the machine still used more than {QUIET_CORES} cores "
                f"during {len(busy)} of {len(self.others)} runs (up to {max(busy):.2f}; see the "
                '"other CPU" column): those rates are low and their latencies high. Rerun '
                '`make bench` on a quiet machine to compare; "CPU ms/req" is the least disturbed.'
            )
        return notes
