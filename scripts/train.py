"""Train the LSTM, log the run to MLflow, register a version, and move the alias if it earns it.

    python -m scripts.train --data synthetic --epochs 30
    python -m scripts.train --data path/to/BTC-USD.csv --alias staging --end 2023-12-31

Every version is registered; the alias moves only if the version's holdout MAE is at most
(1 + tolerance) x persistence's. The tracking server comes from MLFLOW_TRACKING_URI (default
http://127.0.0.1:5000).
"""

from __future__ import annotations

import argparse
import logging

from model_wrapper.data.sources import DEMO_ROWS, cut_at, load_data
from model_wrapper.defaults import DEFAULT_ALIAS, DEFAULT_MODEL_NAME, DEFAULT_TOLERANCE
from model_wrapper.model.features import min_candles
from model_wrapper.training.recipe import TrainConfig
from model_wrapper.training.run import train_and_register
from scripts._cli import connect, fail, one_line_errors


def main(argv: list[str] | None = None) -> None:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default="synthetic", help=f'"synthetic[:N]" ({DEMO_ROWS} rows) or a candle CSV'
    )
    # Every TrainConfig field a person tunes (the fractions and the interval level stay fixed).
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--seq-len", type=int, default=defaults.seq_len)
    parser.add_argument("--units", type=int, default=defaults.units)
    parser.add_argument("--ensemble", type=int, default=defaults.ensemble)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--end", default="", help="cut the data at this date (inclusive)")
    parser.add_argument("--alias", default=DEFAULT_ALIAS, help='alias to set; "" for none')
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    parser.add_argument("--registered-model-name", default=DEFAULT_MODEL_NAME)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # `mlflow run -P name=value` passes a name MLproject does not declare as `--name value`.
        known = sorted(a.dest for a in parser._actions if a.dest != "help")
        fail(f"unknown parameter {unknown[0].lstrip('-')!r}; train takes {', '.join(known)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    experiment = connect()
    for name in ("seed", "epochs", "seq_len", "units", "ensemble", "batch_size", "patience"):
        if getattr(args, name) < (0 if name == "seed" else 1):
            fail(f"{name} must be at least {0 if name == 'seed' else 1}, got {getattr(args, name)}")
    if not args.learning_rate > 0:
        fail(f"learning_rate must be positive, got {args.learning_rate}")
    config = TrainConfig(
        seq_len=args.seq_len,
        epochs=args.epochs,
        units=args.units,
        ensemble=args.ensemble,
        seed=args.seed,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        patience=args.patience,
    )
    with one_line_errors():
        enough = min_candles(config.seq_len) + 3
        data = load_data(args.data, min_rows=enough)
        if args.end:
            data = cut_at(data, args.end, min_rows=enough)
        result = train_and_register(
            data,
            config,
            registered_model_name=args.registered_model_name,
            alias=args.alias or None,
            experiment=experiment,
            tolerance=args.tolerance,
        )
    name = args.registered_model_name
    print(f"registered {name} version {result.version} in {result.seconds:.1f} s")
    print(f"  {result.gate_message}")
    if args.alias and result.alias_set:
        print(f"  {name}@{args.alias} -> version {result.version}")
    elif args.alias:
        print(
            f"  @{args.alias} left where it was: the version stays registered for inspection "
            f"(models:/{name}/{result.version})"
        )


if __name__ == "__main__":
    main()
