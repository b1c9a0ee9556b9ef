"""Live evidence: the forecasts a gateway served (its prediction log), scored against the closes
that came.

A log line is matched to the candle its window ended on:
- by `candle_time` (the time of the window's last candle, which the client sends and the
  gateway logs), when the line has one: the candle at exactly that time;
- otherwise by `last_close`: the candle whose close, cast to float32, equals it and whose time is
  not after the line's. One candle like that is the match; several are "ambiguous".
The forecast is scored against the next candle's close. A line whose next close is not in the
candles yet is "pending"; one that matches no candle is "unmatched"; one that cannot be read is
"unreadable". None of those is scored or guessed at; all are counted.

Figures per (version, role): MAE beside persistence (the window's last close), Diebold–Mariano,
interval coverage and pinball loss; a shadow version also against the served version on the
windows both forecast (the lines that share a request id).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from model_wrapper.evaluation.metrics import diebold_mariano, interval_pinball_loss

STATUSES = ("scored", "pending", "unmatched", "ambiguous", "unreadable")
DEFAULT_LEVEL = 0.8


@dataclass(frozen=True)
class Scored:
    """One forecast with the close that came."""

    request_id: str
    role: str  # "served" or "shadow"
    version: str
    alias: str
    logged: pd.Timestamp  # when the gateway answered
    candle: pd.Timestamp  # the window's last candle
    last_close: float
    actual: float
    forecast: float
    lower: float | None
    upper: float | None
    level: float | None
    target: pd.Timestamp | None = None  # the candle forecast (the one after `candle`)


@dataclass
class Matched:
    scored: list[Scored] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # by STATUSES


def read_lines(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], int]:
    """The parsed lines of every file (rotated ones too), and how many could not be read."""
    lines: list[dict[str, Any]] = []
    unreadable = 0
    for path in paths:
        with path.open("rb") as f:
            parsed, bad = read_text_lines(f)
        lines += parsed
        unreadable += bad
    return lines, unreadable


def read_text_lines(raw_lines: Iterable[bytes]) -> tuple[list[dict[str, Any]], int]:
    """The lines that parse as a logged forecast, and how many do not."""
    lines: list[dict[str, Any]] = []
    unreadable = 0
    for raw in raw_lines:
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            float(line["pred_btc_close_next"])
            str(line["model_version"])
            pd.Timestamp(line["time"])
        except (ValueError, KeyError, TypeError):
            unreadable += 1
            continue
        lines.append(line)
    return lines, unreadable


def _utc(value: Any) -> pd.Timestamp:
    when = pd.Timestamp(value)
    return when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")


def match(lines: list[dict[str, Any]], candles: pd.DataFrame, unreadable: int = 0) -> Matched:
    """Each line matched to its candle and scored against the next close (see the module)."""
    closes = candles["close"].to_numpy(dtype=np.float64)
    times = pd.DatetimeIndex(candles.index)
    times = times.tz_localize("UTC") if times.tz is None else times.tz_convert("UTC")
    position = {t: i for i, t in enumerate(times)}
    by_close: dict[float, list[int]] = defaultdict(list)
    for i, close in enumerate(closes.astype(np.float32)):
        by_close[float(close)].append(i)
    out = Matched()
    out.counts["unreadable"] = unreadable
    for line in lines:
        try:
            logged = _utc(line["time"])
            found = _candle_of(line, logged, times, position, by_close)
        except (ValueError, TypeError):
            out.counts["unreadable"] += 1
            continue
        if isinstance(found, str):
            out.counts[found] += 1
            continue
        i = found
        if i + 1 >= len(closes):
            out.counts["pending"] += 1
            continue
        interval = line.get("pred_interval") or None
        out.scored.append(
            Scored(
                request_id=str(line.get("request_id", "")),
                role=str(line.get("role", "served")),
                version=str(line["model_version"]),
                alias=str(line.get("model_alias", "")),
                logged=logged,
                candle=times[i],
                last_close=float(closes[i]),
                actual=float(closes[i + 1]),
                forecast=float(line["pred_btc_close_next"]),
                lower=float(interval["lower"]) if interval else None,
                upper=float(interval["upper"]) if interval else None,
                level=float(interval["level"]) if interval else None,
                target=times[i + 1],
            )
        )
        out.counts["scored"] += 1
    return out


def _candle_of(
    line: Mapping[str, Any],
    logged: pd.Timestamp,
    times: pd.DatetimeIndex,
    position: Mapping[pd.Timestamp, int],
    by_close: Mapping[float, list[int]],
) -> int | str:
    """The candle a line's window ended on, or why none is: "pending", "unmatched",
    "ambiguous"."""
    if line.get("candle_time") is not None:
        when = _utc(line["candle_time"])
        if when in position:
            return position[when]
        # A candle after the last one the data has: it has not arrived yet.
        return "pending" if len(times) == 0 or when > times[-1] else "unmatched"
    last = line.get("last_close")
    if last is None:
        return "unmatched"
    candidates = [i for i in by_close.get(float(np.float32(last)), ()) if times[i] <= logged]
    if not candidates:
        return "unmatched"
    if len(candidates) > 1:
        return "ambiguous"
    return candidates[0]


@dataclass(frozen=True)
class LiveFigures:
    version: str
    role: str
    alias: str  # the alias its latest line named
    metrics: dict[str, float]  # the live_* metrics, by the names the live runs log
    served_version: str | None  # for a shadow: the served version it was compared with
    scored: list[Scored]


def figures(matched: Matched) -> dict[tuple[str, str], LiveFigures]:
    """The live figures of every (version, role) in the log."""
    groups: dict[tuple[str, str], list[Scored]] = defaultdict(list)
    for s in matched.scored:
        groups[(s.version, s.role)].append(s)
    served_by_request: dict[str, Scored] = {
        s.request_id: s for s in matched.scored if s.role == "served" and s.request_id
    }
    result = {}
    for (version, role), rows in groups.items():
        rows.sort(key=lambda s: (s.candle, s.logged))
        metrics = score(rows)
        served_version = None
        if role == "shadow":
            served_version, common = _common_windows(rows, served_by_request)
            metrics |= versus_served(common)
        result[(version, role)] = LiveFigures(
            version, role, max(rows, key=lambda s: s.logged).alias, metrics, served_version, rows
        )
    return result


def score(rows: list[Scored]) -> dict[str, float]:
    """live_n, live_mae, live_persistence_mae, live_mae_ratio_to_persistence,
    live_dm_pvalue_vs_persistence, live_interval_coverage, live_interval_pinball_loss."""
    actual = np.array([s.actual for s in rows])
    forecast = np.array([s.forecast for s in rows])
    last = np.array([s.last_close for s in rows])
    mae = float(np.mean(np.abs(forecast - actual))) if rows else math.nan
    persistence = float(np.mean(np.abs(last - actual))) if rows else math.nan
    with_interval = [s for s in rows if s.lower is not None and s.upper is not None]
    coverage = pinball = math.nan
    if with_interval:
        a = np.array([s.actual for s in with_interval])
        low = np.array([s.lower for s in with_interval], dtype=np.float64)
        high = np.array([s.upper for s in with_interval], dtype=np.float64)
        level = with_interval[0].level or DEFAULT_LEVEL
        coverage = float(np.mean((low <= a) & (a <= high)))
        pinball = interval_pinball_loss(a, low, high, level)
    return {
        "live_n": float(len(rows)),
        "live_mae": mae,
        "live_persistence_mae": persistence,
        "live_mae_ratio_to_persistence": mae / persistence if persistence else math.nan,
        "live_dm_pvalue_vs_persistence": diebold_mariano(
            np.abs(forecast - actual) / actual, np.abs(last - actual) / actual
        )
        if rows
        else math.nan,
        "live_interval_coverage": coverage,
        "live_interval_pinball_loss": pinball,
    }


def _common_windows(
    shadow: list[Scored], served_by_request: Mapping[str, Scored]
) -> tuple[str | None, list[tuple[Scored, Scored]]]:
    """The served version this shadow was last compared with (the one that answered its latest
    shared request: the holder a live promotion is judged against), and the (shadow, served)
    pairs of the windows both forecast with that version."""
    pairs = [
        (s, served_by_request[s.request_id]) for s in shadow if s.request_id in served_by_request
    ]
    if not pairs:
        return None, []
    version = max(pairs, key=lambda pair: pair[1].logged)[1].version
    return version, [(s, served) for s, served in pairs if served.version == version]


def versus_served(pairs: list[tuple[Scored, Scored]]) -> dict[str, float]:
    """live_n_common, live_mae_ratio_to_served, live_dm_pvalue_vs_served."""
    if not pairs:
        return {"live_n_common": 0.0, "live_mae_ratio_to_served": math.nan,
                "live_dm_pvalue_vs_served": math.nan}  # fmt: skip
    actual = np.array([s.actual for s, _ in pairs])
    shadow = np.abs(np.array([s.forecast for s, _ in pairs]) - actual)
    served = np.abs(np.array([v.forecast for _, v in pairs]) - actual)
    served_mae = float(np.mean(served))
    return {
        "live_n_common": float(len(pairs)),
        "live_mae_ratio_to_served": float(np.mean(shadow)) / served_mae if served_mae else math.nan,
        "live_dm_pvalue_vs_served": diebold_mariano(shadow / actual, served / actual),
    }


def coverage_pvalue(coverage: float, n: int, level: float) -> float:
    """Two-sided exact binomial p-value that an interval covering `coverage` of `n` outcomes is
    calibrated at `level`."""
    if n <= 0 or math.isnan(coverage):
        return math.nan
    hits = round(coverage * n)
    return float(stats.binomtest(hits, n, level).pvalue)
