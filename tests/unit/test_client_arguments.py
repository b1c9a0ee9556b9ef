"""The Python client refuses, before sending, a request id or metadata it cannot send exactly,
with a typed error."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.client import GatewayClient
from tests.helpers import (
    real_windows,
)

WINDOW = real_windows(1)[0].tolist()


# 1. Write-side limits ------------------------------------------------------------------------


# The Python client and the webhook check ------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"request_id": "é-not-ascii"}, "request_id"),
        ({"request_id": "x" * 200}, "request_id"),
        ({"metadata": {"n": 2**70}}, "metadata"),
        ({"metadata": {"x": float("nan")}}, "metadata"),
        ({"metadata": {"x": [float("inf")]}}, "metadata"),
        ({"metadata": {"x": object()}}, "metadata"),
    ],
)
def test_the_client_refuses_what_it_cannot_send_with_a_typed_error(
    options: dict[str, object], says: str
) -> None:
    from gateway.client import InvalidArgument

    with GatewayClient("http://127.0.0.1:9", timeout=1) as gw, pytest.raises(InvalidArgument) as e:
        gw.predict(WINDOW, **options)  # type: ignore[arg-type]
    assert says in str(e.value)
    assert isinstance(e.value, ValueError)


# predict_many: the infer route's requests ------------------------------------------------------


@pytest.mark.parametrize(
    ("windows", "says"),
    [
        ([[1.0, 2.0]], "got float64 of shape [1, 2]"),
        ([[[1.0], [1.0, 2.0]]], "windows must be [N, T, F] numbers"),  # ragged
        ([[["1.5"]]], "windows must be [N, T, F] numbers, got str"),
        ([[[True]]], "got bool"),
        ([[[float("nan")]]], "NaN or infinity"),
        (np.full((1, 1, 1), np.inf), "NaN or infinity"),
    ],
)
def test_predict_many_refuses_what_it_cannot_send(windows: object, says: str) -> None:
    from gateway.client import InvalidArgument

    with GatewayClient("http://127.0.0.1:9", timeout=1) as gw, pytest.raises(InvalidArgument) as e:
        gw.predict_many(windows)
    assert says in str(e.value)


def test_predict_many_of_nothing_sends_nothing_and_a_bound_must_be_positive() -> None:
    from gateway.client import InvalidArgument

    # Port 9 answers nothing: a request would raise GatewayUnreachable.
    with GatewayClient("http://127.0.0.1:9", timeout=1) as gw:
        assert gw.predict_many([]) == []
        assert gw.predict_many(np.empty((0, 12, 18))) == []
        with pytest.raises(InvalidArgument, match="max_windows must be an integer from 1"):
            gw.predict_many([WINDOW], max_windows=0)


def test_infer_requests_keep_the_order_and_fit_the_gateways_limit() -> None:
    """Requests of at most max_windows windows, in order, each within the body limit the
    gateway derives from the same bound; the defaults are the gateway's."""
    import orjson

    from gateway.client.protocol import DEFAULT_INFER_MAX_WINDOWS, DEFAULT_MODEL_NAME, Protocol
    from gateway.oip_request import infer_body_limit
    from gateway.settings import Settings

    assert Settings().infer_max_windows == DEFAULT_INFER_MAX_WINDOWS
    assert Settings().registered_model_name == DEFAULT_MODEL_NAME
    x = real_windows(40)
    calls = list(Protocol(None, 12, "BTC LSTM/x").infer_calls(x, 16))
    assert [call.path for call in calls] == ["/v2/models/BTC%20LSTM%2Fx/infer"] * 3
    tensors = [orjson.loads(call.content or b"")["inputs"][0] for call in calls]
    assert [t["shape"] for t in tensors] == [[16, 12, 18], [16, 12, 18], [8, 12, 18]]
    assert {(t["name"], t["datatype"]) for t in tensors} == {("X", "FP64")}
    assert np.concatenate([t["data"] for t in tensors]).tolist() == x.tolist()
    # The longest a float64 is written (24 characters) in every value of a full request.
    widest = np.full((DEFAULT_INFER_MAX_WINDOWS, 12, 18), -1.2345678901234567e-300)
    (call,) = Protocol(None, 12, DEFAULT_MODEL_NAME).infer_calls(widest, DEFAULT_INFER_MAX_WINDOWS)
    assert len(call.content or b"") <= infer_body_limit(Settings())
