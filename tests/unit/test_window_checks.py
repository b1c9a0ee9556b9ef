"""The wrapper's own input check, called directly: what every door other than the gateway's
(`mlflow models serve`, a notebook's `predict`) relies on. One clear InputRefused per bad input,
naming what was expected and what came."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from model_wrapper.model.contract import InputRefused, check_windows, input_contract
from model_wrapper.model.features import FEATURE_NAMES, N_FEATURES
from tests.helpers import SEQ_LEN, real_windows

WINDOW = real_windows(1)[0]

BAD_INPUTS: dict[str, tuple[Any, str]] = {
    "text": ("not numbers", "could not read it as a numeric array"),
    "ragged rows": ([[1.0, 2.0], [3.0]], "could not read it as a numeric array"),
    "empty list": ([], "X holds no window"),
    "no windows": (np.empty((0, SEQ_LEN, N_FEATURES)), "X holds no window"),
    "one row": (WINDOW[0], f"X must have shape [{SEQ_LEN}, {N_FEATURES}]"),
    "four axes": (WINDOW[np.newaxis, np.newaxis], "got shape [1, 1, "),
    "short window": (WINDOW[:5], f"each window must be {SEQ_LEN} time steps"),
    "missing feature": (WINDOW[:, :-1], f"x {N_FEATURES} features, got {SEQ_LEN} x 17"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_input_is_one_clear_refusal(case: str) -> None:
    x, expected = BAD_INPUTS[case]
    with pytest.raises(InputRefused) as refused:
        check_windows(x, SEQ_LEN, N_FEATURES, list(FEATURE_NAMES))
    assert expected in refused.value.message
    assert len(refused.value.message) < 600  # the input is never echoed back


def test_a_good_window_comes_back_as_one_float64_batch() -> None:
    for x in (WINDOW, WINDOW.astype(np.float32), WINDOW.tolist(), WINDOW[np.newaxis]):
        arr = check_windows(x, SEQ_LEN, N_FEATURES, list(FEATURE_NAMES))
        assert arr.dtype == np.float64 and arr.shape == (1, SEQ_LEN, N_FEATURES)
        np.testing.assert_allclose(arr[0], WINDOW, rtol=1e-6)


def test_every_declared_rule_names_its_feature() -> None:
    contract = input_contract(SEQ_LEN, N_FEATURES, list(FEATURE_NAMES))
    for rule in contract["rules"][2:]:  # past "finite" and the float32 range
        j = rule["features"][0]
        x = WINDOW.copy()
        x[3, j] = -1.0
        with pytest.raises(InputRefused) as refused:
            check_windows(x, SEQ_LEN, N_FEATURES, list(FEATURE_NAMES))
        assert rule["message"] in refused.value.message
        assert FEATURE_NAMES[j] in refused.value.message
