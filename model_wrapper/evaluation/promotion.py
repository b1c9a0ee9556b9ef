"""The evidence an alias move acts on, of three kinds (`promote --evidence`):

- offline: the candidate and the alias's holder evaluated on the same candles after both
  training periods (evaluate.py), through the one gate;
- live: the candidate's forecasts as the shadow behind the holder, scored against the closes
  that came (live.py, as the scorecard last recorded them), on the windows both forecast;
- backtest:<run id>: for a version retrained on all the data, which leaves no window out of
  sample, the walk-forward backtest of its recipe (same training parameters and code version),
  whose pooled figures must pass the one gate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mlflow import MlflowClient

from model_wrapper.data.sources import DataSource
from model_wrapper.errors import UsageError
from model_wrapper.evaluation.evaluate import (
    NoEvidence,
    describe,
    evaluate,
    gate_reasons,
    has_training_period,
)
from model_wrapper.evaluation.gate import gate
from model_wrapper.evaluation.live import coverage_pvalue
from model_wrapper.evaluation.live_runs import live_metrics

# Live coverage is refused when a two-sided binomial test rejects the level at this p.
LIVE_COVERAGE_P = 0.01
DEFAULT_MIN_WINDOWS = 30
# What makes a recipe: the training parameters a backtest refits with (the seed aside: a
# backtest pools several) and the code that ran them.
RECIPE_PARAMS = (
    "seq_len",
    "epochs",
    "batch_size",
    "units",
    "learning_rate",
    "patience",
    "validation_fraction",
    "holdout_fraction",
    "interval_level",
    "ensemble",
)
CODE_VERSION = "mlflow.source.git.commit"


@dataclass(frozen=True)
class Evidence:
    kind: str  # "offline", "live" or "backtest"
    reasons: list[str]  # why the candidate must not take the alias; empty when it may
    summary: str  # one line: printed, and written in the version's description
    tags: dict[str, str] = field(default_factory=dict)  # recorded on the version when it moves
    notes: list[str] = field(default_factory=list)  # printed before the verdict


def offline(
    name: str,
    candidate: str,
    holder: str | None,
    data: DataSource,
    tolerance: float,
    experiment: str | None,
) -> Evidence:
    notes = []
    baseline = f"models:/{name}/{holder}" if holder else None
    if baseline and not has_training_period(baseline):
        notes.append(
            f"version {holder}, the current holder, records no training period, so it cannot "
            "be scored out of sample: compared with persistence only"
        )
        baseline = None
    evaluation = evaluate(f"models:/{name}/{candidate}", data, baseline, experiment)
    m = evaluation.metrics
    tags = {
        "promotion_evidence": "offline",
        "promotion_evaluation_run_id": evaluation.run_id,
        "promotion_mae_ratio_to_persistence": f"{m['mae_ratio_to_persistence']:.4f}",
        "promotion_interval_coverage": f"{m['interval_coverage']:.3f}",
    }
    if evaluation.baseline is not None:
        tags["promotion_mae_ratio_to_champion"] = f"{m['mae_ratio_to_baseline']:.4f}"
    return Evidence(
        "offline", gate_reasons(evaluation, tolerance), describe(evaluation), tags, notes
    )


def live(
    name: str, candidate: str, holder: str | None, tolerance: float, min_windows: int
) -> Evidence:
    """The candidate's live figures as the shadow behind `holder` (see the module)."""
    run_id, m, tags = live_metrics(name, candidate, "shadow")
    level = 0.8
    served = tags.get("served_version")
    n_common = int(m.get("live_n_common", 0))
    n = int(m.get("live_n", 0))
    reasons = []
    if holder is not None and served != holder:
        reasons.append(
            f"its live forecasts were compared with version {served}, but the alias is held by "
            f"version {holder}: shadow it behind the holder"
        )
    if n_common < min_windows:
        reasons.append(
            f"it shares {n_common} scored windows with the served version; {min_windows} are needed"
        )
    ratio = m.get("live_mae_ratio_to_persistence", math.nan)
    if not ratio <= 1 + tolerance:
        reasons.append(
            f"its live MAE is {ratio:.4f} x persistence's; the gate allows {1 + tolerance:.4f}"
        )
    to_served = m.get("live_mae_ratio_to_served", math.nan)
    if holder is not None and not to_served <= 1 + tolerance:
        reasons.append(
            f"its live MAE is {to_served:.4f} x that of version {served} on the windows both "
            f"forecast; the gate allows {1 + tolerance:.4f}"
        )
    coverage = m.get("live_interval_coverage", math.nan)
    p = coverage_pvalue(coverage, n, level)
    if not p >= LIVE_COVERAGE_P:
        reasons.append(
            f"its {level:.0%} interval covered {coverage:.3f} of {n} closes: off {level} "
            f"(binomial p = {p:.4f} < {LIVE_COVERAGE_P})"
        )
    summary = (
        f"live: {n} forecasts scored, {n_common} beside version {served}: MAE "
        f"{ratio:.4f} x persistence (DM p = {m.get('live_dm_pvalue_vs_persistence', math.nan):.3f})"
        f", {to_served:.4f} x version {served}'s (DM p = "
        f"{m.get('live_dm_pvalue_vs_served', math.nan):.3f}), interval coverage {coverage:.3f} "
        f"(live run {run_id})"
    )
    return Evidence(
        "live",
        reasons,
        summary,
        {
            "promotion_evidence": "live",
            "promotion_live_run_id": run_id,
            "promotion_mae_ratio_to_persistence": f"{ratio:.4f}",
            "promotion_mae_ratio_to_champion": f"{to_served:.4f}",
            "promotion_interval_coverage": f"{coverage:.3f}",
            "promotion_live_n_common": str(n_common),
        },
    )


def backtest(name: str, candidate: str, run_id: str, tolerance: float) -> Evidence:
    """The pooled figures of a backtest of the candidate's own recipe (see the module)."""
    client = MlflowClient()
    run = client.get_run(run_id)
    if run.data.tags.get("run_kind") != "backtest":
        raise UsageError(f"run {run_id} is not a backtest (its run_kind is not backtest)")
    trained = _training_run(client, name, candidate)
    differs = [
        f"{key} ({trained.data.params.get(key)} here, {run.data.params.get(key)} in the backtest)"
        for key in RECIPE_PARAMS
        if trained.data.params.get(key) != run.data.params.get(key)
    ]
    code = trained.data.tags.get(CODE_VERSION), run.data.tags.get(CODE_VERSION)
    if code[0] is None or code[0] != code[1]:
        differs.append(f"the code version ({code[0]} here, {code[1]} in the backtest)")
    m = {
        k.removeprefix("pooled_"): v for k, v in run.data.metrics.items() if k.startswith("pooled_")
    }
    level = float(run.data.params.get("interval_level", 0.8))
    reasons = [f"the backtest is of another recipe: {', '.join(differs)} differ"] if differs else []
    if "mae_ratio_to_persistence" in m:
        reasons += gate(m, level, tolerance)
    else:
        reasons.append(f"backtest run {run_id} recorded no pooled figures")
    ratio = m.get("mae_ratio_to_persistence", math.nan)
    coverage = m.get("interval_coverage", math.nan)
    summary = (
        f"backtest {run_id} of the same recipe, pooled over {run.data.params.get('periods')} "
        f"periods: MAE {ratio:.4f} x persistence, interval coverage {coverage:.3f}"
    )
    return Evidence(
        "backtest",
        reasons,
        summary,
        {
            "promotion_evidence": "backtest",
            "promotion_backtest_run_id": run_id,
            "promotion_mae_ratio_to_persistence": f"{ratio:.4f}",
            "promotion_interval_coverage": f"{coverage:.3f}",
        },
    )


def _training_run(client: MlflowClient, name: str, version: str):  # type: ignore[no-untyped-def]
    """The run that trained `version` (through a re-wrap, the run it was wrapped from)."""
    run_id = client.get_model_version(name, version).run_id
    if not run_id:
        raise UsageError(f"{name} version {version} records no run: its recipe is unknown")
    run = client.get_run(run_id)
    source = run.data.tags.get("source_run_id")
    if run.data.tags.get("run_kind") == "wrap" and source:
        run = client.get_run(source)
    return run


__all__ = ["DEFAULT_MIN_WINDOWS", "Evidence", "NoEvidence", "backtest", "live", "offline"]
