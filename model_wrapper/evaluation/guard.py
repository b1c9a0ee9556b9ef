"""When a served version stops earning its alias: the guard's judgment on its latest scored
forecasts (scripts/guard.py acts on it).

Over the last `window` forecasts of the alias's holder that met their closes, it is unhealthy when
its MAE is over (1 + tolerance) x persistence's and Diebold–Mariano says the difference is real
(p < 0.05), or when its interval's coverage is off the level (two-sided binomial p < 0.001).
Fewer scored forecasts than the window: no judgment yet, healthy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from model_wrapper.evaluation.live import DEFAULT_LEVEL, Scored, coverage_pvalue, score

DM_P = 0.05
COVERAGE_P = 0.001


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reasons: list[str]  # why it is unhealthy (empty when healthy)
    summary: str  # the figures judged, one line
    metrics: dict[str, float]


def judge(rows: list[Scored], window: int, tolerance: float) -> Verdict:
    """The verdict on the last `window` of `rows` (one version's served forecasts)."""
    recent = sorted(rows, key=lambda s: (s.candle, s.logged))[-window:]
    if len(recent) < window:
        return Verdict(
            True, [], f"only {len(recent)} scored forecasts; the guard judges {window}", {}
        )
    m = score(recent)
    level = next((s.level for s in recent if s.level), None) or DEFAULT_LEVEL
    ratio, dm = m["live_mae_ratio_to_persistence"], m["live_dm_pvalue_vs_persistence"]
    coverage = m["live_interval_coverage"]
    p = coverage_pvalue(coverage, len(recent), level)
    reasons = []
    if ratio > 1 + tolerance and dm < DM_P:
        reasons.append(
            f"its MAE over the last {window} forecasts is {ratio:.4f} x persistence's (DM p = "
            f"{dm:.4f} < {DM_P}); the gate allows {1 + tolerance:.4f}"
        )
    if not math.isnan(p) and p < COVERAGE_P:
        reasons.append(
            f"its {level:.0%} interval covered {coverage:.3f} of the last {window} closes "
            f"(binomial p = {p:.2g} < {COVERAGE_P})"
        )
    summary = (
        f"last {window} scored forecasts ({recent[0].candle:%Y-%m-%d %H:%M} .. "
        f"{recent[-1].candle:%Y-%m-%d %H:%M}): MAE {ratio:.4f} x persistence (DM p = {dm:.3f}), "
        f"interval coverage {coverage:.3f}"
    )
    return Verdict(not reasons, reasons, summary, m)
