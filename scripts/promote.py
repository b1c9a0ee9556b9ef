"""Move a registry alias on evidence: the candidate must tie persistence and the alias's
current holder out of sample, with a calibrated interval.

    python -m scripts.promote --from-alias staging --to-alias Production --data BTC-USD.csv
    python -m scripts.promote --version 3 --to-alias staging --data synthetic
    python -m scripts.promote --version 3 --to-alias Production --force true   # recorded override

Exit codes: 0 moved, 2 bad arguments or unknown names, 3 refused by the gate (alias unchanged).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from model_wrapper.data.sources import EVALUATION_ROWS, load_data
from model_wrapper.defaults import DEFAULT_MODEL_NAME, DEFAULT_TOLERANCE
from scripts._cli import connect, fail, one_line_errors

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from model_wrapper.evaluation.evaluate import Evaluation

REFUSED = 3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registered-model-name", default=DEFAULT_MODEL_NAME)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from-alias", default="staging")
    source.add_argument("--version")
    parser.add_argument("--to-alias", default="Production")
    parser.add_argument("--data", default="", help='a candle CSV or "synthetic": the evidence')
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    parser.add_argument("--force", default="false", help="true: move even if the gate refuses")
    args = parser.parse_args(argv)
    force = args.force.strip().lower() in ("true", "1", "yes")
    experiment = connect()
    name, target = args.registered_model_name, args.to_alias
    with one_line_errors():
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from model_wrapper.evaluation.evaluate import (
            NoEvidence,
            describe,
            evaluate,
            gate_reasons,
            has_training_period,
        )
        from model_wrapper.registry.aliases import move_alias

        client = MlflowClient()
        if args.version:
            candidate = str(client.get_model_version(name, args.version).version)
        else:
            candidate = str(client.get_model_version_by_alias(name, args.from_alias).version)
        try:
            holder: str | None = str(client.get_model_version_by_alias(name, target).version)
        except MlflowException:
            holder = None  # the alias does not exist yet
        if holder == candidate:
            print(f"{name}@{target} is version {candidate} already")
            return
        if not args.data:
            if not force:
                fail(
                    f"promote needs --data (a candle CSV or synthetic) to gate {name} version "
                    f"{candidate} against persistence and @{target}; --force true moves it "
                    "without evidence, recorded on the version"
                )
            _record(client, name, candidate, target, "none: forced without data", forced=True)
            move_alias(name, target, candidate, moved_by="promote (forced)")
            print(f"{name}@{target} -> version {candidate} (forced, without evidence)")
            return
        data = load_data(args.data, default_rows=EVALUATION_ROWS)
        baseline = f"models:/{name}/{holder}" if holder else None
        if baseline and not has_training_period(baseline):
            print(
                f"note: version {holder}, the current holder of @{target}, records no training "
                "period, so it cannot be scored out of sample: compared with persistence only"
            )
            baseline = None
        try:
            evaluation = evaluate(f"models:/{name}/{candidate}", data, baseline, experiment)
        except NoEvidence as e:
            fail(str(e))
        reasons = gate_reasons(evaluation, args.tolerance)
        evidence = describe(evaluation)
        if reasons and not force:
            print(f"refused: version {candidate} stays off @{target}: " + "; ".join(reasons))
            print(f"evidence: {evidence}")
            raise SystemExit(REFUSED)
        _record(
            client, name, candidate, target, evidence, forced=bool(reasons), evaluation=evaluation
        )
        move_alias(name, target, candidate, moved_by="promote")
    verdict = "forced past the gate: " + "; ".join(reasons) if reasons else "passed the gate"
    print(f"{name}@{target} -> version {candidate} ({verdict})\nevidence: {evidence}")


def _record(
    client: MlflowClient,
    name: str,
    version: str,
    target: str,
    evidence: str,
    forced: bool,
    evaluation: Evaluation | None = None,
) -> None:
    """The evidence behind an alias move, as version tags and in the description."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    tags = {f"promoted_to_{target}": now, "promotion_forced": str(forced).lower()}
    if evaluation is not None:
        m = evaluation.metrics
        tags |= {
            "promotion_evaluation_run_id": evaluation.run_id,
            "promotion_mae_ratio_to_persistence": f"{m['mae_ratio_to_persistence']:.4f}",
            "promotion_interval_coverage": f"{m['interval_coverage']:.3f}",
        }
        if evaluation.baseline is not None:
            tags["promotion_mae_ratio_to_champion"] = f"{m['mae_ratio_to_baseline']:.4f}"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    before = client.get_model_version(name, version).description or ""
    line = f"{now}: {'FORCED onto' if forced else 'promoted to'} @{target}. Evidence: {evidence}"
    client.update_model_version(name, version, description=f"{before}\n\n{line}".strip())


if __name__ == "__main__":
    main()
