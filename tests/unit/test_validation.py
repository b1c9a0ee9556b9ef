"""Property tests of body validation: whatever bytes arrive, `parse_predict` either returns a
clean [T, F] float64 window or raises `InvalidRequest` (the route's 400), never anything else;
and a window held to a version's declared contract is accepted exactly when the wrapper's own
check accepts it.

Random JSON is encoded with the stdlib `json` on purpose: unlike orjson it writes integers of any
size and the NaN/Infinity literals, so the parser also meets what a careless client would send.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from mlflow.exceptions import MlflowException

from gateway.contract import FLOAT32_MAX, shape_contract, version_contract
from gateway.validation import InvalidRequest, PredictRequest, parse_predict, parse_reload
from model_wrapper.model.contract import check_windows, input_contract
from model_wrapper.model.features import FEATURE_NAMES, N_FEATURES
from tests.helpers import PROPERTY_EXAMPLES, SEQ_LEN, real_windows

T, F = SEQ_LEN, N_FEATURES
EXAMPLES = PROPERTY_EXAMPLES
# Before a version is served, and for versions that declare nothing: the shape's contract.
SHAPE = shape_contract(T, F)
# What a version logged by this wrapper declares in its metadata.
DECLARED = version_contract({"input_contract": input_contract(T, F, FEATURE_NAMES)})

# Any JSON value: scalars of every kind (huge integers, non-finite floats, unicode) nested in
# arrays and objects.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and +-inf included: json.dumps writes them as literals orjson refuses
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=40,
)

# JSON that orjson can write and that compares equal after a round trip (no NaN, 64-bit ints).
clean_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

# Values a cell of X may hold, valid or not, so that near-valid grids are common.
cell_values = (
    st.integers(-(2**70), 2**70)  # acceptable: far below float32's limit
    | st.floats()  # beyond float32, NaN, infinities
    | st.booleans()
    | st.none()
    | st.text(max_size=4)
)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def check_outcome(body: bytes) -> PredictRequest | None:
    """The property every body must satisfy; returns the request when accepted."""
    try:
        request = parse_predict(body, SHAPE)
    except InvalidRequest as e:
        assert str(e)  # a reason the 400 can show
        return None
    assert isinstance(request, PredictRequest)
    assert request.x.shape == (T, F)
    assert request.x.dtype == np.float64
    assert np.isfinite(request.x).all()
    assert request.callback_url is None or request.callback_url.startswith(("http://", "https://"))
    # Metadata is kept as checked JSON, ready for the callback: an object that orjson can write.
    assert request.metadata is None or type(orjson.loads(orjson.dumps(request.metadata))) is dict
    return request


@settings(max_examples=EXAMPLES)
@given(json_values)
def test_any_json_as_the_whole_body(value: Any) -> None:
    check_outcome(dumps(value))


@settings(max_examples=EXAMPLES)
@given(json_values, json_values, json_values)
def test_any_json_as_x_callback_url_or_metadata(x: Any, callback_url: Any, metadata: Any) -> None:
    check_outcome(dumps({"X": x}))
    check_outcome(dumps({"X": x, "callback_url": callback_url, "metadata": metadata}))


@settings(max_examples=EXAMPLES)
@given(st.binary(max_size=600))
def test_any_bytes(body: bytes) -> None:
    check_outcome(body)


# Any finite float32 window; the numpy strategy draws a whole grid far faster than 216 draws.
finite_grids = arrays(
    np.float32, (T, F), elements=st.floats(allow_nan=False, allow_infinity=False, width=32)
)


@st.composite
def grids(draw: st.DrawFn) -> list[list[Any]]:
    """Near-valid windows: a finite T x F grid with a few cells replaced by any cell value,
    and sometimes a row added, dropped or cut short."""
    grid: list[list[Any]] = draw(finite_grids).tolist()
    for _ in range(draw(st.integers(0, 3))):
        i, j = draw(st.integers(0, T - 1)), draw(st.integers(0, F - 1))
        grid[i][j] = draw(cell_values)
    change = draw(st.sampled_from(["none", "none", "add row", "drop row", "cut row"]))
    if change == "add row":
        grid.append(list(grid[0]))
    elif change == "drop row":
        grid.pop(draw(st.integers(0, T - 1)))
    elif change == "cut row":
        i = draw(st.integers(0, T - 1))
        grid[i] = grid[i][: draw(st.integers(0, F - 1))]
    return grid


def acceptable(grid: list[list[Any]]) -> bool:
    """The documented rule: exactly T rows of F numbers (not booleans), each within float32."""
    return (
        len(grid) == T
        and all(len(row) == F for row in grid)
        and all(type(v) in (int, float) and abs(v) <= FLOAT32_MAX for row in grid for v in row)
    )


@settings(max_examples=EXAMPLES)
@given(grids())
def test_grids_are_accepted_exactly_when_the_rule_says(grid: list[list[Any]]) -> None:
    request = check_outcome(dumps({"X": grid}))
    assert (request is not None) == acceptable(grid)
    if request is not None:
        # The values reach the model unchanged, as JSON has them.
        np.testing.assert_array_equal(request.x, np.asarray(grid, dtype=np.float64))


@settings(max_examples=EXAMPLES)
@given(
    finite_grids,
    st.lists(
        st.tuples(st.integers(0, T - 1), st.integers(0, F - 1), st.integers(-(2**53), 2**53)),
        max_size=5,
    ),
    st.sampled_from([None, "http://example.com/hook", "https://h.test:8443/a?b=c"]),
    st.none() | st.dictionaries(st.text(max_size=8), clean_json, max_size=4),
)
def test_well_formed_windows_are_always_accepted(
    window: np.ndarray,
    integer_cells: list[tuple[int, int, int]],
    callback_url: str | None,
    metadata: dict[str, Any] | None,
) -> None:
    grid: list[list[float | int]] = window.tolist()
    for i, j, value in integer_cells:  # integers are numbers too
        grid[i][j] = value
    body = orjson.dumps({"X": grid, "callback_url": callback_url, "metadata": metadata})
    request = parse_predict(body, SHAPE)
    np.testing.assert_array_equal(request.x, np.asarray(grid, dtype=np.float64))
    assert request.callback_url == callback_url
    assert (request.metadata and orjson.loads(orjson.dumps(request.metadata))) == metadata


def test_real_windows_are_accepted_unchanged() -> None:
    windows = real_windows(50)
    for window in windows:
        for contract in (SHAPE, DECLARED):
            request = parse_predict(orjson.dumps({"X": window.tolist()}), contract)
            np.testing.assert_array_equal(request.x, window)


@pytest.mark.parametrize("depth", [1, 100, 1023, 1024, 1025, 5000, 100_000])
def test_deep_nesting_is_refused_cleanly(depth: int) -> None:
    # orjson stops at 1024 levels; the stdlib would raise RecursionError, which is not a 400.
    for body in (b"[" * depth + b"]" * depth, b'{"X": ' + b"[" * depth + b"]" * depth + b"}"):
        assert check_outcome(body) is None


@settings(max_examples=EXAMPLES)
@given(json_values | st.binary(max_size=200))
def test_reload_bodies_give_an_alias_none_or_invalid_request(value: Any) -> None:
    body = value if isinstance(value, bytes) else dumps(value)
    try:
        alias = parse_reload(body)
    except InvalidRequest as e:
        assert str(e)
        return
    assert alias is None or (type(alias) is str and alias.strip())


# What a careless client may put in a real window: values at and around every rule's edge.
edge_values = (
    st.sampled_from(
        [0.0, -0.0, -1.0, 5e-324, -5e-324, 1e-300, FLOAT32_MAX, -FLOAT32_MAX, 1e300, -1e300]
    )
    | st.just(float(np.nextafter(FLOAT32_MAX, np.inf)))
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**62), 2**62)
)
REAL = real_windows(20)


@settings(max_examples=EXAMPLES)
@given(
    st.integers(0, len(REAL) - 1),
    st.lists(st.tuples(st.integers(0, T - 1), st.integers(0, F - 1), edge_values), max_size=4),
)
def test_a_declared_contract_accepts_exactly_what_the_wrapper_accepts(
    which: int, changes: list[tuple[int, int, float]]
) -> None:
    window = REAL[which].copy()
    for i, j, value in changes:
        window[i, j] = value
    try:
        parse_predict(orjson.dumps({"X": window.tolist()}), DECLARED)
        gateway = None
    except InvalidRequest as e:
        gateway = str(e)
    try:
        check_windows(window, T, F, FEATURE_NAMES)
        wrapper = None
    except MlflowException as e:
        wrapper = e.message
    assert (gateway is None) == (wrapper is None), (gateway, wrapper)
    if gateway is not None and wrapper is not None:
        # The same rule, named in the same words, at the same place.
        rule = wrapper.split(": found ")[0]
        place = wrapper.split(" at window 0, step ")[1]  # "t, feature 'name'"
        t, feature = place.split(", feature ")
        f = FEATURE_NAMES.index(feature.strip("'"))
        assert gateway.startswith(f"X[{t}][{f}] is out of range: {rule}, got "), gateway
        assert gateway.endswith(f"for feature {feature}"), (gateway, wrapper)


def test_the_declared_contract_names_each_rule_of_the_wrapper() -> None:
    window = REAL[0].copy()
    for (i, j, value), reason in {
        (11, FEATURE_NAMES.index("close"), -100.0): "prices must be positive, got -100 for "
        "feature 'close'",
        (0, FEATURE_NAMES.index("open"), 0): "prices must be positive, got 0 for feature 'open'",
        (3, FEATURE_NAMES.index("volume"), -1): "volume must not be negative, got -1",
        (1, 7, 1e300): f"|value| must be at most {FLOAT32_MAX:g} (float32), got 1e+300",
    }.items():
        bad = window.copy()
        bad[i, j] = value
        with pytest.raises(InvalidRequest) as info:
            parse_predict(orjson.dumps({"X": bad.tolist()}), DECLARED)
        assert str(info.value).startswith(f"X[{i}][{j}] is out of range: {reason}")
        # The shape's contract (a version that declares nothing) checks only the range.
        if value != 1e300:
            np.testing.assert_array_equal(
                parse_predict(orjson.dumps({"X": bad.tolist()}), SHAPE).x, bad
            )
