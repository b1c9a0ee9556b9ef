"""Log a new wrapper version around an already trained one: the repository's current pyfunc.py,
the source's network, scaler and metadata, no training.

    python -m scripts.wrap --source models:/BTC_LSTM_Production@staging
    python -m scripts.wrap --source models:/BTC_LSTM_Production/3 --alias staging --data BTC-USD.csv

The new version is registered under the source's registered model (or --registered-model-name)
with lineage tags; --alias moves only if given, and only if the new version's outputs on the
input example equal the source's. With --data the new version is evaluated out of sample.
"""

from __future__ import annotations

import argparse

from model_wrapper.data.sources import EVALUATION_ROWS, load_data
from scripts._cli import connect, fail, one_line_errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="models:/NAME/N or models:/NAME@alias")
    parser.add_argument("--registered-model-name", default="", help="default: the source's")
    parser.add_argument("--alias", default="", help="alias to point at the new version")
    parser.add_argument(
        "--data", default="", help='a candle CSV or "synthetic": evaluate the new version on it'
    )
    args = parser.parse_args(argv)
    experiment = connect()
    with one_line_errors():
        from model_wrapper.evaluation.evaluate import NoEvidence, describe, evaluate
        from model_wrapper.registry.rewrap import rewrap

        data = load_data(args.data, default_rows=EVALUATION_ROWS) if args.data else None
        result = rewrap(
            args.source,
            registered_model_name=args.registered_model_name or None,
            alias=args.alias or None,
            experiment=experiment,
        )
        new_uri = f"models:/{result.name}/{result.version}"
        print(f"registered {new_uri}, wrapped from {result.source_uri} (run {result.run_id})")
        verdict = "the same" if result.same_outputs else "DIFFERENT"
        print(
            f"  outputs vs the source on the input example: max abs difference "
            f"{result.max_abs_diff:.3g} USD ({verdict})"
        )
        if result.alias_set:
            print(f"  {result.name}@{args.alias} -> version {result.version}")
        elif args.alias:
            print(
                f"  @{args.alias} left where it was: the outputs differ from the source's; "
                "evaluate the new version and move the alias with scripts.promote"
            )
        if data is not None:
            try:
                evaluation = evaluate(new_uri, data, None, experiment)
            except NoEvidence as e:
                fail(str(e))
            print(f"  evaluated out of sample: {describe(evaluation)}")


if __name__ == "__main__":
    main()
