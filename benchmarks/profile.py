"""py-spy profiles of a server under load: record its Python threads for a bounded time while the
load runs, then summarize the collapsed stacks into the threads, packages and functions that
took the samples.

py-spy samples only threads that are running (not idle), without pausing the process
(--nonblocking), so a function's share of the samples approximates its share of the server's
CPU; times that share by the CPU per request measured in the same run, it approximates what the
function costs per request.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.drive import Driver
from benchmarks.procs import Child
from benchmarks.results import Measured

RATE = 250  # samples per second
TOP = 12
# A version runs the model package it was logged with, from its own `code/` folder, which py-spy
# names "model/...": the model's own code. The entry point is on every stack of the main thread,
# so it says nothing.
MODEL_CODE = "model/"
OWN_CODE = ("gateway/", "model_wrapper/", MODEL_CODE)
ENTRY_POINT = "gateway/__main__.py"
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_THREAD = re.compile(r"^thread \(\d+\)(?:: (?P<name>.*))?$")
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


@dataclass(frozen=True)
class Share:
    name: str
    samples: int
    share: float  # of all the profile's samples


@dataclass(frozen=True)
class Summary:
    samples: int
    threads: list[Share]
    packages: list[Share]  # where the samples were taken (the innermost frame's package)
    functions: list[Share]  # innermost frames: the function's own time
    own_code: list[Share]  # gateway/ and model_wrapper/ functions anywhere on the stack


@dataclass(frozen=True)
class Profile:
    concurrency: int
    seconds: float
    run: Measured | None  # the load while py-spy recorded (slightly slowed by it)
    summary: Summary | None
    error: str = ""

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.run is None or self.run.load.rps <= 0:
            return None
        return 1000 * self.run.server_cores / self.run.load.rps

    def to_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "seconds": self.seconds,
            "run": self.run.to_json() if self.run else None,
            "summary": asdict(self.summary) if self.summary else None,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Profile:
        s = data["summary"]
        summary = None
        if s is not None:
            lists = {k: [Share(**x) for x in v] for k, v in s.items() if isinstance(v, list)}
            summary = Summary(samples=s["samples"], **lists)
        run = Measured.from_json(data["run"]) if data["run"] else None
        return cls(data["concurrency"], data["seconds"], run, summary, data["error"])


def _package(file: str) -> str:
    # py-spy shortens paths to what follows the sys.path entry: "starlette/routing.py",
    # "gateway/app.py", "threading.py" (the standard library's top-level modules).
    if file.startswith(MODEL_CODE):
        return "the model's code"
    head = file.split("/", 1)[0]
    return head.removesuffix(".py") or "?"


def _thread_name(frame: str) -> str:
    m = _THREAD.match(frame)
    name = (m.group("name") or "?") if m else frame
    return re.sub(r"_\d+$", "", name)  # "model-predict_0": the pool's threads together


def _function(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame)
    return (m.group("function"), m.group("file")) if m else (frame, "")


@dataclass
class _Tally:
    threads: Counter[str] = field(default_factory=Counter)
    packages: Counter[str] = field(default_factory=Counter)
    functions: Counter[str] = field(default_factory=Counter)
    own_code: Counter[str] = field(default_factory=Counter)


def summarize(collapsed: str, top: int = TOP) -> Summary:
    """py-spy's raw output (`--format raw --threads`): one stack per line, outermost frame first,
    then its sample count."""
    tally = _Tally()
    total = 0
    for line in collapsed.splitlines():
        m = _LINE.match(line.strip())
        if m is None:
            continue
        count = int(m.group("count"))
        thread, *frames = m.group("stack").split(";")
        total += count
        tally.threads[_thread_name(thread)] += count
        if not frames:
            continue
        function, file = _function(frames[-1])
        tally.packages[_package(file)] += count
        tally.functions[f"{function} ({file})"] += count
        seen = set()
        for frame in frames:
            function, file = _function(frame)
            if file.startswith(OWN_CODE) and file != ENTRY_POINT:
                seen.add(f"{function} ({file})")
        for name in seen:
            tally.own_code[name] += count

    def shares(counter: Counter[str], n: int | None = top) -> list[Share]:
        return [Share(k, v, v / total) for k, v in counter.most_common(n)]

    return Summary(
        samples=total,
        threads=shares(tally.threads, None),
        packages=shares(tally.packages),
        functions=shares(tally.functions),
        own_code=shares(tally.own_code),
    )


def py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(p) if (p := Path(sys.executable).with_name("py-spy")).exists() else None
    )


def record(
    child: Child, driver: Driver, url: str, bodies: Path, concurrency: int, seconds: int, out: Path
) -> Profile:
    """py-spy on `child` for `seconds` while `driver` keeps `concurrency` requests going."""
    exe = py_spy()
    if exe is None:
        return Profile(concurrency, seconds, None, None, "py-spy is not installed")
    # The load outlasts the recording a little on both sides: py-spy sees only steady load.
    load = replace(driver, duration=seconds + 1.0)
    argv = [
        exe, "record", "--pid", str(child.pid), "--duration", str(seconds), "--rate", str(RATE),
        "--format", "raw", "--threads", "--nonblocking", "--output", str(out),
    ]  # fmt: skip
    with ThreadPoolExecutor(1, thread_name_prefix="profile-load") as pool:
        running = pool.submit(load.measure, child, url, bodies, concurrency)
        time.sleep(load.warmup)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        run = running.result()
    if done.returncode != 0 or not out.exists():
        error = f"py-spy failed ({done.returncode}): {done.stderr.strip()[-500:]}"
        return Profile(concurrency, seconds, run, None, error)
    return Profile(concurrency, seconds, run, summarize(out.read_text()))


def markdown(profiles: list[Profile], server: str) -> str:
    """BENCHMARKS.md's section on where the time goes, from this run's profiles."""
    if not profiles:
        return ""
    parts = [
        f"## Where the time goes: py-spy on {server}, this run",
        "",
        f"`py-spy record --rate {RATE} --threads --nonblocking --format raw` on the server's "
        "process while the same generator drives it, once per concurrency. py-spy samples only "
        "running threads, so a share of the samples approximates a share of the server's CPU; "
        '"~ms/req" is that share of the CPU per request measured during the same recording '
        "(py-spy slows the server a little). A thread that waits for a core counts as running, "
        "and so does uvloop's own C loop, which py-spy shows as `Runner.run`: on a busy "
        "machine the rows of waiting frames (`Runner.run`, the model thread's `_worker`) grow. "
        "py-spy's raw output stays in the work directory with `--keep-workdir`.",
    ]
    for p in profiles:
        parts += ["", *_profile_md(p)]
    return "\n".join(parts) + "\n"


def _profile_md(p: Profile) -> list[str]:
    head = f"### Concurrency {p.concurrency}"
    if p.summary is None:
        return [head, "", f"Not profiled: {p.error}"]
    s, per_req = p.summary, p.cpu_ms_per_request
    run = p.run.load if p.run else None
    rate = f"; {run.rps:.0f} req/s under the profiler" if run else ""
    cpu = f", {per_req:.3f} ms of server CPU per request" if per_req is not None else ""
    threads = ", ".join(f"{t.name} {100 * t.share:.0f}%" for t in s.threads)

    def table(title: str, rows: list[Share]) -> list[str]:
        out = [f"| {title} | samples | ~ms/req |", "|---|---|---|"]
        for r in rows:
            ms = f"{r.share * per_req:.3f}" if per_req is not None else "-"
            out.append(f"| `{r.name}` | {100 * r.share:.1f}% | {ms} |")
        return out

    return [
        head,
        "",
        f"{s.samples} samples over {p.seconds:g} s{rate}{cpu}. Threads: {threads}.",
        "",
        *table("package (where the sample was taken)", s.packages),
        "",
        *table("function (its own time)", s.functions),
        "",
        *table("the gateway's own code (anywhere on the stack)", s.own_code),
    ]
