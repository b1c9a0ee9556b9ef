"""The one gate every alias move passes: `train` on its own holdout, `promote` out of sample.

A version may take an alias when its MAE is at most (1 + tolerance) x persistence's, at most
(1 + tolerance) x the alias's current holder's when the figures compare it with one
(`mae_ratio_to_baseline`), and its interval covers `level` within COVERAGE_TOLERANCE.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

COVERAGE_TOLERANCE = 0.05  # accepted: |interval coverage - level| <= this


def gate(
    metrics: Mapping[str, float],
    level: float,
    tolerance: float,
    holder: str | None = None,
) -> list[str]:
    """Why a version with these figures (`score_forecasts`' names, plus `compare_to_baseline`'s
    when `holder`, the holder's version, is named) must not take the alias; empty when it may."""
    m = metrics
    reasons = []
    ratio = m["mae_ratio_to_persistence"]
    if not ratio <= 1 + tolerance:
        reasons.append(
            f"its MAE ({m['mae']:.2f} USD) is {ratio:.4f} x persistence's "
            f"({m['persistence_mae']:.2f} USD); the gate allows {1 + tolerance:.4f}"
        )
    if holder is not None:
        to_holder = m["mae_ratio_to_baseline"]
        if not to_holder <= 1 + tolerance:
            reasons.append(
                f"its MAE is {to_holder:.4f} x that of the current holder, version {holder} "
                f"({m['baseline_mae']:.2f} USD); the gate allows {1 + tolerance:.4f}"
            )
    coverage = m["interval_coverage"]
    if math.isnan(coverage):
        reasons.append(f"it gives no {level:.0%} interval")
    elif abs(coverage - level) > COVERAGE_TOLERANCE:
        reasons.append(
            f"its {level:.0%} interval covers {coverage:.3f} of the outcomes; the gate accepts "
            f"{level - COVERAGE_TOLERANCE:.2f} .. {level + COVERAGE_TOLERANCE:.2f}"
        )
    return reasons
