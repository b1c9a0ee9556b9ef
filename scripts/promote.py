"""Move a registry alias on evidence: the candidate must tie persistence and the alias's
current holder, with a calibrated interval (the one gate).

    python -m scripts.promote --from-alias staging --to-alias Production --data BTC-USD.csv
    python -m scripts.promote --version 3 --to-alias staging --data synthetic
    python -m scripts.promote --from-alias challenger --to-alias Production --evidence live
    python -m scripts.promote --version 9 --to-alias Production --evidence backtest:<run id>
    python -m scripts.promote --version 3 --to-alias Production --force true   # recorded override

--evidence offline (the default) evaluates both on --data after both training periods; live
reads the candidate's figures as the shadow behind the holder, as the scorecard last recorded
them (at least --min-windows shared windows); backtest:<run id> accepts a walk-forward backtest
of the candidate's own recipe, for a version retrained on all the data.

Exit codes: 0 moved, 2 bad arguments or unknown names, 3 refused by the gate (alias unchanged).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from model_wrapper.data.sources import EVALUATION_ROWS, load_data
from model_wrapper.defaults import DEFAULT_MODEL_NAME, DEFAULT_TOLERANCE
from model_wrapper.errors import UsageError
from scripts._cli import connect, one_line_errors

REFUSED = 3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registered-model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--from-alias", default="staging", help="the candidate: this alias's")
    parser.add_argument("--version", default="", help="the candidate: this version (wins)")
    parser.add_argument("--to-alias", default="Production")
    parser.add_argument("--evidence", default="offline", help="offline, live or backtest:<run id>")
    parser.add_argument("--data", default="", help='offline evidence: a candle CSV or "synthetic"')
    parser.add_argument("--min-windows", type=int, default=30, help="live evidence: at least")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    parser.add_argument("--force", default="false", help="true: move even if the gate refuses")
    args = parser.parse_args(argv)
    force = args.force.strip().lower() in ("true", "1", "yes")
    experiment = connect()
    name, target = args.registered_model_name, args.to_alias
    with one_line_errors():
        from mlflow import MlflowClient

        from model_wrapper.evaluation import promotion
        from model_wrapper.registry.aliases import holder, move_alias

        client = MlflowClient()
        if args.version:
            candidate = str(client.get_model_version(name, args.version).version)
        else:
            candidate = str(client.get_model_version_by_alias(name, args.from_alias).version)
        current = holder(name, target)
        if current == candidate:
            print(f"{name}@{target} is version {candidate} already")
            return
        tags = client.get_model_version(name, candidate).tags or {}
        if tags.get("point_forecast") == "persistence":
            print(f"note: version {candidate}'s point forecast is persistence (shrinkage 0)")
        kind = args.evidence.strip()
        if kind == "offline" and not args.data:
            if not force:
                raise UsageError(
                    f"promote needs --data (a candle CSV or synthetic) to gate {name} version "
                    f"{candidate} against persistence and @{target} (or --evidence live or "
                    "backtest:<run id>); --force true moves it without evidence, recorded on the "
                    "version"
                )
            evidence = promotion.Evidence("none", [], "none: forced without data")
        elif kind == "offline":
            data = load_data(args.data, default_rows=EVALUATION_ROWS)
            evidence = promotion.offline(name, candidate, current, data, args.tolerance, experiment)
        elif kind == "live":
            evidence = promotion.live(name, candidate, current, args.tolerance, args.min_windows)
        elif kind.startswith("backtest:") and kind.removeprefix("backtest:"):
            run_id = kind.removeprefix("backtest:")
            evidence = promotion.backtest(name, candidate, run_id, args.tolerance)
        else:
            raise UsageError(f"--evidence must be offline, live or backtest:<run id>, got {kind!r}")
        for note in evidence.notes:
            print(f"note: {note}")
        if evidence.reasons and not force:
            print(
                f"refused: version {candidate} stays off @{target}: " + "; ".join(evidence.reasons)
            )
            print(f"evidence: {evidence.summary}")
            raise SystemExit(REFUSED)
        forced = force and (bool(evidence.reasons) or evidence.kind == "none")
        _record(client, name, candidate, target, evidence, forced)
        move_alias(name, target, candidate, moved_by="promote (forced)" if forced else "promote")
    if evidence.kind == "none":
        verdict = "forced, without evidence"
    elif evidence.reasons:
        verdict = "forced past the gate: " + "; ".join(evidence.reasons)
    else:
        verdict = "passed the gate"
    print(f"{name}@{target} -> version {candidate} ({verdict})\nevidence: {evidence.summary}")


def _record(
    client: object, name: str, version: str, target: str, evidence: object, forced: bool
) -> None:
    """The evidence behind an alias move, as version tags and in the description."""
    from mlflow import MlflowClient

    from model_wrapper.evaluation.promotion import Evidence

    assert isinstance(client, MlflowClient) and isinstance(evidence, Evidence)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    tags = {f"promoted_to_{target}": now, "promotion_forced": str(forced).lower(), **evidence.tags}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    before = client.get_model_version(name, version).description or ""
    line = (
        f"{now}: {'FORCED onto' if forced else 'promoted to'} @{target}. "
        f"Evidence ({evidence.kind}): {evidence.summary}"
    )
    client.update_model_version(name, version, description=f"{before}\n\n{line}".strip())


if __name__ == "__main__":
    main()
