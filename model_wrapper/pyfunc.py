"""The MLflow pyfunc that serves the LSTM (a models-from-code file).

This file travels inside every logged model, so it imports nothing from this repository:
`mlflow models serve`, MLServer or a notebook load it with numpy, mlflow and TensorFlow only.
The training code imports `check_windows` and `scale_windows` from here, so what the
network saw in training is exactly what it sees in serving.

The input contract is defined once, in `input_contract`: it is written into every logged
model's metadata (`input_contract`) so that a server can refuse a bad window before it joins a
batch, and `check_windows` enforces the same rules at every door. A server that has enforced
the declared contract itself calls `forecast_unchecked` instead of `predict`.

A version logged with a `numpy_weights` artifact (the network's arrays, written only where the
NumPy forward pass matched the TensorFlow graph at log time) loads without TensorFlow: serving
needs NumPy alone, and a server starts in a fraction of the time and memory. Older versions, and
networks NumPy does not know, load the Keras file and pick their runtime at load (`_compile`).

Input: X of shape [T, F] or [N, T, F], raw feature values in FEATURE_NAMES order.
Output: a DataFrame with one row per window (see OUTPUT_COLUMNS): the next close in USD, and
the bounds of its central interval (level in the model's metadata, `forecast.interval_level`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
# Runs of adjacent columns, so that the transform works on views, in place.
PRICE_RUNS = (slice(OPEN, CLOSE + 1), slice(SMA_7, EMA_26 + 1))
PRICE_LEVELS = tuple(j for run in PRICE_RUNS for j in range(run.start, run.stop))
PRICE_DIFFS = slice(MACD, MACD_SIGNAL + 1)
# Batch sizes the inference function is compiled for; larger inputs run in chunks of the last.
BATCH_BUCKETS = (1, 4, 16, 64)
POINT, LOWER, UPPER = "pred_btc_close_next", "pred_interval_lower", "pred_interval_upper"
OUTPUT_COLUMNS = (POINT, LOWER, UPPER)
# The network computes in float32: a finite float64 can still overflow it.
FLOAT32_MAX = float(np.finfo(np.float32).max)
CONTRACT_FORMAT = 1
NUMPY_WEIGHTS = "numpy_weights"  # the artifact NumPy serves from, when present


def input_contract(
    seq_len: int, n_features: int, feature_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """The windows this model takes, as JSON data (the one definition of the input rules).

    A window is [seq_len, n_features] numbers ([N, seq_len, n_features] for many) that the
    network reads as float32. Each rule covers some features (positions in `feature_names`); a
    value passes it when it is finite and within the rule's bounds, named as in JSON Schema
    (`minimum`, `exclusiveMinimum`, `maximum`, `exclusiveMaximum`). Rules are checked in order,
    and the first one broken is reported with its `message`.
    """
    every = list(range(n_features))
    names = list(feature_names or [f"feature {j}" for j in every])
    return {
        "format": CONTRACT_FORMAT,
        "shape": [-1, seq_len, n_features],
        "dtype": "float32",
        "feature_names": names,
        "rules": [
            {"features": every, "message": "X must be finite numbers"},
            {
                "features": every,
                "minimum": -FLOAT32_MAX,
                "maximum": FLOAT32_MAX,
                "message": f"|value| must be at most {FLOAT32_MAX:g} (float32)",
            },
            {
                "features": [j for j in PRICE_LEVELS if j < n_features],
                "exclusiveMinimum": 0.0,
                "message": "prices must be positive",
            },
            {
                "features": [j for j in (VOLUME,) if j < n_features],
                "minimum": 0.0,
                "message": "volume must not be negative",
            },
        ],
    }


class WindowRules:
    """A contract's value rules as per-feature inclusive bounds, for one bulk test of a batch.

    An exclusive bound becomes the next float64 inside it and "finite" the largest finite
    float64, so that `lowest <= x <= highest` holds exactly when every rule does (NaN fails).
    """

    def __init__(self, contract: dict[str, Any]) -> None:
        _, self.seq_len, self.n_features = contract["shape"]
        self.feature_names = list(contract["feature_names"])
        self.rules = [_rule_bounds(rule, self.n_features) for rule in contract["rules"]]
        self.lowest = np.max([low for _, low, _, _ in self.rules], axis=0)
        self.highest = np.min([high for _, _, high, _ in self.rules], axis=0)

    def first_broken(self, arr: np.ndarray) -> tuple[str, int, int, int] | None:
        """(message, window, step, feature) of the first value a float64 [N, T, F] batch
        breaks, in rule order, or None when every value passes."""
        if ((arr >= self.lowest) & (arr <= self.highest)).all():
            return None
        for features, low, high, message in self.rules:
            bad = features & ~((arr >= low) & (arr <= high))
            if bad.any():
                n, t, f = (int(i) for i in np.argwhere(bad)[0])
                return message, n, t, f
        raise AssertionError("unreachable: a value broke the joint bounds but no rule")


def _rule_bounds(
    rule: dict[str, Any], n_features: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    big = float(np.finfo(np.float64).max)
    low, high = -big, big
    if "minimum" in rule:
        low = max(low, float(rule["minimum"]))
    if "exclusiveMinimum" in rule:
        low = max(low, float(np.nextafter(float(rule["exclusiveMinimum"]), np.inf)))
    if "maximum" in rule:
        high = min(high, float(rule["maximum"]))
    if "exclusiveMaximum" in rule:
        high = min(high, float(np.nextafter(float(rule["exclusiveMaximum"]), -np.inf)))
    covered = np.zeros(n_features, dtype=bool)
    covered[list(rule["features"])] = True
    lows = np.where(covered, low, -big)
    highs = np.where(covered, high, big)
    return covered, lows, highs, str(rule["message"])


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
    x: Any,
    seq_len: int,
    n_features: int,
    feature_names: Sequence[str] | None = None,
    rules: WindowRules | None = None,
) -> np.ndarray:
    """X as a float64 [N, T, F] array, or an InputRefused saying what was wrong.

    This is the model's only input check (the logged signature declares no input schema): any
    real dtype, an array or nested lists, [T, F] or [N, T, F], or a DataFrame of one window
    whose columns are the feature names (in any order); then the rules of `input_contract`
    (`rules`: those rules compiled once, by a caller that checks many inputs).
    """
    if isinstance(x, pd.DataFrame):
        x = _frame_window(x, n_features, list(feature_names or []))
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
    rules = rules or WindowRules(input_contract(seq_len, n_features, feature_names))
    broken = rules.first_broken(arr)
    if broken is not None:
        message, n, t, f = broken
        raise invalid(
            f"{message}: found {arr[n, t, f]} at window {n}, step {t}, "
            f"feature '{rules.feature_names[f]}'"
        )
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
    for run in PRICE_RUNS:
        prices = out[:, :, run]
        prices /= last_close
        np.log(prices, out=prices)
    out[:, :, PRICE_DIFFS] /= last_close
    log_volume = out[:, :, VOLUME]
    np.log1p(log_volume, out=log_volume)
    log_volume -= log_volume.mean(axis=1, keepdims=True)
    return out


def scale_windows(arr: np.ndarray, mean: Any, scale: Any) -> np.ndarray:
    """Checked float64 [N, T, F] windows -> the network's input, still float64: the level-free
    transform, then the standard scaling fitted in training (`mean`, `scale` per feature)."""
    scaled = transform_windows(arr)
    scaled -= mean
    scaled /= scale
    return scaled


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
        arr = check_windows(
            model_input, self.seq_len, self.n_features, self.feature_names, self._rules
        )
        scaled = scale_windows(arr, self._mean, self._scale)
        # A window can pass every check and still scale beyond float32 (a return of 1e38 is a
        # finite number): the LSTM would answer NaN. Refuse it like any other bad input.
        beyond = ~(np.abs(scaled) <= FLOAT32_MAX)
        if beyond.any():
            n, t, f = (int(i) for i in np.argwhere(beyond)[0])
            raise invalid(
                f"X is beyond what the model can read: feature '{self.feature_names[f]}' at "
                f"window {n}, step {t} ({arr[n, t, f]:g}) does not scale to a finite float32"
            )
        columns = self._prices(arr, scaled)
        for values in columns.values():
            if not np.isfinite(values).all():
                n = int(np.argwhere(~np.isfinite(values))[0][0])
                raise invalid(f"the model gave no finite forecast for window {n}")
        return pd.DataFrame(columns)

    def forecast_unchecked(self, windows: np.ndarray) -> np.ndarray:
        """The fast path for a server that has enforced `input_contract` itself.

        float64 [N, T, F] windows that pass the contract -> [N, 3] float64 by OUTPUT_COLUMNS
        (USD; NaN bounds for a network without an interval). No DataFrame and no second check:
        a window the network cannot read (it scales beyond float32) or answer gets a NaN row,
        so that one such window never fails the others of a batch.
        """
        arr = np.asarray(windows, dtype=np.float64)
        scaled = scale_windows(arr, self._mean, self._scale)
        unreadable = ~(np.abs(scaled) <= FLOAT32_MAX).all(axis=(1, 2))
        if unreadable.any():
            scaled[unreadable] = 0.0
        columns = self._prices(arr, scaled)
        out = np.full((len(arr), len(OUTPUT_COLUMNS)), np.nan)
        for j, name in enumerate(OUTPUT_COLUMNS):
            if name in columns:
                out[:, j] = columns[name]
        out[unreadable] = np.nan
        return out

    def _prices(self, arr: np.ndarray, scaled: np.ndarray) -> dict[str, np.ndarray]:
        x = scaled.astype(np.float32)
        size = BATCH_BUCKETS[-1]
        out = (
            self._run(x)
            if len(x) <= size
            else np.concatenate([self._run(x[i : i + size]) for i in range(0, len(x), size)])
        )
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
    probe = _probe(seq_len, n_features)
    expected = np.asarray(graph(probe))
    forward = numpy_forward(network)
    if forward is not None and _agrees(forward(probe), expected):
        return forward, "numpy"
    try:
        xla = tf.function(
            lambda x: network(x, training=False), input_signature=spec, jit_compile=True
        )
        if _agrees(np.asarray(xla(probe)), expected):
            for size in BATCH_BUCKETS:
                xla(np.zeros((size, seq_len, n_features), np.float32))
            return xla, "xla"
    except Exception:  # no XLA on this platform: the plain graph is still fast
        pass
    for size in BATCH_BUCKETS:
        graph(np.zeros((size, seq_len, n_features), np.float32))
    return graph, "graph"


def _probe(seq_len: int, n_features: int) -> np.ndarray:
    """Inputs on which a runtime must match the TensorFlow graph before it serves."""
    return np.random.default_rng(0).standard_normal((16, seq_len, n_features)).astype(np.float32)


def _agrees(got: np.ndarray, expected: np.ndarray) -> bool:
    return bool(np.allclose(got, expected, rtol=1e-5, atol=1e-6))


def numpy_forward(network: Any) -> Any:
    """The network's inference in NumPy (float32), or None for an architecture it does not know."""
    weights = numpy_weights(network)
    return None if weights is None else forward_from_weights(weights)


def verified_numpy_weights(network: Any, seq_len: int, n_features: int) -> dict[str, Any] | None:
    """`numpy_weights`, only if the NumPy forward pass they give matches the network's own
    TensorFlow graph on a probe: what may be logged as the `numpy_weights` artifact."""
    weights = numpy_weights(network)
    if weights is None:
        return None
    probe = _probe(seq_len, n_features)
    expected = np.asarray(network(probe, training=False))
    return weights if _agrees(forward_from_weights(weights)(probe), expected) else None


def numpy_weights(network: Any) -> dict[str, Any] | None:
    """The arrays the NumPy forward pass runs, by flat name (what `np.savez` stores), or None
    for an architecture it does not know.

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
    weights: dict[str, Any] = {}
    for m, member in enumerate(members):
        member_weights = _member_weights(member)
        if member_weights is None:
            return None
        weights |= {f"{m}/{name}": array for name, array in member_weights.items()}
    return weights


def forward_from_weights(weights: dict[str, Any]) -> Any:
    """x [N, T, F] float32 -> the network's outputs, averaged over the members (an ensemble)."""
    by_member: dict[str, dict[str, Any]] = {}
    for name, array in weights.items():
        member, key = name.split("/", 1)
        by_member.setdefault(member, {})[key] = array
    plans = [_plan(arrays) for _, arrays in sorted(by_member.items(), key=lambda m: int(m[0]))]

    def forward(x: np.ndarray) -> np.ndarray:
        outputs = [_run_plan(plan, x) for plan in plans]
        return np.asarray(np.mean(outputs, axis=0, dtype=np.float32))

    return forward


def _plan(member: dict[str, Any]) -> tuple[Any, ...]:
    f32 = {name: np.asarray(array, np.float32) for name, array in member.items()}
    n_dense = sum(1 for name in member if name.endswith("/kernel") and name.startswith("dense"))
    dense = tuple(
        (f32[f"dense{j}/kernel"], f32[f"dense{j}/bias"], bool(member[f"dense{j}/relu"]))
        for j in range(n_dense)
    )
    return f32["lstm/kernel"], f32["lstm/recurrent"], f32["lstm/bias"], dense


def _member_weights(member: Any) -> dict[str, Any] | None:
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
    kernel, recurrent, bias = (np.asarray(w, np.float32) for w in layers[0].get_weights())
    weights = {"lstm/kernel": kernel, "lstm/recurrent": recurrent, "lstm/bias": bias}
    dense = 0
    for layer in layers[1:]:
        if isinstance(layer, keras.layers.Dropout):
            continue
        config = layer.get_config() if isinstance(layer, keras.layers.Dense) else {}
        if config.get("activation") not in ("relu", "linear") or not config.get("use_bias"):
            return None
        w, b = (np.asarray(v, np.float32) for v in layer.get_weights())
        weights |= {
            f"dense{dense}/kernel": w,
            f"dense{dense}/bias": b,
            f"dense{dense}/relu": np.asarray(config["activation"] == "relu"),
        }
        dense += 1
    return weights


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
