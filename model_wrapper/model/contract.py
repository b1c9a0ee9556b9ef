"""The windows a version takes: the input contract, defined once, and its check.

`input_contract` is written into every logged version's metadata, so that a server can refuse
a bad window before it joins a batch; `check_windows` enforces the same rules at every other
door (the pyfunc's `predict`, training, the benchmarks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from .features import CANDLE_COLUMNS
from .transforms import PRICE_LEVELS, VOLUME

# The network computes in float32: a finite float64 can still overflow it.
FLOAT32_MAX = float(np.finfo(np.float32).max)
CONTRACT_FORMAT = 1


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
        self._lowest_flat = np.tile(self.lowest, self.seq_len)
        self._highest_flat = np.tile(self.highest, self.seq_len)

    def first_broken(self, arr: np.ndarray) -> tuple[str, int, int, int] | None:
        """(message, window, step, feature) of the first value a float64 [N, T, F] batch
        breaks, in rule order, or None when every value passes."""
        flat = arr.reshape(len(arr), -1)  # [N, T*F]: one pass against bounds tiled over T
        if ((flat >= self._lowest_flat) & (flat <= self._highest_flat)).all():
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
    real dtype, an array or nested lists, [T, F] or [N, T, F]; `{"X": ...}`; a DataFrame with one
    window per row in a column `X` (or in its only column: how `spark_udf` and
    `mlflow.models.evaluate` hand rows over), other columns ignored; or a DataFrame of one window
    whose columns are the feature names (in any order). Then the rules of `input_contract`
    (`rules`: those rules compiled once, by a caller that checks many inputs).
    """
    if isinstance(x, dict) and "X" in x:  # `{"inputs": {"X": ...}}` through `mlflow models serve`
        x = x["X"]
    if isinstance(x, pd.DataFrame):
        column = _window_column(x)
        x = (
            _frame_window(x, n_features, list(feature_names or []))
            if column is None
            else _stack_windows(x[column], seq_len, n_features)
        )
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


def _window_column(frame: pd.DataFrame) -> Any:
    """The column holding one window per row (`X`, or a lone column of sequences), or None."""
    if "X" in frame.columns:
        return "X"
    if len(frame.columns) == 1 and len(frame) and _is_sequence(frame.iloc[0, 0]):
        return frame.columns[0]
    return None


def _is_sequence(cell: Any) -> bool:
    return isinstance(cell, np.ndarray | list | tuple)


def _stack_windows(cells: pd.Series, seq_len: int, n_features: int) -> np.ndarray:
    """A column of windows (nested lists, [T, F] arrays, or Spark's arrays of arrays) ->
    [N, T, F] float64, or a refusal naming the first row that is not a window."""
    if len(cells) == 0:
        raise invalid("X holds no window: expected at least one")
    out = np.empty((len(cells), seq_len, n_features))
    for i, cell in enumerate(cells):
        try:
            window = np.asarray(
                np.stack(list(cell))
                if isinstance(cell, np.ndarray) and cell.dtype == object
                else cell,
                dtype=np.float64,
            )
        except (TypeError, ValueError, OverflowError) as e:
            raise invalid(
                f"row {i} of X must be a window of numbers, {seq_len} x {n_features}; could not "
                f"read it as a numeric array ({type(e).__name__})"
            ) from None
        if window.shape != (seq_len, n_features):
            got = " x ".join(str(d) for d in window.shape) or "a single value"
            raise invalid(
                f"row {i} of X must be a window of {seq_len} time steps x {n_features} features, "
                f"got {got}"
            )
        out[i] = window
    return out


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
        if set(CANDLE_COLUMNS) <= set(columns):
            wrong.append("candles go in with params={'input': 'candles'}")
        raise invalid(
            f"a DataFrame window needs the {n_features} feature names as columns: "
            + "; ".join(wrong)
        )
    return frame.set_axis(columns, axis=1)[feature_names]


def _few(names: list[str], at_most: int = 5) -> str:
    shown = ", ".join(repr(n[:40]) for n in names[:at_most])
    more = f" and {len(names) - at_most} more" if len(names) > at_most else ""
    return f"[{shown}{more}]"
