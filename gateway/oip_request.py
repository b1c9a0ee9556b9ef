"""The Open Inference Protocol's (KServe V2) inference request -> checked windows, before anything
reaches the model; its names, limits and error.

The one input, `X`, is a tensor of N windows: `shape` [N, T, F], `datatype` FP64 (or FP32,
rounded to float32 as that type says), `data` flat in row-major order or nested as the shape
says. Every window is held to the served version's contract (gateway/contract.py), as /predict
holds its one; a refusal says what was expected and what came, without echoing the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import orjson

from gateway.contract import FLOAT32_MAX, WindowContract
from gateway.settings import Settings
from gateway.validation import InvalidRequest, _kind, parse_json

PLATFORM = "mlflow"  # what serves the model, for its metadata: an MLflow pyfunc
INPUT = "X"
# The pyfunc's output columns, in the order of the served model's [N, 3] rows (served_model.py).
OUTPUTS = ("pred_btc_close_next", "pred_interval_lower", "pred_interval_upper")
DATATYPES = ("FP64", "FP32")
_NUMBER_TYPES = frozenset((float, int))
# Compact JSON writes a float64 in at most 24 characters (-1.2345678901234567e-308) plus a comma;
# nesting adds about 2 bytes per row. Room for the rest of the body on top.
BYTES_PER_VALUE = 32
BODY_SLACK = 64 * 1024


class InferError(Exception):
    """An answer other than success, in the protocol's form: `{"error": message}`."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class InferRequest:
    windows: np.ndarray  # [N, T, F] float64, every window within the served contract
    outputs: tuple[str, ...] | None  # the outputs asked for, in order; None: all there are
    id: str | None  # echoed in the answer when given


def outputs_given(interval_level: float | None) -> tuple[str, ...]:
    """The outputs a version gives: its interval's bounds only if it has one."""
    return OUTPUTS if interval_level is not None else OUTPUTS[:1]


def model_metadata(
    name: str, version: str, outputs: tuple[str, ...], seq_len: int, n_features: int
) -> dict[str, Any]:
    """The protocol's model metadata: one FP64 value per window in each output ([N, 1])."""
    return {
        "name": name,
        "versions": [version],
        "platform": PLATFORM,
        "inputs": [{"name": INPUT, "datatype": DATATYPES[0], "shape": [-1, seq_len, n_features]}],
        "outputs": [{"name": output, "datatype": "FP64", "shape": [-1, 1]} for output in outputs],
    }


def unknown_model(name: str, served: str) -> InferError:
    return InferError(404, f"unknown model {name[:100]!r}: this gateway serves {served!r}")


def not_loaded(name: str) -> InferError:
    return InferError(
        503, f"model {name!r} is not loaded yet: try again once /v2/health/ready is 200"
    )


def infer_body_limit(settings: Settings) -> int:
    """The infer route's body limit: INFER_MAX_WINDOWS windows as compact JSON, or
    MAX_BODY_BYTES if that is larger."""
    values = settings.infer_max_windows * settings.seq_len_required * settings.n_features_required
    return max(settings.max_body_bytes, values * BYTES_PER_VALUE + BODY_SLACK)


def expected_input(contract: WindowContract) -> str:
    t, f = contract.seq_len, contract.n_features
    return f'{{"name": "X", "shape": [N, {t}, {f}], "datatype": "FP64", "data": [...]}}'


def parse_infer(body: bytes, contract: WindowContract, max_windows: int) -> InferRequest:
    """The request's windows, checked; InferError (400) saying why not."""
    try:
        payload = parse_json(body)
    except InvalidRequest as e:
        raise InferError(400, str(e)) from None
    if type(payload) is not dict:
        raise _bad(f"body must be a JSON object with inputs, got {_kind(payload)}")
    request_id = payload.get("id")
    if request_id is not None and type(request_id) is not str:
        raise _bad(f"id must be a string, got {_kind(request_id)}")
    parameters = payload.get("parameters")
    if parameters is not None and type(parameters) is not dict:
        raise _bad(f"parameters must be an object, got {_kind(parameters)}")
    tensor = _input_x(payload.get("inputs"), contract)
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        got = repr(datatype[:20]) if type(datatype) is str else _kind(datatype)
        raise _bad(f"X's datatype must be FP64 (or FP32), got {got}")
    n = _windows_in(tensor.get("shape"), contract, max_windows)
    values = _values(tensor.get("data"), (n, contract.seq_len, contract.n_features))
    return InferRequest(
        _windows(values, n, datatype, contract), _requested(payload.get("outputs")), request_id
    )


def _bad(message: str) -> InferError:
    return InferError(400, message)


def _shown(value: Any) -> str:
    """A short JSON rendering of a client's value, for a message."""
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        return _kind(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _input_x(inputs: Any, contract: WindowContract) -> dict[str, Any]:
    expected = f"expected inputs: [{expected_input(contract)}]"
    if type(inputs) is not list or not inputs:
        got = "an empty array" if inputs == [] else _kind(inputs)
        raise _bad(f"inputs must be an array of one tensor named X ({expected}), got {got}")
    if len(inputs) != 1 or type(inputs[0]) is not dict or inputs[0].get("name") != INPUT:
        names = [i.get("name") if type(i) is dict else None for i in inputs]
        if INPUT not in names:
            raise _bad(f"input X is missing ({expected}), got inputs named {_shown(names)}")
        raise _bad(f"this model takes one input, X ({expected}), got inputs named {_shown(names)}")
    tensor: dict[str, Any] = inputs[0]
    return tensor


def _windows_in(shape: Any, contract: WindowContract, max_windows: int) -> int:
    t, f = contract.seq_len, contract.n_features
    if not (
        type(shape) is list and len(shape) == 3 and all(type(d) is int and d >= 0 for d in shape)
    ):
        got = _shown(shape) if type(shape) is list else _kind(shape)
        raise _bad(f"X's shape must be [N, {t}, {f}] (N windows of T x F), got {got}")
    n = shape[0]
    if shape[1:] != [t, f]:
        raise _bad(
            f"X's shape must be [N, {t}, {f}] (SEQ_LEN_REQUIRED x N_FEATURES_REQUIRED per "
            f"window), got {_shown(shape)}"
        )
    if n < 1:
        raise _bad("X must hold at least one window, got shape [0, ...]")
    if n > max_windows:
        raise _bad(
            f"X holds {n} windows, at most {max_windows} (INFER_MAX_WINDOWS) are taken in one "
            "request: split it"
        )
    return int(n)


def _values(data: Any, shape: tuple[int, int, int]) -> list[Any]:
    """The tensor's values in row-major order, from flat data or data nested as `shape`."""
    n, t, f = shape
    size = n * t * f
    if type(data) is not list:
        raise _bad(
            f"X's data must be an array of {size} numbers (flat or nested), got {_kind(data)}"
        )
    if not data or type(data[0]) is not list:
        if len(data) != size:
            raise _bad(
                f"X's data must hold {size} numbers for shape [{n}, {t}, {f}], got {len(data)}"
            )
        return data
    # Nested: the bulk test first; the loops that name the first bad place run only if it fails.
    if len(data) == n and all(type(w) is list and len(w) == t for w in data):
        rows = list(chain.from_iterable(data))
        if all(type(row) is list and len(row) == f for row in rows):
            return list(chain.from_iterable(rows))
    if len(data) != n:
        raise _bad(f"X's data holds {len(data)} windows, its shape says {n}")
    for i, window in enumerate(data):
        if type(window) is not list or len(window) != t:
            got = f"{len(window)} rows" if type(window) is list else _kind(window)
            raise _bad(f"X's data[{i}] must be {t} rows of {f} numbers, got {got}")
        for j, row in enumerate(window):
            if type(row) is not list or len(row) != f:
                got = f"{len(row)} values" if type(row) is list else _kind(row)
                raise _bad(f"X's data[{i}][{j}] must be {f} numbers, got {got}")
    raise AssertionError("nested data failed the bulk test but no single place")


def _windows(values: list[Any], n: int, datatype: str, contract: WindowContract) -> np.ndarray:
    t, f = contract.seq_len, contract.n_features
    # `type(v)` (not isinstance), so that true/false, which are ints in Python, are refused.
    if not set(map(type, values)) <= _NUMBER_TYPES:
        k = next(k for k, v in enumerate(values) if type(v) not in _NUMBER_TYPES)
        raise _bad(
            f"X[{k // (t * f)}][{k // f % t}][{k % f}] must be a number, got {_kind(values[k])}"
        )
    try:
        x = np.array(values, dtype=np.float64).reshape(n, t, f)
    except OverflowError:
        raise _bad("X holds an integer too large for a float") from None
    if datatype == "FP32":
        beyond = ~(np.abs(x) <= FLOAT32_MAX)
        if beyond.any():
            i, j, k = (int(d) for d in np.argwhere(beyond)[0])
            raise _bad(f"X[{i}][{j}][{k}] is beyond FP32's range, got {x[i, j, k]:g}")
        x = x.astype(np.float32).astype(np.float64)
    if not contract.keeps(x):
        for i, window in enumerate(x):
            refusal = contract.refusal(window)
            if refusal is not None:
                # The contract names a place in one [T, F] window ("X[t][f] ..."): in X's.
                raise _bad(f"X[{i}]{refusal[1:]}" if refusal.startswith("X[") else refusal)
    return x


def _requested(outputs: Any) -> tuple[str, ...] | None:
    if outputs is None:
        return None
    expected = f"an array of objects named one of {', '.join(OUTPUTS)}"
    if type(outputs) is not list:
        raise _bad(f"outputs must be {expected}, got {_kind(outputs)}")
    names = [o.get("name") if type(o) is dict else None for o in outputs]
    unknown = [name for name in names if name not in OUTPUTS]
    if unknown:
        raise _bad(f"outputs must be {expected}, got {_shown(unknown[0])}")
    if len(set(names)) != len(names):
        raise _bad(f"outputs names an output twice: {_shown(names)}")
    return tuple(str(name) for name in names) if names else None


def finite_outputs(rows: np.ndarray, names: tuple[str, ...]) -> list[tuple[str, list[float]]]:
    """Each named output's column of the model's [N, 3] rows; InferError (400) for a window
    the model gave no finite value for (JSON has no NaN)."""
    columns = []
    for name in names:
        column = rows[:, OUTPUTS.index(name)]
        finite = np.isfinite(column)
        if not finite.all():
            i = int(np.argmin(finite))
            raise _bad(f"the model gave no finite {name} for window {i} of X")
        columns.append((name, column.tolist()))
    return columns
