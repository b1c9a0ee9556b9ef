"""Walk-forward backtest of the training recipe: refit on an expanding window, score the next
period out of sample, pool every period's forecasts.

This is how the recipe's settings are chosen: on periods after each refit's data, never on a
model's own training period.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from model_wrapper.data.sources import DataSource
from model_wrapper.data.windows import Windows, make_windows
from model_wrapper.errors import UsageError
from model_wrapper.evaluation.metrics import ewma_fhs_interval, score_forecasts
from model_wrapper.evaluation.panels import Forecasts
from model_wrapper.evaluation.reports import backtest_report
from model_wrapper.evaluation.windows_table import log_windows_table, scored_windows_table
from model_wrapper.model.transforms import LOWER, POINT, UPPER
from model_wrapper.training.recipe import TrainConfig, fit_recipe


@dataclass(frozen=True)
class Period:
    start: pd.Timestamp
    end: pd.Timestamp  # exclusive


@dataclass(frozen=True)
class BacktestResult:
    run_id: str
    table: pd.DataFrame  # one row per (seed, period)
    windows: pd.DataFrame  # one row per (seed, scored window): the per-window table
    pooled: dict[str, float]  # over every period, seeds averaged
    pooled_by_seed: dict[int, dict[str, float]]


def periods(times: pd.DatetimeIndex, start: pd.Timestamp, refit_days: int) -> list[Period]:
    """Consecutive periods of `refit_days` from `start` up to the last target time."""
    if start <= times[0] or start > times[-1]:
        raise UsageError(
            f"start {start:%Y-%m-%d} must fall inside the data's targets, "
            f"{times[0]:%Y-%m-%d} .. {times[-1]:%Y-%m-%d}"
        )
    edges = list(pd.date_range(start, times[-1], freq=f"{refit_days}D"))
    edges.append(times[-1] + pd.Timedelta(seconds=1))
    return [Period(a, b) for a, b in itertools.pairwise(edges) if a < b]


def walk_forward(
    data: DataSource,
    config: TrainConfig,
    start: pd.Timestamp,
    refit_days: int = 180,
    seeds: tuple[int, ...] = (42,),
    experiment: str | None = None,
) -> BacktestResult:
    """Refit the recipe before every period and score it there; logs a parent run with one
    child run per (seed, period)."""
    windows = make_windows(data.candles, config.seq_len)
    plan = periods(windows.times, start, refit_days)
    level = config.interval_level
    if experiment:
        mlflow.set_experiment(experiment)
    rows: list[dict[str, Any]] = []
    window_rows: list[pd.DataFrame] = []
    pooled_parts: dict[int, list[tuple[Windows, dict[str, np.ndarray]]]] = {s: [] for s in seeds}
    with mlflow.start_run() as parent:
        mlflow.set_tag("run_kind", "backtest")  # also when `mlflow run` made the run
        mlflow.log_params(
            {
                **{k: v for k, v in vars(config).items() if k != "seed"},
                "seeds": ",".join(map(str, seeds)),
                # Not "data" or "start": `mlflow run` logs its own parameters under those.
                "data_source": data.source,
                "first_period": f"{start:%Y-%m-%d}",
                "refit_days": refit_days,
                "periods": len(plan),
            }
        )
        data.log_input("backtest")
        for seed in seeds:
            for fold, period in enumerate(plan):
                fit_part = windows.select(np.flatnonzero(windows.times < period.start))
                test_part = windows.select(
                    np.flatnonzero((windows.times >= period.start) & (windows.times < period.end))
                )
                scored = _score_period(data, replace(config, seed=seed), fit_part, test_part)
                pooled_parts[seed].append((test_part, scored["columns"]))
                window_rows.append(
                    scored_windows_table(
                        test_part,
                        data.candles.index,
                        scored["columns"],
                        {"fold": fold, "seed": seed},
                    )
                )
                row = {
                    "seed": seed,
                    "fold": fold,
                    "period_start": period.start,
                    "period_end": test_part.times[-1],
                    "train_end": fit_part.times[-1],
                    **scored["metrics"],
                    "shrinkage": scored["shrinkage"],
                }
                rows.append(row)
                with mlflow.start_run(
                    run_name=f"seed {seed} {period.start:%Y-%m-%d}",
                    nested=True,
                    tags={"run_kind": "backtest_period"},
                ):
                    mlflow.log_params(
                        {
                            "seed": seed,
                            "fold": fold,
                            "period_start": f"{period.start:%Y-%m-%d}",
                            "train_end": fit_part.times[-1].isoformat(),
                        }
                    )
                    mlflow.log_metrics({k: v for k, v in row.items() if isinstance(v, float | int)})
        by_seed = {seed: _pool(data, parts, level) for seed, parts in pooled_parts.items()}
        pooled = {k: float(np.mean([m[k] for m in by_seed.values()])) for k in by_seed[seeds[0]]}
        if len(seeds) > 1:
            for key in ("mae_ratio_to_persistence", "interval_coverage"):
                values = [m[key] for m in by_seed.values()]
                pooled[f"{key}_min"], pooled[f"{key}_max"] = min(values), max(values)
        mlflow.log_metrics({f"pooled_{k}": v for k, v in pooled.items()})
        table = pd.DataFrame(rows)
        mlflow.log_table(
            table.astype({"period_start": str, "period_end": str, "train_end": str}),
            "backtest.json",
        )
        mlflow.log_text(table.to_csv(index=False), "backtest.csv")
        # Seed-major as made; in time order (then by seed, in the order given) for the table.
        per_window = pd.concat(window_rows, ignore_index=True)
        per_window = per_window.sort_values("time", kind="stable", ignore_index=True)
        log_windows_table(per_window)
        mlflow.log_figure(
            backtest_report(
                table,
                pooled,
                f"Walk-forward, refit every {refit_days} days",
                _forecasts(per_window[per_window["seed"] == seeds[0]], level),
                f"Every period's forecasts (seed {seeds[0]}), each from the refit before it",
            ),
            "backtest.png",
        )
    return BacktestResult(parent.info.run_id, table, per_window, pooled, by_seed)


def _forecasts(rows: pd.DataFrame, level: float) -> Forecasts:
    return Forecasts(
        pd.DatetimeIndex(rows["target_time"]),
        rows["actual_close"].to_numpy(),
        rows["last_close"].to_numpy(),
        rows[POINT].to_numpy(),
        rows[LOWER].to_numpy(),
        rows[UPPER].to_numpy(),
        level,
    )


def _score_period(
    data: DataSource, config: TrainConfig, fit_part: Windows, test_part: Windows
) -> dict[str, Any]:
    fitted = fit_recipe(fit_part, config, verbose=0)
    columns = fitted.predict(test_part)
    metrics = score_forecasts(
        test_part.next_close,
        test_part.last_close,
        columns[POINT],
        columns[LOWER],
        columns[UPPER],
        config.interval_level,
        ewma=ewma_fhs_interval(data.candles["close"], test_part.times, config.interval_level),
    )
    return {"columns": columns, "metrics": metrics, "shrinkage": fitted.forecast["shrinkage"]}


def _pool(
    data: DataSource, parts: list[tuple[Windows, dict[str, np.ndarray]]], level: float
) -> dict[str, float]:
    windows = Windows(
        x=np.concatenate([w.x for w, _ in parts]),
        target=np.concatenate([w.target for w, _ in parts]),
        next_close=np.concatenate([w.next_close for w, _ in parts]),
        times=pd.DatetimeIndex(np.concatenate([w.times for w, _ in parts])),
    )
    columns = {k: np.concatenate([c[k] for _, c in parts]) for k in parts[0][1]}
    return score_forecasts(
        windows.next_close,
        windows.last_close,
        columns[POINT],
        columns[LOWER],
        columns[UPPER],
        level,
        ewma=ewma_fhs_interval(data.candles["close"], windows.times, level),
    )
