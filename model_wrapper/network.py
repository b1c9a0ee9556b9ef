"""The Keras LSTM and its training loop. Keras is imported inside functions: importing this
module stays cheap for code that only needs the rest of the package."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras


def build_network(
    seq_len: int, n_features: int, units: int = 32, learning_rate: float = 1e-3
) -> keras.Model:
    import keras

    network = keras.Sequential(
        [
            keras.Input((seq_len, n_features)),
            keras.layers.LSTM(units),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1),
        ],
        name="btc_lstm",
    )
    # Huber: log returns have fat tails, and a few crash hours should not dominate the fit.
    network.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="huber")
    return network


def fit_network(
    network: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    epochs: int,
    batch_size: int = 64,
    patience: int = 5,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, list[float]]:
    """Fit with early stopping on validation loss (best weights restored); Keras prints a
    line per epoch. Returns the per-epoch history."""
    import keras

    callbacks: list[Any] = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True
        )
    ]
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
        verbose=2,
    )
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}


def run_network(network: keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Outputs for many windows at once, in plain graph-free batches (training-time only)."""
    outputs = [
        np.asarray(network(x[i : i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outputs)[:, 0] if outputs else np.empty(0)
