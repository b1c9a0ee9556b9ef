"""Walk-forward backtest of the training recipe: refit every N days, score the next N days.

    python -m scripts.backtest --data BTC-USD.csv --refit-days 180 --start 2019-01-01
    python -m scripts.backtest --data BTC-USD.csv --seeds 42,1,2   # the spread over seeds

Logs one parent run (pooled metrics, backtest.csv, backtest.png and every period's forecasts,
predictions/windows.parquet) with a child run per period.
"""

from __future__ import annotations

import argparse

import pandas as pd

from model_wrapper.data.sources import load_data
from model_wrapper.training.recipe import TrainConfig
from scripts._cli import connect, one_line_errors


def main(argv: list[str] | None = None) -> None:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help='a candle CSV, or "synthetic:N"')
    parser.add_argument("--refit-days", type=int, default=180)
    parser.add_argument("--start", default="2019-01-01", help="first scored day (UTC)")
    parser.add_argument("--seeds", default=str(defaults.seed), help="comma-separated")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--ensemble", type=int, default=defaults.ensemble)
    args = parser.parse_args(argv)
    experiment = connect()
    with one_line_errors():
        from model_wrapper.evaluation.backtest import walk_forward

        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
        data = load_data(args.data)
        config = TrainConfig(epochs=args.epochs, ensemble=args.ensemble)
        start = pd.Timestamp(args.start, tz="UTC")
        result = walk_forward(data, config, start, args.refit_days, seeds, experiment)
    columns = [
        "seed",
        "period_start",
        "n_windows",
        "shrinkage",
        "mae_ratio_to_persistence",
        "dm_pvalue_vs_persistence",
        "interval_coverage",
        "ewma_interval_coverage",
    ]
    table = result.table[columns].copy()
    table["pinball_vs_ewma"] = (
        result.table["interval_pinball_loss"] / result.table["ewma_interval_pinball_loss"]
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    p = result.pooled
    print(
        f"pooled over {int(p['n_windows'])} windows: MAE ratio to persistence "
        f"{p['mae_ratio_to_persistence']:.4f}, 80% interval coverage "
        f"{p['interval_coverage']:.3f} (EWMA-FHS {p['ewma_interval_coverage']:.3f}), pinball "
        f"{p['interval_pinball_loss'] / p['ewma_interval_pinball_loss']:.4f} x EWMA-FHS; "
        f"run {result.run_id}"
    )


if __name__ == "__main__":
    main()
