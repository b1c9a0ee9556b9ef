"""The MLflow pyfunc that serves the LSTM (a models-from-code file).

This file travels inside every logged model, so it imports nothing from this repository:
`mlflow models serve`, MLServer or a notebook load it with numpy, mlflow and TensorFlow only.
The training code imports `check_windows` and `transform_windows` from here, so what the
network saw in training is exactly what it sees in serving.

Input: X of shape [T, F] or [N, T, F], raw feature values in FEATURE_NAMES order.
Output: a DataFrame with one row per window (see OUTPUT_COLUMNS): the next close in USD, and
the bounds of its central interval (level in the model's metadata, `forecast.interval_level`).
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc.model import PythonModel, PythonModelContext

# Column positions in model_wrapper.features.FEATURE_NAMES (repeated here: see module doc).
OPEN, HIGH, LOW, CLOSE, VOLUME = 0, 1, 2, 3, 4
SMA_7, SMA_21, EMA_12, EMA_26, MACD, MACD_SIGNAL = 9, 10, 11, 12, 13, 14
PRICE_LEVELS = (OPEN, HIGH, LOW, CLOSE, SMA_7, SMA_21, EMA_12, EMA_26)
PRICE_DIFFS = (MACD, MACD_SIGNAL)
# Batch sizes the inference function is compiled for; larger inputs run in chunks of the last.
BATCH_BUCKETS = (1, 4, 16, 64)
POINT, LOWER, UPPER = "pred_btc_close_next", "pred_interval_lower", "pred_interval_upper"
OUTPUT_COLUMNS = (POINT, LOWER, UPPER)


class InputRefused(MlflowException):
    """A bad input: INVALID_PARAMETER_VALUE (HTTP 400) with a message that stays as written.

    `mlflow models serve` rewrites the message of any MlflowException raised by predict into
    "Failed to predict data '<the whole input>' ...", which buries a one-line reason at the end
    of kilobytes of numbers. The refusal already says what came, so later rewrites are ignored.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "message" and "message" in self.__dict__:
            return
        super().__setattr__(name, value)


def invalid(message: str) -> InputRefused:
    return InputRefused(message)


def check_windows(
    x: Any, seq_len: int, n_features: int, feature_names: list[str] | None = None
) -> np.ndarray:
    """X as a float64 [N, T, F] array, or an InputRefused saying what was wrong.

    This is the model's only input check (the logged signature declares no input schema): any
    real dtype, an array or nested lists, [T, F] or [N, T, F], or a DataFrame of one window
    whose columns are the feature names (in any order).
    """
    if isinstance(x, pd.DataFrame):
        x = _frame_window(x, n_features, feature_names)
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise invalid(
            f"X must be numbers of shape [{seq_len}, {n_features}] or [N, {seq_len}, "
            f"{n_features}]; could not read it as a numeric array ({type(e).__name__})"
        ) from None
    if arr.shape == (0,):  # `{"inputs": []}` through `mlflow models serve`
        raise invalid("X holds no window: expected at least one")
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3:
        raise invalid(
            f"X must have shape [{seq_len}, {n_features}] or [N, {seq_len}, {n_features}], "
            f"got shape {list(arr.shape)}"
        )
    if arr.shape[0] == 0:
        raise invalid("X holds no window: expected at least one")
    if arr.shape[1:] != (seq_len, n_features):
        raise invalid(
            f"each window must be {seq_len} time steps x {n_features} features, "
            f"got {arr.shape[1]} x {arr.shape[2]}"
        )
    names = feature_names or [f"feature {j}" for j in range(n_features)]
    bad = ~np.isfinite(arr)
    if bad.any():
        n, t, f = (int(i) for i in np.argwhere(bad)[0])
        raise invalid(
            f"X must be finite numbers: found {arr[n, t, f]} at window {n}, step {t}, "
            f"feature '{names[f]}'"
        )
    # float32 is what the network takes: a finite float64 can still overflow it.
    if (np.abs(arr) > np.finfo(np.float32).max).any():
        n, t, f = (int(i) for i in np.argwhere(np.abs(arr) > np.finfo(np.float32).max)[0])
        raise invalid(
            f"X values must fit in float32: found {arr[n, t, f]} at window {n}, step {t}, "
            f"feature '{names[f]}'"
        )
    prices = arr[:, :, PRICE_LEVELS]
    if (prices <= 0).any():
        n, t, k = (int(i) for i in np.argwhere(prices <= 0)[0])
        raise invalid(
            f"prices must be positive: found {prices[n, t, k]} at window {n}, step {t}, "
            f"feature '{names[PRICE_LEVELS[k]]}'"
        )
    volume = arr[:, :, VOLUME]
    if (volume < 0).any():
        n, t = (int(i) for i in np.argwhere(volume < 0)[0])
        raise invalid(f"volume must not be negative: found {volume[n, t]} at window {n}, step {t}")
    return arr


def _frame_window(
    frame: pd.DataFrame, n_features: int, feature_names: list[str] | None
) -> pd.DataFrame:
    """A DataFrame window with its columns in feature order (unnamed columns stay as they are)."""
    columns = [str(c) for c in frame.columns]
    if not feature_names or columns == [str(i) for i in range(len(columns))]:
        return frame
    missing = [name for name in feature_names if name not in columns]
    unknown = [name for name in columns if name not in feature_names]
    if missing or unknown:
        wrong = [
            f"{what} {_few(names)}"
            for what, names in (("missing", missing), ("unknown", unknown))
            if names
        ]
        raise invalid(
            f"a DataFrame window needs the {n_features} feature names as columns: "
            + "; ".join(wrong)
        )
    return frame.set_axis(columns, axis=1)[feature_names]


def _few(names: list[str], at_most: int = 5) -> str:
    shown = ", ".join(repr(n[:40]) for n in names[:at_most])
    more = f" and {len(names) - at_most} more" if len(names) > at_most else ""
    return f"[{shown}{more}]"


def transform_windows(arr: np.ndarray) -> np.ndarray:
    """Make windows independent of the price level before standard scaling.

    Prices become log distances from the window's last close, MACD a fraction of it, and
    volume its log relative to the window's mean log volume; ratios, RSI and volatility
    are already level-free. So a network trained at 20k USD still reads a window at 70k.
    """
    out = arr.copy()
    last_close = arr[:, -1:, CLOSE : CLOSE + 1]
    out[:, :, PRICE_LEVELS] = np.log(arr[:, :, PRICE_LEVELS] / last_close)
    out[:, :, PRICE_DIFFS] = arr[:, :, PRICE_DIFFS] / last_close
    log_volume = np.log1p(arr[:, :, VOLUME])
    out[:, :, VOLUME] = log_volume - log_volume.mean(axis=1, keepdims=True)
    return out


def forecast_prices(
    last_close: np.ndarray, outputs: np.ndarray, scaler: dict[str, Any], forecast: dict[str, Any]
) -> dict[str, np.ndarray]:
    """The network's scaled outputs [N, K] -> prices in USD, by OUTPUT_COLUMNS.

    With K = 3 the outputs are the 0.1/0.5/0.9 quantiles of the next log return. The point
    forecast is the median times `shrinkage` (0 is persistence, 1 the raw median), as far as
    validation found it earns; the interval is the outer quantiles moved apart by
    `interval_widen` (conformalized quantile regression, calibrated on validation; negative
    narrows). A network with one output (older recipes) gives the point forecast only.
    """
    log_return = outputs * float(scaler["target_scale"]) + float(scaler["target_mean"])
    shrinkage = float(forecast.get("shrinkage", 1.0))
    with np.errstate(over="ignore", invalid="ignore"):
        if log_return.shape[1] == 1:
            return {POINT: last_close * np.exp(shrinkage * log_return[:, 0])}
        low, mid, high = np.sort(log_return, axis=1).T
        widen = float(forecast["interval_widen"])
        return {
            POINT: last_close * np.exp(shrinkage * mid),
            LOWER: last_close * np.exp(np.minimum(low - widen, mid)),
            UPPER: last_close * np.exp(np.maximum(high + widen, mid)),
        }


class LSTMForecaster(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        # TensorFlow is imported here, not at module level, so importing this file is cheap.
        import keras

        with open(context.artifacts["metadata"]) as f:
            meta = json.load(f)
        with open(context.artifacts["scaler"]) as f:
            scaler = json.load(f)
        self.seq_len = int(meta["seq_len"])
        self.n_features = int(meta["n_features"])
        self.feature_names = list(meta["feature_names"])
        self._scaler = scaler
        self._forecast = dict(meta.get("forecast", {}))
        self._mean = np.asarray(scaler["mean"], dtype=np.float64)
        self._scale = np.asarray(scaler["scale"], dtype=np.float64)
        network = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        self._infer, self.backend = _compile(network, self.seq_len, self.n_features)

    # np.ndarray is a hint MLflow derives no schema from (the logged signature declares no
    # input schema: check_windows is the one gate), and with it MLflow stops warning, on every
    # import, that predict has no hints. Lists and DataFrames still arrive unchanged.
    def predict(
        self,
        context: PythonModelContext | None,
        model_input: np.ndarray,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        arr = check_windows(model_input, self.seq_len, self.n_features, self.feature_names)
        scaled = (transform_windows(arr) - self._mean) / self._scale
        # A window can pass every check and still scale beyond float32 (a return of 1e38 is a
        # finite number): the LSTM would answer NaN. Refuse it like any other bad input.
        beyond = ~(np.abs(scaled) <= np.finfo(np.float32).max)
        if beyond.any():
            n, t, f = (int(i) for i in np.argwhere(beyond)[0])
            raise invalid(
                f"X is beyond what the model can read: feature '{self.feature_names[f]}' at "
                f"window {n}, step {t} ({arr[n, t, f]:g}) does not scale to a finite float32"
            )
        scaled = scaled.astype(np.float32)
        out = np.concatenate(
            [
                self._run(scaled[i : i + BATCH_BUCKETS[-1]])
                for i in range(0, len(scaled), BATCH_BUCKETS[-1])
            ]
        )
        columns = forecast_prices(
            arr[:, -1, CLOSE], out.astype(np.float64), self._scaler, self._forecast
        )
        for values in columns.values():
            if not np.isfinite(values).all():
                n = int(np.argwhere(~np.isfinite(values))[0][0])
                raise invalid(f"the model gave no finite forecast for window {n}")
        return pd.DataFrame(columns)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        """Outputs for at most BATCH_BUCKETS[-1] windows, padded to the next compiled size."""
        if self.backend == "numpy":  # no compiled shapes to pad to
            return np.asarray(self._infer(chunk))
        n = len(chunk)
        size = next(b for b in BATCH_BUCKETS if b >= n)
        if size > n:
            chunk = np.concatenate([chunk, np.zeros((size - n, *chunk.shape[1:]), np.float32)])
        return np.asarray(self._infer(chunk))[:n]


def _compile(network: Any, seq_len: int, n_features: int) -> tuple[Any, str]:
    """The fastest inference function that agrees with the plain graph, ready now.

    Model.predict builds a dataset and a loop on every call and an eager call dispatches op by
    op; a traced graph with a fixed signature is far cheaper, XLA cheaper again, and for a
    network this small NumPy cheaper still: TensorFlow's per-call overhead is most of the cost.
    NumPy also keeps nothing per load, where every XLA compilation stays cached for the life of
    the process (a gateway that reloads would grow with each load). Each is used only if it
    matches the plain graph on a probe; XLA compiles once per input shape, so every bucket size
    is compiled here rather than on a request.
    """
    import tensorflow as tf

    spec = [tf.TensorSpec([None, seq_len, n_features], tf.float32)]
    graph = tf.function(lambda x: network(x, training=False), input_signature=spec)
    probe = np.random.default_rng(0).standard_normal((16, seq_len, n_features)).astype(np.float32)
    expected = np.asarray(graph(probe))
    forward = numpy_forward(network)
    if forward is not None and np.allclose(forward(probe), expected, rtol=1e-5, atol=1e-6):
        return forward, "numpy"
    try:
        xla = tf.function(
            lambda x: network(x, training=False), input_signature=spec, jit_compile=True
        )
        if np.allclose(np.asarray(xla(probe)), expected, rtol=1e-5, atol=1e-6):
            for size in BATCH_BUCKETS:
                xla(np.zeros((size, seq_len, n_features), np.float32))
            return xla, "xla"
    except Exception:  # no XLA on this platform: the plain graph is still fast
        pass
    for size in BATCH_BUCKETS:
        graph(np.zeros((size, seq_len, n_features), np.float32))
    return graph, "graph"


def numpy_forward(network: Any) -> Any:
    """The network's inference in NumPy (float32), or None for an architecture it does not know.

    It knows what this project trains: LSTM (tanh, sigmoid gates, last state only) -> Dropout
    (inactive at inference) -> Dense layers (relu or linear), alone or as the members of an
    averaged ensemble. Keras orders the LSTM's gates input, forget, cell, output.
    """
    import keras

    members = [layer for layer in network.layers if isinstance(layer, keras.Model)] or [network]
    if len(members) > 1 and not any(
        isinstance(layer, keras.layers.Average) for layer in network.layers
    ):
        return None
    plans = [_member_plan(member) for member in members]
    if any(plan is None for plan in plans):
        return None

    def forward(x: np.ndarray) -> np.ndarray:
        outputs = [_run_plan(plan, x) for plan in plans]  # type: ignore[arg-type]
        return np.asarray(np.mean(outputs, axis=0, dtype=np.float32))

    return forward


def _member_plan(member: Any) -> tuple[Any, ...] | None:
    import keras

    layers = [layer for layer in member.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers or not isinstance(layers[0], keras.layers.LSTM):
        return None
    lstm = layers[0].get_config()
    if (
        lstm.get("activation") != "tanh"
        or lstm.get("recurrent_activation") != "sigmoid"
        or not lstm.get("use_bias", True)
        or lstm.get("return_sequences")
        or lstm.get("go_backwards")
        or lstm.get("stateful")
    ):
        return None
    kernel, recurrent, bias = (w.astype(np.float32) for w in layers[0].get_weights())
    dense = []
    for layer in layers[1:]:
        if isinstance(layer, keras.layers.Dropout):
            continue
        config = layer.get_config() if isinstance(layer, keras.layers.Dense) else {}
        if config.get("activation") not in ("relu", "linear") or not config.get("use_bias"):
            return None
        w, b = (v.astype(np.float32) for v in layer.get_weights())
        dense.append((w, b, config["activation"] == "relu"))
    return kernel, recurrent, bias, tuple(dense)


def _run_plan(plan: tuple[Any, ...], x: np.ndarray) -> np.ndarray:
    kernel, recurrent, bias, dense = plan
    units = recurrent.shape[0]
    inputs = x @ kernel + bias  # every step's input projection at once: [N, T, 4 units]
    h = np.zeros((len(x), units), np.float32)
    c = np.zeros_like(h)
    with np.errstate(over="ignore"):  # exp overflow is a gate at exactly 0: the right answer
        for t in range(x.shape[1]):
            z = inputs[:, t] + h @ recurrent
            gates = 1.0 / (1.0 + np.exp(-z))
            c = gates[:, units : 2 * units] * c + gates[:, :units] * np.tanh(
                z[:, 2 * units : 3 * units]
            )
            h = gates[:, 3 * units :] * np.tanh(c)
    out = h
    for w, b, relu in dense:
        out = out @ w + b
        if relu:
            out = np.maximum(out, 0, dtype=np.float32)
    return out


mlflow.models.set_model(LSTMForecaster())
