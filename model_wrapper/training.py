"""The training recipe: candles -> windows -> chronological split -> LSTM -> calibration.

`fit_recipe` is the recipe alone (no MLflow): `train_and_register` logs and registers what it
fits, and the walk-forward backtest refits it at every period. Every choice the recipe makes
from data (early stopping, shrinkage, interval width) is made on the validation slice; the
holdout slice after it only reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd

from model_wrapper.evaluation import ewma_fhs_interval, score_forecasts
from model_wrapper.features import FEATURE_NAMES, compute_features, min_candles
from model_wrapper.network import QUANTILES, FitHistory, build_network, fit_network, run_network
from model_wrapper.publish import DEFAULT_ALIAS, DEFAULT_MODEL_NAME, log_forecaster
from model_wrapper.pyfunc import (
    CLOSE,
    LOWER,
    POINT,
    UPPER,
    check_windows,
    forecast_prices,
    scale_windows,
    transform_windows,
)
from model_wrapper.report import forecast_report

if TYPE_CHECKING:
    import keras

    from model_wrapper.data import DataSource

DEFAULT_EXPERIMENT = "btc-lstm"
# How much worse than persistence (in MAE) a version may be and still get its alias.
DEFAULT_TOLERANCE = 0.005
# Shrinkage factors tried on validation: the point forecast is persistence moved this fraction
# of the way toward the network's median.
SHRINKAGE_GRID = tuple(round(0.05 * i, 2) for i in range(21))


@dataclass(frozen=True)
class TrainConfig:
    seq_len: int = 12
    epochs: int = 30
    batch_size: int = 64
    units: int = 32
    learning_rate: float = 1e-3
    patience: int = 5
    validation_fraction: float = 0.15
    holdout_fraction: float = 0.15
    interval_level: float = 0.8
    # Networks fitted with seeds seed, seed+1, ... and averaged in one graph.
    ensemble: int = 1
    seed: int = 42


@dataclass(frozen=True)
class Windows:
    x: np.ndarray  # [N, T, F] raw features
    target: np.ndarray  # [N] log(close_{t+1} / close_t)
    next_close: np.ndarray  # [N] the close each window forecasts
    times: pd.DatetimeIndex  # [N] time of each window's target (next) candle

    def __len__(self) -> int:
        return len(self.x)

    @property
    def last_close(self) -> np.ndarray:
        return self.x[:, -1, CLOSE]

    def select(self, which: slice | np.ndarray) -> Windows:
        return Windows(self.x[which], self.target[which], self.next_close[which], self.times[which])


@dataclass(frozen=True)
class Fitted:
    """What the recipe learned: the network, its scaler and its forecast settings."""

    network: keras.Model
    scaler: dict[str, Any]
    forecast: dict[str, Any]  # shrinkage, interval_widen, interval_level, quantiles
    history: tuple[FitHistory, ...]  # one per ensemble member
    split: tuple[slice, slice, slice]  # train, validation, holdout of the windows it saw

    def predict(self, windows: Windows) -> dict[str, np.ndarray]:
        """Prices by OUTPUT_COLUMNS: exactly what the logged pyfunc answers for these windows."""
        outputs = run_network(self.network, scaled_inputs(windows.x, self.scaler))
        return forecast_prices(windows.last_close, outputs, self.scaler, self.forecast)


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    version: str
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    alias_set: bool = False
    gate_message: str = ""


def make_windows(candles: pd.DataFrame, seq_len: int) -> Windows:
    if len(candles) < min_candles(seq_len) + 1:
        raise ValueError(
            f"too few candles: need at least {min_candles(seq_len) + 1} for one training window "
            f"of {seq_len} steps and its target, got {len(candles)}"
        )
    feats = compute_features(candles).to_numpy(dtype=np.float64)
    close = feats[:, CLOSE]
    n = len(feats) - seq_len  # the last window has no next close to learn from
    idx = np.arange(seq_len)[None, :] + np.arange(n)[:, None]
    x = feats[idx]
    next_close = close[seq_len:]
    target = np.log(next_close / x[:, -1, CLOSE])
    times = pd.DatetimeIndex(candles.index[-n:])
    return Windows(x=x, target=target, next_close=next_close, times=times)


def chronological_split(n: int, validation: float, holdout: float) -> tuple[slice, slice, slice]:
    n_hold = max(1, round(n * holdout))
    n_val = max(1, round(n * validation))
    n_train = n - n_val - n_hold
    if n_train < 1:
        raise ValueError(f"{n} windows are too few to split into train, validation and holdout")
    return slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, n)


def fit_scaler(x_train: np.ndarray, target_train: np.ndarray) -> dict[str, Any]:
    flat = transform_windows(x_train).reshape(-1, x_train.shape[-1])
    scale = flat.std(axis=0)
    return {
        "mean": flat.mean(axis=0).tolist(),
        # A constant feature keeps scale 1 instead of dividing by zero.
        "scale": np.where(scale > 1e-12, scale, 1.0).tolist(),
        "target_mean": float(target_train.mean()),
        "target_scale": float(target_train.std() or 1.0),
    }


def scaled_inputs(x: np.ndarray, scaler: dict[str, Any]) -> np.ndarray:
    """The network's float32 input for raw windows: the pyfunc's own scaling."""
    return scale_windows(np.asarray(x, np.float64), scaler["mean"], scaler["scale"]).astype(
        np.float32
    )


def choose_shrinkage(last_close: np.ndarray, median: np.ndarray, actual: np.ndarray) -> float:
    """The factor in SHRINKAGE_GRID with the lowest MAE in USD (ties go to the smaller one)."""
    maes = [np.mean(np.abs(last_close * np.exp(k * median) - actual)) for k in SHRINKAGE_GRID]
    return SHRINKAGE_GRID[int(np.argmin(maes))]


def calibrate_interval(log_returns: np.ndarray, actual: np.ndarray, level: float) -> float:
    """How far to move the outer quantiles apart so that they cover `level` of `actual`.

    Split-conformal calibration of a quantile regression (Romano, Patterson and Candès, 2019):
    a window's score is how far its outcome lies outside [low, high] (negative inside), and the
    finite-sample `level` quantile of the scores is the widening. It widens a head that
    under-covers and narrows one that over-covers.
    """
    low, _, high = np.sort(log_returns, axis=1).T
    scores = np.maximum(low - actual, actual - high)
    n = len(scores)
    rank = min(1.0, np.ceil((n + 1) * level) / n)
    return float(np.quantile(scores, rank, method="higher"))


def fit_recipe(
    windows: Windows,
    config: TrainConfig,
    verbose: int = 2,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> Fitted:
    """Fit the network on the train slice; choose shrinkage and interval width on validation."""
    import keras

    check_windows(windows.x, config.seq_len, len(FEATURE_NAMES), list(FEATURE_NAMES))
    train, val, hold = chronological_split(
        len(windows), config.validation_fraction, config.holdout_fraction
    )
    scaler = fit_scaler(windows.x[train], windows.target[train])

    def targets(part: slice) -> np.ndarray:
        t: np.ndarray = (windows.target[part] - scaler["target_mean"]) / scaler["target_scale"]
        return t.astype(np.float32)[:, None]

    fit_data = (scaled_inputs(windows.x[train], scaler), targets(train))
    validation_data = (scaled_inputs(windows.x[val], scaler), targets(val))
    members, histories = [], []
    for member in range(config.ensemble):
        keras.utils.set_random_seed(config.seed + member)
        network = build_network(
            config.seq_len,
            len(FEATURE_NAMES),
            config.units,
            config.learning_rate,
            name=f"btc_lstm_{member}" if config.ensemble > 1 else "btc_lstm",
        )
        histories.append(
            fit_network(
                network,
                fit_data,
                validation_data,
                epochs=config.epochs,
                batch_size=config.batch_size,
                patience=config.patience,
                on_epoch_end=_member_logger(on_epoch_end, member, config.ensemble),
                verbose=verbose,
            )
        )
        members.append(network)
    network = average_networks(members, config.seq_len, len(FEATURE_NAMES))
    outputs = run_network(network, validation_data[0])
    log_returns = outputs * scaler["target_scale"] + scaler["target_mean"]
    validation = windows.select(val)
    forecast = {
        "quantiles": list(QUANTILES),
        "shrinkage": choose_shrinkage(
            validation.last_close, np.sort(log_returns, axis=1)[:, 1], validation.next_close
        ),
        "interval_level": config.interval_level,
        "interval_widen": calibrate_interval(log_returns, validation.target, config.interval_level),
    }
    return Fitted(network, scaler, forecast, tuple(histories), (train, val, hold))


def average_networks(members: list[keras.Model], seq_len: int, n_features: int) -> keras.Model:
    """One model whose output is the members' mean: the ensemble runs as a single graph call."""
    import keras

    if len(members) == 1:
        return members[0]
    # Uncompiled copies: a nested model's training config (its custom loss) would otherwise be
    # needed to load the saved ensemble, even with compile=False.
    copies = []
    for member in members:
        copy = build_network(
            seq_len, n_features, member.layers[0].units, name=member.name, compile=False
        )
        copy.set_weights(member.get_weights())
        copies.append(copy)
    inputs = keras.Input((seq_len, n_features))
    outputs = keras.layers.Average()([copy(inputs) for copy in copies])
    return keras.Model(inputs, outputs, name="btc_lstm_ensemble")


def _member_logger(
    log: Callable[[int, dict[str, float]], None] | None, member: int, members: int
) -> Callable[[int, dict[str, float]], None] | None:
    if log is None or members == 1:
        return log
    return lambda epoch, logs: log(epoch, {f"member{member}_{k}": v for k, v in logs.items()})


def training_period(windows: Windows) -> dict[str, str]:
    """The first and last target candle the recipe used (fit, validation or holdout)."""
    return {"train_start": windows.times[0].isoformat(), "train_end": windows.times[-1].isoformat()}


def train_and_register(
    data: DataSource | pd.DataFrame,
    config: TrainConfig = TrainConfig(),
    registered_model_name: str = DEFAULT_MODEL_NAME,
    alias: str | None = DEFAULT_ALIAS,
    experiment: str | None = DEFAULT_EXPERIMENT,
    tolerance: float = DEFAULT_TOLERANCE,
) -> TrainResult:
    """Fit the recipe, log it, register a version, and point `alias` at it only if the version
    is no worse than persistence on its own holdout (MAE ratio <= 1 + tolerance)."""
    from model_wrapper.data import DataSource

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
        metrics = {f"holdout_{k}": v for k, v in scores.items()}
        mlflow.log_metrics(metrics)
        ratio = scores["mae_ratio_to_persistence"]
        passed = ratio <= 1 + tolerance
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
        gate = (
            f"holdout MAE {scores['mae']:.2f} USD = {ratio:.4f} x persistence "
            f"({scores['persistence_mae']:.2f} USD) over {len(holdout)} windows; the gate "
            f"allows {1 + tolerance:.4f}"
        )
        description = (
            f"Trained on {source.source} (digest {source.digest}), targets "
            f"{period['train_start']} .. {period['train_end']}. {gate}; 80% interval "
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
            },
            description=description,
        )
        seconds = time.perf_counter() - started
        mlflow.log_metric("train_seconds", seconds)
    return TrainResult(
        run_id=run.info.run_id,
        version=version,
        metrics=metrics,
        seconds=seconds,
        alias_set=bool(alias) and passed,
        gate_message=gate if passed else f"{gate}: worse than persistence",
    )


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
