"""Metadata the callback cannot carry is refused before the model, and big integers arrive
exactly: the app in this process with a stand-in model."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from starlette.testclient import TestClient

from tests.helpers import (
    real_windows,
)
from tests.in_process import serve_in_process
from tests.receiver import run_receiver

WINDOW = real_windows(1)[0].tolist()


@pytest.fixture(scope="module")
def app() -> Iterator[TestClient]:
    """The app in this process with a stand-in model (tests/in_process.py)."""
    with serve_in_process() as client:
        yield client


# 1. Work that exploded with the shape of metadata -------------------------------------------


# 7. Metadata accepted, then dropped ----------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        (b'{"a":' * 255 + b"1" + b"}" * 255, "metadata is nested too deeply: at most 254 levels"),
        (b"[" * 800 + b"]" * 800, "metadata must be a JSON object"),
        (b'{"a":' * 800 + b"1" + b"}" * 800, "metadata is nested too deeply: at most 254 levels"),
        (b'{"n": 18446744073709551616}', "metadata holds an integer out of range"),
        (b'{"n": -9223372036854775809}', "metadata holds an integer out of range"),
        (b'{"n": 1' + b"0" * 5000 + b"}", "body is not valid JSON (number is infinity"),
    ],
)
def test_metadata_the_callback_cannot_carry_is_a_400_before_the_model(
    app: TestClient, metadata: bytes, reason: str
) -> None:
    with run_receiver("ok") as receiver:
        body = b'{"X": %s, "callback_url": "%s", "metadata": %s}' % (
            orjson.dumps(WINDOW),
            receiver.url.encode(),
            metadata,
        )
        r = app.post("/predict", content=body)
        assert r.status_code == 400, r.text
        assert r.json()["detail"].startswith("예측 실패: " + reason)
        assert receiver.received == []


def test_big_integers_arrive_exactly(app: TestClient) -> None:
    with run_receiver("ok") as receiver:
        metadata = b'{"max": 18446744073709551615, "min": -9223372036854775808, "id": "%s"}' % (
            b"1" * 30
        )
        body = b'{"X": %s, "callback_url": "%s", "metadata": %s}' % (
            orjson.dumps(WINDOW),
            receiver.url.encode(),
            metadata,
        )
        r = app.post("/predict", content=body)
        assert r.status_code == 200, r.text
        assert r.json()["posted_to_callback"] is True
        received = receiver.received[0][1]
    assert b'"max":18446744073709551615' in received
    assert b'"min":-9223372036854775808' in received
    assert orjson.loads(received)["metadata"]["id"] == "1" * 30


# 4. Forged log lines -------------------------------------------------------------------------
