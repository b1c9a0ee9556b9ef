"""The Keras LSTM and its training loop. Keras is imported inside functions: importing this
module stays cheap for code that only needs the rest of the package."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

# The network forecasts these quantiles of the (scaled) next log return: the median is the
# point forecast (it minimises absolute error, the metric that matters in USD), the outer two
# bound the 80% interval.
QUANTILES = (0.1, 0.5, 0.9)
# Fits of at most this many steps (epochs x batches) run eagerly: tracing the train and test
# steps into graphs costs a fixed few CPU-seconds, more than such a fit takes step by step (a
# smoke run, a test's tiny model). Longer fits run as graphs, much faster per step.
EAGER_MAX_STEPS = 16


@dataclass(frozen=True)
class FitHistory:
    losses: dict[str, list[float]]  # per-epoch "loss" and "val_loss"
    best_epoch: int  # 0-based; its weights were restored
    stopped_epoch: int  # 0-based, the last epoch run


def pinball_loss(y_true: Any, y_pred: Any) -> Any:
    """Mean pinball (quantile) loss over QUANTILES; y_true [B, 1], y_pred [B, len(QUANTILES)]."""
    import keras

    q = keras.ops.convert_to_tensor(QUANTILES, dtype=y_pred.dtype)
    error = y_true - y_pred
    return keras.ops.mean(keras.ops.maximum(q * error, (q - 1.0) * error))


def build_network(
    seq_len: int,
    n_features: int,
    units: int = 32,
    learning_rate: float = 1e-3,
    name: str = "btc_lstm",
    compile: bool = True,
) -> keras.Model:
    import keras

    network = keras.Sequential(
        [
            keras.Input((seq_len, n_features)),
            keras.layers.LSTM(units),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(len(QUANTILES)),
        ],
        name=name,
    )
    if compile:
        # Pinball loss is an absolute-error loss: fat-tailed crash days pull it less than squares.
        network.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=pinball_loss)
    return network


def fit_network(
    network: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    epochs: int,
    batch_size: int = 64,
    patience: int = 5,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    verbose: int = 2,
) -> FitHistory:
    """Fit with early stopping on validation loss (best weights restored)."""
    import keras

    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    network.run_eagerly = runs_eagerly(len(train[0]), epochs, batch_size)
    callbacks: list[Any] = [stopper]
    if on_epoch_end is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: on_epoch_end(epoch, dict(logs or {}))
            )
        )
    history = network.fit(
        train[0],
        train[1],
        validation_data=validation,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )
    losses = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    val = losses.get("val_loss", [])
    return FitHistory(
        losses=losses,
        best_epoch=int(np.argmin(val)) if val else 0,
        stopped_epoch=len(val) - 1,
    )


def runs_eagerly(n_samples: int, epochs: int, batch_size: int) -> bool:
    """Whether a fit of n_samples for epochs runs eagerly (see EAGER_MAX_STEPS)."""
    return epochs * math.ceil(n_samples / batch_size) <= EAGER_MAX_STEPS


def run_network(network: keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Raw outputs [N, K] for many windows at once, in plain batches (training-time only)."""
    outputs = [
        np.asarray(network(x[i : i + batch_size], training=False), dtype=np.float64)
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.empty((0, len(QUANTILES)))
