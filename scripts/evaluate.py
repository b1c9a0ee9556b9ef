"""Evaluate a logged model out of sample: only windows after its training period are scored.

    python -m scripts.evaluate --model models:/BTC_LSTM_Production@staging --data BTC-USD.csv
    python -m scripts.evaluate --model models:/BTC_LSTM_Production/3 --data synthetic \\
        --baseline models:/BTC_LSTM_Production@Production

Logs an evaluation run (metrics, evaluation.json, evaluation_report.png and the per-window
forecasts, predictions/windows.parquet) and tags the version.
"""

from __future__ import annotations

import argparse

from model_wrapper.data.sources import EVALUATION_ROWS, load_data
from scripts._cli import connect, fail, one_line_errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="models:/NAME@alias, models:/NAME/N, ...")
    parser.add_argument(
        "--data",
        default="synthetic",
        help=f'a candle CSV, or "synthetic" (the demo series continued: {EVALUATION_ROWS} rows)',
    )
    parser.add_argument("--baseline", default="", help="another model URI to compare with")
    args = parser.parse_args(argv)
    experiment = connect()
    with one_line_errors():
        from model_wrapper.evaluation.evaluate import NoEvidence, describe, evaluate

        data = load_data(args.data, default_rows=EVALUATION_ROWS)
        try:
            result = evaluate(args.model, data, args.baseline or None, experiment)
        except NoEvidence as e:
            fail(str(e))
    m = result.metrics
    print(f"scored {describe(result)}")
    for key in sorted(m):
        print(f"  {key:32s} {m[key]:.6g}")


if __name__ == "__main__":
    main()
