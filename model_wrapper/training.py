"""The training pipeline: candles -> windows -> chronological split -> LSTM -> metrics -> registry.

`scripts/train.py` is its command line; tests and notebooks call `train_and_register` directly.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from model_wrapper.features import FEATURE_NAMES, compute_features, min_candles
from model_wrapper.network import build_network, fit_network, run_network
from model_wrapper.publish import DEFAULT_ALIAS, DEFAULT_MODEL_NAME, log_forecaster
from model_wrapper.pyfunc import CLOSE, check_windows, transform_windows


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
    seed: int = 42


@dataclass(frozen=True)
class Windows:
    x: np.ndarray  # [N, T, F] raw features
    target: np.ndarray  # [N] log(close_{t+1} / close_t)
    next_close: np.ndarray  # [N] the close each window forecasts
    times: pd.Index  # [N] time of each window's next candle


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    version: str
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


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
    times = candles.index[-n:]
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


def usd_metrics(prefix: str, predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    err = predicted - actual
    return {
        f"{prefix}_mae_usd": float(np.mean(np.abs(err))),
        f"{prefix}_rmse_usd": float(np.sqrt(np.mean(err**2))),
        f"{prefix}_mape_pct": float(100 * np.mean(np.abs(err) / actual)),
    }


def train_and_register(
    candles: pd.DataFrame,
    config: TrainConfig = TrainConfig(),
    registered_model_name: str = DEFAULT_MODEL_NAME,
    alias: str | None = DEFAULT_ALIAS,
    data_label: str = "synthetic",
    experiment: str | None = "btc-lstm",
) -> TrainResult:
    """Train on `candles`, log everything to MLflow, register the wrapper and set `alias`."""
    import keras

    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    windows = make_windows(candles, config.seq_len)
    check_windows(windows.x, config.seq_len, len(FEATURE_NAMES), list(FEATURE_NAMES))
    train, val, hold = chronological_split(
        len(windows.x), config.validation_fraction, config.holdout_fraction
    )
    scaler = fit_scaler(windows.x[train], windows.target[train])
    mean, scale = np.asarray(scaler["mean"]), np.asarray(scaler["scale"])
    target_mean, target_scale = float(scaler["target_mean"]), float(scaler["target_scale"])

    def inputs(part: slice) -> np.ndarray:
        scaled: np.ndarray = (transform_windows(windows.x[part]) - mean) / scale
        return scaled.astype(np.float32)

    def targets(part: slice) -> np.ndarray:
        t: np.ndarray = (windows.target[part] - target_mean) / target_scale
        return t.astype(np.float32)

    if experiment:
        mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_params(
            {
                **asdict(config),
                "data": data_label,
                "n_candles": len(candles),
                "n_windows": len(windows.x),
                "n_features": len(FEATURE_NAMES),
                "n_train": train.stop - train.start,
                "n_validation": val.stop - val.start,
                "n_holdout": hold.stop - hold.start,
            }
        )
        network = build_network(
            config.seq_len, len(FEATURE_NAMES), config.units, config.learning_rate
        )
        fit_network(
            network,
            (inputs(train), targets(train)),
            (inputs(val), targets(val)),
            epochs=config.epochs,
            batch_size=config.batch_size,
            patience=config.patience,
            on_epoch_end=_log_epoch,
        )
        scaled_out = run_network(network, inputs(hold))
        log_ret = scaled_out * target_scale + target_mean
        last_close = windows.x[hold][:, -1, CLOSE]
        predicted = last_close * np.exp(log_ret)
        actual = windows.next_close[hold]
        metrics = {
            **usd_metrics("holdout", predicted, actual),
            **usd_metrics("baseline", last_close, actual),
        }
        mlflow.log_metrics(metrics)
        mlflow.log_figure(
            _holdout_plot(windows.times[hold], actual, predicted), "holdout_predictions.png"
        )
        version = log_forecaster(
            network,
            scaler,
            list(FEATURE_NAMES),
            windows.x[-1:].astype(np.float32),
            registered_model_name=registered_model_name,
            alias=alias,
        )
        seconds = time.perf_counter() - started
        mlflow.log_metric("train_seconds", seconds)
    return TrainResult(run_id=run.info.run_id, version=version, metrics=metrics, seconds=seconds)


def _log_epoch(epoch: int, logs: dict[str, float]) -> None:
    mlflow.log_metrics(logs, step=epoch)


def _holdout_plot(times: pd.Index, actual: np.ndarray, predicted: np.ndarray) -> object:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(times, actual, label="actual close", linewidth=1)
    ax.plot(times, predicted, label="predicted close", linewidth=1)
    ax.set_ylabel("USD")
    ax.set_title("Holdout: next close, predicted vs actual")
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    plt.close(fig)
    return fig
