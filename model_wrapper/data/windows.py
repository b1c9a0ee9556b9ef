"""Candles -> windows: each window's raw features, the log return it forecasts, the close that
came and the time of that target candle, and the chronological split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from model_wrapper.errors import UsageError
from model_wrapper.model.features import candle_windows, min_candles
from model_wrapper.model.transforms import CLOSE


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


def make_windows(candles: pd.DataFrame, seq_len: int) -> Windows:
    if len(candles) < min_candles(seq_len) + 1:
        raise UsageError(
            f"too few candles: need at least {min_candles(seq_len) + 1} for one training window "
            f"of {seq_len} steps and its target, got {len(candles)}"
        )
    # The windows the model's own candles door makes; the last has no next close to learn from.
    x = candle_windows(candles, seq_len)[1][:-1]
    n = len(x)
    next_close = candles["close"].to_numpy(dtype=np.float64)[-n:]
    target = np.log(next_close / x[:, -1, CLOSE])
    times = pd.DatetimeIndex(candles.index[-n:])
    return Windows(x=x, target=target, next_close=next_close, times=times)


def chronological_split(n: int, validation: float, holdout: float) -> tuple[slice, slice, slice]:
    n_hold = max(1, round(n * holdout))
    n_val = max(1, round(n * validation))
    n_train = n - n_val - n_hold
    if n_train < 1:
        raise UsageError(f"{n} windows are too few to split into train, validation and holdout")
    return slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, n)


def training_period(windows: Windows) -> dict[str, str]:
    """The first and last target candle the recipe used (fit, validation or holdout)."""
    return {"train_start": windows.times[0].isoformat(), "train_end": windows.times[-1].isoformat()}
