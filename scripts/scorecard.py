"""Score the gateway's served (and shadow) forecasts against the closes that came, per version.

    python -m scripts.scorecard --log 'logs/predictions*.jsonl*' --candles BTC-USD.csv
    python -m scripts.scorecard --log ... --candles ... --follow --port 9108 --interval 60

Each (version, role) seen in the prediction log gets one MLflow run in the project's experiment
(tag `run_kind=live`), updated by every invocation, with the live_* metrics and the live picture;
the version gets the tags live_evaluation_run_id, live_n and live_mae_ratio_to_persistence.
`--follow` keeps reading the log files (rotated ones too) and the candle file as they grow, and
serves its figures on /metrics (`--port`) for Prometheus: deploy/monitoring/alerts.yml's live
rules fire on them. Matching and the figures: model_wrapper/evaluation/live.py.
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_wrapper.defaults import DEFAULT_MODEL_NAME
from scripts._cli import connect, one_line_errors

if TYPE_CHECKING:
    from model_wrapper.evaluation.live import LiveFigures, Matched

RECENT = 90  # the guard's default window: the recent gauges show what it will judge


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--log", action="append", required=True, help="a prediction log file or glob (repeatable)"
    )
    parser.add_argument("--candles", required=True, help="a candle CSV (Yahoo, Binance, generic)")
    parser.add_argument("--registered-model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--follow", default="false", help="true: keep reading and scoring")
    parser.add_argument("--port", type=int, default=0, help="with --follow: serve /metrics here")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between scorings")
    parser.add_argument("--recent", type=int, default=RECENT, help="forecasts in the recent gauges")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    follow = args.follow.strip().lower() in ("true", "1", "yes")
    experiment = connect()
    with one_line_errors():
        card = Scorecard(args.log, Path(args.candles), args.registered_model_name, experiment)
        gauges = Gauges.serve(args.port, args.recent) if follow and args.port else None
        while True:
            report = card.update()
            print(report, flush=True)
            if gauges is not None:
                gauges.show(card)
            if not follow:
                return
            time.sleep(args.interval)


@dataclass
class Scorecard:
    """The log files and the candles, read as they grow, and the figures scored from them."""

    patterns: Sequence[str]
    candles_path: Path
    name: str
    experiment: str | None
    lines: list[dict[str, Any]] = field(default_factory=list)
    unreadable: int = 0
    matched: Matched | None = None
    figures: dict[tuple[str, str], LiveFigures] = field(default_factory=dict)
    _read: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (inode, offset)
    _candles: Any = None
    _candles_mtime: float = -1.0

    def update(self) -> str:
        from model_wrapper.evaluation.live import figures, match
        from model_wrapper.evaluation.live_runs import record

        self._read_new_lines()
        candles = self._load_candles()
        self.matched = match(self.lines, candles, self.unreadable)
        self.figures = figures(self.matched)
        if self.figures:
            record(self.figures, self.name, _experiment_id(self.experiment))
        return render(self.figures, self.matched)

    def _paths(self) -> list[Path]:
        from model_wrapper.errors import UsageError

        found = sorted({p for pattern in self.patterns for p in glob.glob(pattern)})
        if not found and not self._read:
            raise UsageError(f"no prediction log matches {', '.join(self.patterns)}")
        return [Path(p) for p in found]

    def _read_new_lines(self) -> None:
        """The lines written since the last read. A file renamed by rotation keeps its inode and
        its offset; a new file at the old path is read from its start."""
        from model_wrapper.evaluation.live import read_text_lines

        for path in self._paths():
            stat = path.stat()
            key = f"{stat.st_dev}:{stat.st_ino}"
            _, offset = self._read.get(key, (stat.st_ino, 0))
            if stat.st_size < offset:
                offset = 0  # truncated (a copy-truncate rotation)
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
            complete = data.rpartition(b"\n")[0] + b"\n" if b"\n" in data else b""
            lines, unreadable = read_text_lines(complete.splitlines())
            self.lines += lines
            self.unreadable += unreadable
            self._read[key] = (stat.st_ino, offset + len(complete))

    def _load_candles(self) -> Any:
        from model_wrapper.data.candles import load_candles

        mtime = self.candles_path.stat().st_mtime
        if mtime != self._candles_mtime:
            self._candles, self._candles_mtime = load_candles(self.candles_path), mtime
        return self._candles


def _experiment_id(name: str | None) -> str:
    """The experiment the live runs go in: the one `mlflow run` chose, or the named one."""
    import mlflow

    if name is None:
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    experiment = mlflow.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else mlflow.create_experiment(name)


def render(figures: dict[tuple[str, str], LiveFigures], matched: Matched) -> str:
    rows = [
        f"{'version':>8} {'role':>7} {'scored':>7} {'MAE USD':>11} {'x persist.':>10} "
        f"{'DM p':>6} {'coverage':>8} {'x served':>9}"
    ]
    for (version, role), f in sorted(figures.items(), key=lambda kv: _version_key(kv[0])):
        m = f.metrics
        versus = m.get("live_mae_ratio_to_served")
        rows.append(
            f"{version:>8} {role:>7} {int(m['live_n']):>7} {m['live_mae']:>11,.2f} "
            f"{m['live_mae_ratio_to_persistence']:>10.4f} "
            f"{m['live_dm_pvalue_vs_persistence']:>6.3f} {m['live_interval_coverage']:>8.3f} "
            + (f"{versus:>9.4f}" if versus is not None else f"{'-':>9}")
        )
    c = matched.counts
    rows.append(", ".join(f"{c[status]} {status}" for status in _STATUSES) + " lines")
    return "\n".join(rows)


_STATUSES = ("scored", "pending", "unmatched", "ambiguous", "unreadable")


def _version_key(key: tuple[str, str]) -> tuple[int, str, str]:
    version, role = key
    return (int(version) if version.isdigit() else 1 << 30, version, role)


@dataclass
class Gauges:
    """The scorecard's figures on /metrics, for Prometheus and the live alert rules."""

    recent: int
    registry: Any
    metrics: dict[str, Any]

    @classmethod
    def serve(cls, port: int, recent: int) -> Gauges:
        from prometheus_client import CollectorRegistry, Gauge, start_http_server

        registry = CollectorRegistry()
        labels = ("version", "role", "alias")

        def gauge(name: str, doc: str, *names: str) -> Gauge:
            return Gauge(name, doc, names, registry=registry)

        metrics = {
            "n": gauge("scorecard_live_n", "Forecasts scored", *labels),
            "ratio": gauge(
                "scorecard_live_mae_ratio_to_persistence", "Live MAE / persistence's", *labels
            ),
            "coverage": gauge(
                "scorecard_live_interval_coverage", "Live interval coverage", *labels
            ),
            "recent_ratio": gauge(
                "scorecard_recent_mae_ratio_to_persistence",
                f"MAE / persistence's over the last {recent} scored forecasts",
                *labels,
            ),
            "recent_coverage": gauge(
                "scorecard_recent_interval_coverage",
                f"Interval coverage over the last {recent} scored forecasts",
                *labels,
            ),
            "recent_n": gauge("scorecard_recent_n", "Forecasts in the recent figures", *labels),
            "lines": gauge("scorecard_lines", "Prediction log lines by status", "status"),
            "updated": gauge("scorecard_last_update_timestamp_seconds", "Last scoring"),
        }
        start_http_server(port, addr="0.0.0.0", registry=registry)
        return cls(recent, registry, metrics)

    def show(self, card: Scorecard) -> None:
        from model_wrapper.evaluation.live import score

        m = self.metrics
        for f in card.figures.values():
            labels = (f.version, f.role, f.alias)
            m["n"].labels(*labels).set(f.metrics["live_n"])
            m["ratio"].labels(*labels).set(f.metrics["live_mae_ratio_to_persistence"])
            m["coverage"].labels(*labels).set(f.metrics["live_interval_coverage"])
            recent = score(f.scored[-self.recent :])
            m["recent_ratio"].labels(*labels).set(recent["live_mae_ratio_to_persistence"])
            m["recent_coverage"].labels(*labels).set(recent["live_interval_coverage"])
            m["recent_n"].labels(*labels).set(recent["live_n"])
        if card.matched is not None:
            for status in _STATUSES:
                m["lines"].labels(status).set(card.matched.counts[status])
        m["updated"].set(time.time())


if __name__ == "__main__":
    main()
