"""The Python client refuses, before sending, a request id or metadata it cannot send exactly,
with a typed error."""

from __future__ import annotations

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
