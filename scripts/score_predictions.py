"""Score served forecasts against reality: join a prediction log (PREDICTION_LOG) with a candles
CSV and report, per model version, the live MAE beside persistence (tomorrow's close = today's).

python -m scripts.score_predictions --candles btc-usd-daily.csv predictions.jsonl*

How a logged window is matched to the candle it forecasts: a line records the window's last
close, as the gateway saw it (float32). The candle whose close, cast to float32, equals it
exactly, and whose time is not after the line's time, is the window's last candle; the forecast
is for the next candle's close. A line that matches no candle is "unmatched" (other data, or
candles not in the CSV); one that matches several is "ambiguous"; one whose next candle is not
in the CSV yet is "pending". None of them is scored; all are counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model_wrapper.data.candles import load_candles


@dataclass(frozen=True)
class VersionScore:
    version: str
    scored: int
    mae: float  # USD
    persistence_mae: float  # USD: forecasting the window's last close
    skill: float  # 1 - mae / persistence_mae: above 0 beats persistence
    interval_lines: int  # scored lines that carried an interval
    interval_coverage: float | None  # share of those whose interval held the actual close


@dataclass(frozen=True)
class Report:
    versions: list[VersionScore]
    lines: int
    unreadable: int
    unmatched: int
    ambiguous: int
    pending: int


def read_log(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], int]:
    """The parsed lines of every file, and how many could not be read."""
    lines: list[dict[str, Any]] = []
    unreadable = 0
    for path in paths:
        with path.open("rb") as f:
            for raw in f:
                try:
                    line = json.loads(raw)
                    float(line["last_close"]), float(line["pred_btc_close_next"])
                    str(line["model_version"]), pd.Timestamp(line["time"])
                except (ValueError, KeyError, TypeError):
                    unreadable += 1
                    continue
                lines.append(line)
    return lines, unreadable


def score(lines: list[dict[str, Any]], candles: pd.DataFrame, unreadable: int = 0) -> Report:
    closes = candles["close"].to_numpy(dtype=np.float64)
    times = candles.index
    by_close: dict[float, list[int]] = defaultdict(list)
    for i, close in enumerate(closes.astype(np.float32)):
        by_close[float(close)].append(i)
    errors: dict[str, list[tuple[float, float, bool | None]]] = defaultdict(list)
    unmatched = ambiguous = pending = 0
    for line in lines:
        when = pd.Timestamp(line["time"])
        when = when.tz_localize("UTC") if when.tzinfo is None else when
        last = float(np.float32(line["last_close"]))
        candidates = [i for i in by_close.get(last, ()) if times[i] <= when]
        if not candidates:
            unmatched += 1
            continue
        if len(candidates) > 1:
            ambiguous += 1
            continue
        i = candidates[0]
        if i + 1 >= len(closes):
            pending += 1
            continue
        actual = closes[i + 1]
        interval = line.get("pred_interval")
        inside = None
        if interval:
            inside = float(interval["lower"]) <= actual <= float(interval["upper"])
        errors[str(line["model_version"])].append(
            (abs(float(line["pred_btc_close_next"]) - actual), abs(closes[i] - actual), inside)
        )
    versions = []
    for version, rows in sorted(errors.items(), key=lambda item: _version_key(item[0])):
        model = float(np.mean([r[0] for r in rows]))
        persistence = float(np.mean([r[1] for r in rows]))
        held = [r[2] for r in rows if r[2] is not None]
        versions.append(
            VersionScore(
                version=version,
                scored=len(rows),
                mae=model,
                persistence_mae=persistence,
                skill=1 - model / persistence if persistence > 0 else float("nan"),
                interval_lines=len(held),
                interval_coverage=float(np.mean(held)) if held else None,
            )
        )
    return Report(versions, len(lines) + unreadable, unreadable, unmatched, ambiguous, pending)


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (sys.maxsize, version)


def render(report: Report) -> str:
    out = [
        f"{'version':>8} {'scored':>7} {'MAE USD':>12} {'persistence':>12} {'skill':>7} "
        f"{'80% interval held':>18}"
    ]
    for v in report.versions:
        held = f"{v.interval_coverage:.1%} of {v.interval_lines}" if v.interval_lines else "-"
        out.append(
            f"{v.version:>8} {v.scored:>7} {v.mae:>12.2f} {v.persistence_mae:>12.2f} "
            f"{v.skill:>7.3f} {held:>18}"
        )
    out.append(
        f"{report.lines} lines: {report.unmatched} unmatched, {report.ambiguous} ambiguous, "
        f"{report.pending} pending, {report.unreadable} unreadable"
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path, help="prediction log files (rotated too)")
    parser.add_argument("--candles", required=True, type=Path, help="OHLCV CSV (Yahoo, Binance)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    lines, unreadable = read_log(args.logs)
    report = score(lines, load_candles(args.candles), unreadable)
    print(json.dumps(asdict(report), indent=2) if args.json else render(report))


if __name__ == "__main__":
    main()
