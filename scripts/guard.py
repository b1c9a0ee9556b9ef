"""Roll an alias back to its previous holder when the version behind it stops earning it live.

    python -m scripts.guard --alias Production --log 'logs/predictions*.jsonl*' \
        --candles BTC-USD.csv --window 90 [--dry-run]

It scores the prediction log against the candles (as the scorecard does), judges the last
--window forecasts of the alias's holder (model_wrapper/evaluation/guard.py) and, when they are
unhealthy, moves the alias back to the version that held it before (recorded by every alias
move), tagging the reason on both. Gateways that poll the alias follow by themselves.

Exit codes: 0 healthy (or not enough evidence yet), 4 rolled back (with --dry-run: would have),
2 usage errors (no such alias, no previous holder to go back to, no log).
"""

from __future__ import annotations

import argparse
import glob
from datetime import UTC, datetime
from pathlib import Path

from model_wrapper.defaults import DEFAULT_MODEL_NAME, DEFAULT_TOLERANCE
from model_wrapper.errors import UsageError
from scripts._cli import connect, one_line_errors

ROLLED_BACK = 4


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alias", required=True)
    parser.add_argument("--log", action="append", required=True, help="a log file or glob")
    parser.add_argument("--candles", required=True)
    parser.add_argument("--window", type=int, default=90)
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    parser.add_argument("--registered-model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument(
        "--dry-run", nargs="?", const="true", default="false", help="judge, change nothing"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    dry_run = args.dry_run.strip().lower() in ("true", "1", "yes")
    connect()
    name, alias = args.registered_model_name, args.alias
    with one_line_errors():
        from mlflow import MlflowClient

        from model_wrapper.data.candles import load_candles
        from model_wrapper.evaluation.guard import judge
        from model_wrapper.evaluation.live import match, read_lines
        from model_wrapper.registry.aliases import holder, move_alias, previous_holder

        current = holder(name, alias)
        if current is None:
            raise UsageError(f"{name} has no alias @{alias}")
        paths = sorted({Path(p) for pattern in args.log for p in glob.glob(pattern)})
        if not paths:
            raise UsageError(f"no prediction log matches {', '.join(args.log)}")
        lines, unreadable = read_lines(paths)
        matched = match(lines, load_candles(args.candles), unreadable)
        rows = [s for s in matched.scored if s.role == "served" and s.version == current]
        verdict = judge(rows, args.window, args.tolerance)
        print(f"{name}@{alias} is version {current}: {verdict.summary}")
        if verdict.healthy:
            print("healthy: the alias stays")
            return
        reasons = "; ".join(verdict.reasons)
        client = MlflowClient()
        previous = previous_holder(name, alias, current)
        if previous is None:
            raise UsageError(
                f"version {current} is unhealthy ({reasons}), but no previous holder of @{alias} "
                "is recorded: nothing to roll back to"
            )
        previous_tags = client.get_model_version(name, previous).tags or {}
        if f"guard_rolled_back.{alias}" in previous_tags:
            raise UsageError(
                f"version {current} is unhealthy ({reasons}), but the previous holder, version "
                f"{previous}, was rolled back from @{alias} by the guard itself"
            )
        if dry_run:
            print(f"would roll @{alias} back from version {current} to {previous}: {reasons}")
            raise SystemExit(ROLLED_BACK)
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        client.set_model_version_tag(
            name, current, f"guard_rolled_back.{alias}", f"{now}: {reasons}"
        )
        client.set_model_version_tag(
            name, previous, f"guard_restored.{alias}", f"{now}: from version {current}: {reasons}"
        )
        move_alias(name, alias, previous, moved_by="guard")
        print(f"rolled @{alias} back from version {current} to {previous}: {reasons}")
    raise SystemExit(ROLLED_BACK)


if __name__ == "__main__":
    main()
