"""What one closed-loop run measured, whichever generator drove it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class LoadResult:
    generator: str  # "wrk" or "python"
    concurrency: int
    seconds: float  # measured time, after the warm-up
    requests: int  # completed in the measured time, any status
    non_2xx: int
    socket_errors: int  # connect/read/write errors and timeouts
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "rps": self.rps}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Measured:
    """One run against one server, with what the machine did meanwhile."""

    load: LoadResult
    peak_rss_bytes: int  # summed VmRSS of the server's process tree, highest sample
    server_cores: float  # CPU the server tree used, in cores, over the run (warm-up included)
    generator_cores: float
    other_cores: float  # everything else on the machine: should be ~0 for a clean number

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "load": self.load.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measured:
        return cls(**{**data, "load": LoadResult.from_json(data["load"])})


@dataclass
class ServerResult:
    key: str  # "gateway", "gateway-w2", "floor", "serve", "keras"
    label: str
    command: str
    startup_s: float = 0.0
    idle_rss_bytes: int = 0
    idle_rss_detail: str = ""
    probe: str = ""
    prediction: float | None = None  # the first window's answer, when the server gives one
    runtime: str = ""  # what runs the network, as the gateway's /health says
    runs: list[Measured] | None = None

    def at(self, concurrency: int) -> Measured | None:
        return next((m for m in self.runs or [] if m.load.concurrency == concurrency), None)

    @property
    def peak_rss_bytes(self) -> int:
        return max((m.peak_rss_bytes for m in self.runs or []), default=0)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["runs"] = [m.to_json() for m in self.runs or []]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServerResult:
        runs = [Measured.from_json(m) for m in data.get("runs") or []]
        return cls(**{**data, "runs": runs})
