"""The PythonModel: reads a version's artifacts, checks its input, runs the network and answers
prices in USD, one row per window (OUTPUT_COLUMNS).

Two kinds of input, chosen by the `input` param (the signature's params schema): `windows`
(the default: the 18 features, one window or many) and `candles` (OHLCV rows, turned into every
complete window by the feature code logged with the version).

A version logged with a `numpy_weights` artifact (written only where the NumPy forward pass
matched the TensorFlow graph at log time) loads without TensorFlow. Older versions, and networks
NumPy does not know, load the Keras file and pick their runtime at load.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext

from .contract import FLOAT32_MAX, WindowRules, check_windows, input_contract, invalid
from .features import CandlesRefused, candle_windows
from .runtime import (
    BATCH_BUCKETS,
    NUMPY_BLOCK,
    NUMPY_WEIGHTS,
    forward_from_weights,
    pick_runtime,
)
from .transforms import CLOSE, OUTPUT_COLUMNS, forecast_prices, scale_windows

INPUT_PARAM = "input"
INPUT_KINDS = ("windows", "candles")  # the first is the default
# Windows scaled, run and priced at a time: a large batch goes through in blocks whose arrays
# the allocator reuses, where arrays of the whole batch are fresh pages on every call (glibc
# maps and unmaps them): about a fifth of a 1,000-window predict went to page faults.
BLOCK = NUMPY_BLOCK


class LSTMForecaster(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        with open(context.artifacts["metadata"]) as f:
            meta = json.load(f)
        with open(context.artifacts["scaler"]) as f:
            scaler = json.load(f)
        self.seq_len = int(meta["seq_len"])
        self.n_features = int(meta["n_features"])
        self.feature_names = list(meta["feature_names"])
        # The rules this code enforces (a version rewrapped from older metadata has them too).
        self.input_contract = input_contract(self.seq_len, self.n_features, self.feature_names)
        self._rules = WindowRules(self.input_contract)
        self._scaler = scaler
        self._forecast = dict(meta.get("forecast", {}))
        self._mean = np.asarray(scaler["mean"], dtype=np.float64)
        self._scale = np.asarray(scaler["scale"], dtype=np.float64)
        if NUMPY_WEIGHTS in context.artifacts:
            # Checked against the TensorFlow graph when it was logged (`verified_numpy_weights`).
            with np.load(context.artifacts[NUMPY_WEIGHTS], allow_pickle=False) as arrays:
                self._infer = forward_from_weights(dict(arrays))
            self.backend = "numpy"
            return
        # TensorFlow is imported only here, so that importing this file, or serving a version
        # with NumPy weights, never loads it.
        import keras

        network = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        self._infer, self.backend = pick_runtime(network, self.seq_len, self.n_features)

    # np.ndarray is a hint MLflow derives no schema from (the logged signature declares no
    # input schema: check_windows is the one gate), and with it MLflow stops warning, on every
    # import, that predict has no hints. Lists and DataFrames still arrive unchanged.
    def predict(
        self,
        context: PythonModelContext | None,
        model_input: np.ndarray,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        kind = str((params or {}).get(INPUT_PARAM) or INPUT_KINDS[0])
        if kind not in INPUT_KINDS:
            raise invalid(
                f"params {INPUT_PARAM!r} must be one of {list(INPUT_KINDS)}, got {kind!r}"
            )
        if kind == "candles":
            times, windows = self.windows_from_candles(model_input)
            return self._predict_windows(windows).set_index(times)
        return self._predict_windows(model_input)

    def windows_from_candles(self, candles: Any) -> tuple[pd.Index, np.ndarray]:
        """Every complete window in OHLCV candles (a DataFrame with columns time, open, high, low,
        close, volume, time ascending, at least `seq_len + 20` rows; or indexed by time), with
        each window's last candle time: what the candles door forecasts from."""
        if not isinstance(candles, pd.DataFrame):
            raise invalid(
                "candles must be a DataFrame with columns time, open, high, low, close, volume; "
                f"got {type(candles).__name__}"
            )
        try:
            return candle_windows(candles, self.seq_len)
        except CandlesRefused as e:
            raise invalid(str(e)) from None

    def _predict_windows(self, model_input: Any) -> pd.DataFrame:
        arr = check_windows(
            model_input, self.seq_len, self.n_features, self.feature_names, self._rules
        )
        parts = []
        for start, block, scaled in self._scaled_blocks(arr):
            # A window can pass every check and still scale beyond float32 (a return of 1e38 is
            # a finite number): the LSTM would answer NaN. Refuse it like any other bad input.
            # (min and max first: no temporary the size of the block; NaN fails both.)
            if not (scaled.min() >= -FLOAT32_MAX and scaled.max() <= FLOAT32_MAX):
                n, t, f = (int(i) for i in np.argwhere(~(np.abs(scaled) <= FLOAT32_MAX))[0])
                raise invalid(
                    f"X is beyond what the model can read: feature '{self.feature_names[f]}' at "
                    f"window {start + n}, step {t} ({block[n, t, f]:g}) does not scale to a "
                    "finite float32"
                )
            parts.append(self._prices(block, scaled))
        columns = _joined(parts)
        for values in columns.values():
            if not np.isfinite(values).all():
                n = int(np.argwhere(~np.isfinite(values))[0][0])
                raise invalid(f"the model gave no finite forecast for window {n}")
        return pd.DataFrame(np.column_stack(list(columns.values())), columns=list(columns))

    def forecast_unchecked(self, windows: np.ndarray) -> np.ndarray:
        """The fast path for a server that has enforced `input_contract` itself.

        float64 [N, T, F] windows that pass the contract -> [N, 3] float64 by OUTPUT_COLUMNS
        (USD; NaN bounds for a network without an interval). No DataFrame and no second check:
        a window the network cannot read (it scales beyond float32) or answer gets a NaN row,
        so that one such window never fails the others of a batch.
        """
        arr = np.asarray(windows, dtype=np.float64)
        parts, unreadable = [], np.zeros(len(arr), bool)
        for start, block, scaled in self._scaled_blocks(arr):
            bad = unreadable[start : start + BLOCK]
            bad[...] = ~(np.abs(scaled) <= FLOAT32_MAX).all(axis=(1, 2))
            if bad.any():
                scaled[bad] = 0.0
            parts.append(self._prices(block, scaled))
        columns = _joined(parts)
        out = np.full((len(arr), len(OUTPUT_COLUMNS)), np.nan)
        for j, name in enumerate(OUTPUT_COLUMNS):
            if name in columns:
                out[:, j] = columns[name]
        out[unreadable] = np.nan
        return out

    def _scaled_blocks(self, arr: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(first window, windows, their scaled form) for each BLOCK of float64 [N, T, F]."""
        for start in range(0, len(arr), BLOCK):
            block = arr[start : start + BLOCK]
            yield start, block, scale_windows(block, self._mean, self._scale)

    def _prices(self, arr: np.ndarray, scaled: np.ndarray) -> dict[str, np.ndarray]:
        x = scaled.astype(np.float32)
        size = BATCH_BUCKETS[-1]
        if self.backend == "numpy" or len(x) <= size:  # NumPy runs any batch in blocks of its own
            out = self._run(x)
        else:
            out = np.concatenate([self._run(x[i : i + size]) for i in range(0, len(x), size)])
        return forecast_prices(
            arr[:, -1, CLOSE], out.astype(np.float64), self._scaler, self._forecast
        )

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        """Outputs for at most BATCH_BUCKETS[-1] windows, padded to the next compiled size."""
        if self.backend == "numpy":  # no compiled shapes to pad to
            return np.asarray(self._infer(chunk))
        n = len(chunk)
        size = next(b for b in BATCH_BUCKETS if b >= n)
        if size > n:
            chunk = np.concatenate([chunk, np.zeros((size - n, *chunk.shape[1:]), np.float32)])
        return np.asarray(self._infer(chunk))[:n]


def _joined(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The blocks' prices, by output column, in order."""
    if len(parts) <= 1:
        return parts[0] if parts else {}
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
