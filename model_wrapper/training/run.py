"""The training run: fit the recipe on a data source, log everything to MLflow, register a
version, and move the alias only if the version passes the gate (model_wrapper/evaluation/gate.py).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import mlflow
import numpy as np
import pandas as pd

from model_wrapper.data.sources import DataSource
from model_wrapper.data.windows import Windows, make_windows, training_period
from model_wrapper.defaults import (
    DEFAULT_ALIAS,
    DEFAULT_EXPERIMENT,
    DEFAULT_MODEL_NAME,
    DEFAULT_TOLERANCE,
)
from model_wrapper.evaluation.gate import gate
from model_wrapper.evaluation.metrics import ewma_fhs_interval, score_forecasts
from model_wrapper.evaluation.reports import forecast_report
from model_wrapper.model.features import FEATURE_NAMES
from model_wrapper.model.transforms import LOWER, POINT, UPPER
from model_wrapper.registry.publish import log_forecaster
from model_wrapper.training.network import FitHistory
from model_wrapper.training.recipe import TrainConfig, fit_recipe


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    version: str
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    alias_set: bool = False
    gate_message: str = ""
    persistence_only: bool = False  # shrinkage 0: the point forecast is the last close


def train_and_register(
    data: DataSource | pd.DataFrame,
    config: TrainConfig = TrainConfig(),
    registered_model_name: str = DEFAULT_MODEL_NAME,
    alias: str | None = DEFAULT_ALIAS,
    experiment: str | None = DEFAULT_EXPERIMENT,
    tolerance: float = DEFAULT_TOLERANCE,
) -> TrainResult:
    """Fit the recipe, log it, register a version, and point `alias` at it only if the version
    passes the gate on its own holdout (model_wrapper/evaluation/gate.py)."""
    started = time.perf_counter()
    source = data if isinstance(data, DataSource) else DataSource("in-memory DataFrame", data)
    candles = source.candles
    windows = make_windows(candles, config.seq_len)
    if experiment:
        mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        period = training_period(windows)
        mlflow.log_params(
            {
                **asdict(config),
                "data_source": source.source,
                "data_digest": source.digest,
                **period,
                "n_candles": len(candles),
                "n_windows": len(windows),
                "n_features": len(FEATURE_NAMES),
            }
        )
        source.log_input("training")
        fitted = fit_recipe(windows, config, on_epoch_end=_log_epoch)
        train, val, hold = fitted.split
        mlflow.log_params(
            {
                "n_train": train.stop - train.start,
                "n_validation": val.stop - val.start,
                "n_holdout": hold.stop - hold.start,
            }
        )
        mlflow.log_metrics(
            {
                **_fit_summary(fitted.history),
                "shrinkage": fitted.forecast["shrinkage"],
                "interval_widen": fitted.forecast["interval_widen"],
            }
        )
        holdout = windows.select(hold)
        columns = fitted.predict(holdout)
        level = config.interval_level
        scores = score_forecasts(
            holdout.next_close,
            holdout.last_close,
            columns[POINT],
            columns[LOWER],
            columns[UPPER],
            level,
            ewma=ewma_fhs_interval(candles["close"], holdout.times, level),
        )
        versus, cannot_compare, current = _versus_holder(
            registered_model_name, alias, holdout, columns, level
        )
        metrics = {f"holdout_{k}": v for k, v in (scores | versus).items()}
        mlflow.log_metrics(metrics)
        ratio = scores["mae_ratio_to_persistence"]
        refusals = gate(scores | versus, level, tolerance, holder=current if versus else None)
        refusals += cannot_compare
        passed = not refusals
        persistence_only = fitted.forecast["shrinkage"] == 0
        mlflow.log_figure(
            forecast_report(
                holdout.times,
                holdout.next_close,
                holdout.last_close,
                columns[POINT],
                columns[LOWER],
                columns[UPPER],
                scores,
                "Holdout (the end of the training period)",
            ),
            "holdout_report.png",
        )
        summary = (
            f"holdout MAE {scores['mae']:.2f} USD = {ratio:.4f} x persistence "
            f"({scores['persistence_mae']:.2f} USD) over {len(holdout)} windows"
            + (
                f", {versus['mae_ratio_to_baseline']:.4f} x version {current}'s (the holder of "
                f"@{alias}) on the {int(versus['n_shared_with_holder'])} it was not trained on"
                if versus
                else ""
            )
            + f"; the gate allows {1 + tolerance:.4f}"
        )
        description = (
            (PERSISTENCE_NOTE if persistence_only else "")
            + f"Trained on {source.source} (digest {source.digest}), targets "
            f"{period['train_start']} .. {period['train_end']}. {summary}; 80% interval "
            f"covers {scores['interval_coverage']:.3f} of the holdout."
        )
        version = log_forecaster(
            fitted.network,
            fitted.scaler,
            list(FEATURE_NAMES),
            windows.x[-1:].astype(np.float32),
            registered_model_name=registered_model_name,
            alias=alias if passed else None,
            extra_metadata={
                "forecast": fitted.forecast,
                "data_source": source.source,
                "data_digest": source.digest,
                **period,
            },
            tags={
                "data_source": source.source,
                "data_digest": source.digest,
                **period,
                "holdout_mae_ratio_to_persistence": f"{ratio:.4f}",
                "holdout_interval_coverage": f"{scores['interval_coverage']:.3f}",
                "holdout_gate": "passed" if passed else "failed",
                **({"point_forecast": "persistence"} if persistence_only else {}),
            },
            description=description,
        )
        seconds = time.perf_counter() - started
        mlflow.log_metric("train_seconds", seconds)
    gate_message = summary if passed else f"{summary}: refused, " + "; ".join(refusals)
    return TrainResult(
        run_id=run.info.run_id,
        version=version,
        metrics=metrics,
        seconds=seconds,
        alias_set=bool(alias) and passed,
        gate_message=(PERSISTENCE_NOTE if persistence_only else "") + gate_message,
        persistence_only=persistence_only,
    )


PERSISTENCE_NOTE = (
    "Its point forecast is persistence (validation chose shrinkage 0): the next close is the last "
    "close; only the interval comes from the network. "
)


def _versus_holder(
    name: str, alias: str | None, holdout: Windows, columns: dict[str, np.ndarray], level: float
) -> tuple[dict[str, float], list[str], str | None]:
    """The new version against the alias's holder on the holdout windows neither was trained
    on: (figures, why they cannot be compared, the holder). No holder, or one that records no
    training period (compared with persistence only): no figures and nothing refused."""
    from model_wrapper.evaluation.evaluate import load
    from model_wrapper.evaluation.metrics import compare_to_baseline
    from model_wrapper.registry.aliases import holder

    current = holder(name, alias) if alias else None
    if current is None:
        return {}, [], None
    held = load(f"models:/{name}/{current}")
    if held.train_end is None:
        return {}, [], current
    shared = np.flatnonzero(holdout.times > held.train_end)
    if len(shared) == 0:
        return (
            {},
            [
                f"version {current}, which holds @{alias}, was trained on targets up to "
                f"{held.train_end:%Y-%m-%d %H:%M}, past this holdout's last "
                f"({holdout.times[-1]:%Y-%m-%d %H:%M}): no window is out of sample for both, so "
                "they cannot be compared (shadow this version behind it and promote it on live "
                "evidence)"
            ],
            current,
        )
    windows = holdout.select(shared)
    base = held.forecast(windows)
    interval = (base[LOWER], base[UPPER]) if LOWER in base else None
    versus = compare_to_baseline(
        windows.next_close, columns[POINT][shared], base[POINT], interval, level
    )
    return versus | {"n_shared_with_holder": float(len(shared))}, [], current


def _fit_summary(histories: tuple[FitHistory, ...]) -> dict[str, float]:
    """Best and stopped epochs, and the losses of the restored (best) weights, per member."""
    summary: dict[str, float] = {}
    for i, h in enumerate(histories):
        prefix = f"member{i}_" if len(histories) > 1 else ""
        summary |= {
            f"{prefix}best_epoch": h.best_epoch,
            f"{prefix}stopped_epoch": h.stopped_epoch,
            f"{prefix}final_loss": h.losses["loss"][h.best_epoch],
            f"{prefix}final_val_loss": h.losses["val_loss"][h.best_epoch],
        }
    return summary


def _log_epoch(epoch: int, logs: dict[str, float]) -> None:
    mlflow.log_metrics(logs, step=epoch)
