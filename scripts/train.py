"""Train the LSTM, log the run to MLflow and register the wrapper behind an alias.

    python -m scripts.train --data synthetic --epochs 30
    python -m scripts.train --data path/to/BTC-USD.csv --alias staging

The tracking server comes from MLFLOW_TRACKING_URI (default http://127.0.0.1:5000).
"""

from __future__ import annotations

import argparse
import logging
import os

import mlflow

from model_wrapper.candles import load_candles
from model_wrapper.features import min_candles
from model_wrapper.publish import DEFAULT_ALIAS, DEFAULT_MODEL_NAME
from model_wrapper.synthetic import synthetic_candles
from model_wrapper.training import TrainConfig, train_and_register

DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"


def main(argv: list[str] | None = None) -> None:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic", help='"synthetic" or a candle CSV path')
    parser.add_argument("--synthetic-rows", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--seq-len", type=int, default=defaults.seq_len)
    parser.add_argument("--units", type=int, default=defaults.units)
    parser.add_argument("--alias", default=DEFAULT_ALIAS, help='alias to set; "" for none')
    parser.add_argument("--registered-model-name", default=DEFAULT_MODEL_NAME)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI))
    config = TrainConfig(seq_len=args.seq_len, epochs=args.epochs, units=args.units, seed=args.seed)
    if args.data == "synthetic":
        candles = synthetic_candles(args.synthetic_rows, seed=args.seed)
    else:
        candles = load_candles(args.data, min_rows=min_candles(config.seq_len) + 3)
    result = train_and_register(
        candles,
        config,
        registered_model_name=args.registered_model_name,
        alias=args.alias or None,
        data_label=args.data,
        # Under `mlflow run` the run already exists (MLFLOW_RUN_ID) in its own experiment.
        experiment=None if os.environ.get("MLFLOW_RUN_ID") else "btc-lstm",
    )
    m = result.metrics
    print(
        f"registered {args.registered_model_name} version {result.version}"
        + (f" as @{args.alias}" if args.alias else "")
        + f" in {result.seconds:.1f} s; holdout MAE {m['holdout_mae_usd']:.2f} USD "
        f"(persistence baseline {m['baseline_mae_usd']:.2f} USD)"
    )


if __name__ == "__main__":
    main()
