"""Score every complete window of a candle history with a registered version, on Spark.

    python -m scripts.score --model models:/BTC_LSTM_Production@Production --data BTC-USD.csv \\
        --output scores.parquet
    python -m scripts.score ... --spark-master spark://host:7077

Writes Parquet (a directory), one row per window: time, target_time, last_close, the three
forecasts and actual_close (null while unknown), through `mlflow.pyfunc.spark_udf`; logs a run
tagged run_kind=scoring with the data as its input and the row count.
"""

from __future__ import annotations

import argparse

from model_wrapper.data.sources import load_data
from model_wrapper.scoring.spark import DEFAULT_MASTER
from scripts._cli import connect, one_line_errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="models:/NAME@alias or models:/NAME/N")
    parser.add_argument("--data", required=True, help='a candle CSV, or "synthetic[:N]"')
    parser.add_argument("--output", required=True, help="where the Parquet goes (replaced)")
    parser.add_argument(
        "--spark-master", default=DEFAULT_MASTER, help="local[*] (embedded) or a master URL"
    )
    args = parser.parse_args(argv)
    experiment = connect()
    with one_line_errors():
        from model_wrapper.scoring.spark import score

        scored = score(args.model, load_data(args.data), args.output, args.spark_master, experiment)
    print(
        f"scored {scored.rows} windows in {scored.seconds:.1f} s "
        f"({scored.rows / scored.seconds:,.0f} windows/s) -> {scored.output} (run {scored.run_id})"
    )


if __name__ == "__main__":
    main()
