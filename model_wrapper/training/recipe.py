"""The training recipe: windows -> chronological split -> LSTM -> calibration, with no MLflow.

`fit_recipe` is the recipe alone: the training run (run.py) logs and registers what it fits,
and the walk-forward backtest refits it at every period. Every choice the recipe makes from data
(early stopping, shrinkage, interval width) is made on the validation slice; the holdout slice
after it only reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from model_wrapper.data.windows import Windows, chronological_split
from model_wrapper.model.contract import check_windows
from model_wrapper.model.features import DEFAULT_SEQ_LEN, FEATURE_NAMES
from model_wrapper.model.transforms import forecast_prices, scale_windows, transform_windows
from model_wrapper.training.network import (
    QUANTILES,
    FitHistory,
    build_network,
    fit_network,
    run_network,
)

if TYPE_CHECKING:
    import keras

# Shrinkage factors tried on validation: the point forecast is persistence moved this fraction
# of the way toward the network's median.
SHRINKAGE_GRID = tuple(round(0.05 * i, 2) for i in range(21))


@dataclass(frozen=True)
class TrainConfig:
    seq_len: int = DEFAULT_SEQ_LEN
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
