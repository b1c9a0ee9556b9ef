"""The spec's API against the app in this process with a stand-in model (tests/in_process.py)
and real webhook receivers: payloads, validation, error mapping and callbacks."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
from starlette.testclient import TestClient

from gateway.errors import NOT_LOADED_DETAIL
from tests.helpers import (
    free_port,
    real_windows,
    wait_for,
)
from tests.in_process import (
    INTERVAL_LEVEL,
    STAND_IN_RUNTIME,
    StandInSource,
    expected_forecast,
    serve_in_process,
)
from tests.receiver import run_receiver

CALLBACK_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def app() -> Iterator[TestClient]:
    """The app in this process, serving stand-in version 1 behind @staging."""
    with serve_in_process({"CALLBACK_TIMEOUT": str(CALLBACK_TIMEOUT)}) as client:
        yield client


# End to end: the live gateway serving the real model ----------------------------------------


def test_in_process_health_and_predict_answer_with_the_stand_in(app: TestClient) -> None:
    assert app.get("/health").json() == {
        "status": "ok",
        "model_loaded": True,
        "model_alias": "staging",
        "model_version": "1",
        "model_runtime": STAND_IN_RUNTIME,
        "shadow": None,
    }
    for window in real_windows(3):
        r = app.post("/predict", json={"X": window.tolist()})
        assert r.status_code == 200, r.text
        value = expected_forecast(window, "1")
        assert r.json() == {
            "pred_btc_close_next": pytest.approx(value, rel=1e-6),
            "posted_to_callback": False,
            "model_alias": "staging",
            "model_version": "1",
            "pred_interval": {
                "lower": pytest.approx(value * 0.99, rel=1e-6),
                "upper": pytest.approx(value * 1.01, rel=1e-6),
                "level": INTERVAL_LEVEL,
            },
        }


def test_predict_reads_json_declared_as_json_or_undeclared(app: TestClient) -> None:
    """A type a web form can send is refused (tests/e2e/test_abuse.py: cross-site posts)."""
    body = orjson.dumps({"X": real_windows(1)[0].tolist()})
    for content_type in ("application/json", "application/json; charset=utf-8", "", None):
        headers = {} if content_type is None else {"Content-Type": content_type}
        r = app.post("/predict", content=body, headers=headers)
        assert r.status_code == 200, (content_type, r.text)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "text/json"):
        r = app.post("/predict", content=body, headers={"Content-Type": content_type})
        assert r.status_code == 415, (content_type, r.text)
        assert r.json() == {
            "detail": f"예측 실패: Content-Type must be application/json, got {content_type!r}"
        }


def test_predict_is_503_with_the_spec_text_until_a_model_is_loaded() -> None:
    source = StandInSource()
    source.gate.clear()  # the start-up load waits
    with serve_in_process(source=source, wait_loaded=False) as client:
        r = client.post("/predict", json={"X": real_windows(1)[0].tolist()})
        assert (r.status_code, r.json()) == (503, {"detail": NOT_LOADED_DETAIL})
        assert client.get("/health").json()["model_loaded"] is False
        source.gate.set()
        wait_for(lambda: client.get("/health").json()["model_loaded"], 10, "the load")
        assert client.post("/predict", json={"X": real_windows(1)[0].tolist()}).status_code == 200


def _window() -> list[list[float]]:
    return list(real_windows(1)[0].tolist())


def _with(row: int, col: int, value: object) -> list[list[object]]:
    x: list[list[object]] = [list(r) for r in _window()]
    x[row][col] = value
    return x


BAD_PREDICT_BODIES: dict[str, tuple[bytes, str]] = {
    "not json": (b"{X: 1", "body is not valid JSON"),
    "empty body": (b"", "body is not valid JSON"),
    "array body": (b"[1, 2]", "body must be a JSON object with X, got an array"),
    "no X": (orjson.dumps({"x": _window()}), "X is required: expected 12 rows of 18 numbers"),
    "X a string": (orjson.dumps({"X": "12x18"}), "X must be an array of arrays"),
    "too few rows": (orjson.dumps({"X": _window()[:11]}), "expected [12, 18]"),
    "too many rows": (orjson.dumps({"X": [*_window(), _window()[0]]}), "got 13 rows"),
    "short row": (
        orjson.dumps({"X": [_window()[0][:17], *_window()[1:]]}),
        "row X[0] has 17 values",
    ),
    "row not a list": (orjson.dumps({"X": [1.0, *_window()[1:]]}), "X[0] must be an array"),
    "string value": (
        orjson.dumps({"X": _with(3, 4, "1.5")}),
        "X[3][4] must be a number, got a string",
    ),
    "boolean value": (
        orjson.dumps({"X": _with(2, 0, True)}),
        "X[2][0] must be a number, got a boolean",
    ),
    "null value": (orjson.dumps({"X": _with(0, 5, None)}), "X[0][5] must be a number, got null"),
    "NaN": (orjson.dumps({"X": _window()}).replace(b"]]", b",NaN]]", 1), "not valid JSON"),
    "Infinity literal": (
        orjson.dumps({"X": _with(1, 1, 0.5)}).replace(b"0.5", b"Infinity", 1),
        "not valid JSON",
    ),
    "1e999": (orjson.dumps({"X": _with(1, 1, 0.5)}).replace(b"0.5", b"1e999", 1), "infinity"),
    "beyond float32": (orjson.dumps({"X": _with(1, 7, 1e300)}), "X[1][7] is out of range"),
    "huge integer": (
        orjson.dumps({"X": _with(1, 7, 0.5)}).replace(b"0.5", b"9" * 400, 1),
        "infinity",
    ),
    "deep nesting": (b'{"X": ' + b"[" * 5000 + b"]" * 5000 + b"}", "not valid JSON"),
    "callback not a string": (
        orjson.dumps({"X": _window(), "callback_url": 5}),
        "callback_url must be a string URL",
    ),
    "callback relative": (
        orjson.dumps({"X": _window(), "callback_url": "/hook"}),
        "absolute http:// or https://",
    ),
    "callback ftp": (
        orjson.dumps({"X": _window(), "callback_url": "ftp://example.com/x"}),
        "scheme 'ftp'",
    ),
    "callback no host": (
        orjson.dumps({"X": _window(), "callback_url": "http:///x"}),
        "with a host",
    ),
    "metadata a list": (
        orjson.dumps({"X": _window(), "metadata": [1]}),
        "metadata must be a JSON object, got an array",
    ),
    "negative close (contract)": (
        orjson.dumps({"X": _with(11, 3, -100.0)}),
        "prices must be positive",
    ),
    "zero open (contract)": (orjson.dumps({"X": _with(0, 0, 0)}), "X[0][0] is out of range"),
}


@pytest.mark.parametrize("case", list(BAD_PREDICT_BODIES))
def test_bad_predict_bodies_get_400_with_the_reason(app: TestClient, case: str) -> None:
    body, reason = BAD_PREDICT_BODIES[case]
    r = app.post("/predict", content=body)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert detail.startswith("예측 실패: ")
    assert reason in detail
    assert len(detail) < 600  # the input is never echoed back


def test_callback_receives_the_spec_payload(app: TestClient) -> None:
    metadata = {"request_id": "abc-123", "user_id": "user-456"}
    with run_receiver("ok") as receiver:
        r = app.post(
            "/predict", json={"X": _window(), "callback_url": receiver.url, "metadata": metadata}
        )
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["posted_to_callback"] is True
        assert "callback_error" not in answer
        assert len(receiver.received) == 1
        headers, body = receiver.received[0]
    assert headers["Content-Type"] == "application/json"
    assert orjson.loads(body) == {
        "pred_btc_close_next": answer["pred_btc_close_next"],
        "metadata": metadata,
        "model_alias": "staging",
        "model_version": "1",
        "pred_interval": answer["pred_interval"],
    }
    interval = answer["pred_interval"]
    assert interval["level"] == 0.8
    assert interval["lower"] < interval["upper"]


def test_callback_without_metadata_sends_null(app: TestClient) -> None:
    with run_receiver("ok") as receiver:
        r = app.post("/predict", json={"X": _window(), "callback_url": receiver.url})
        assert r.json()["posted_to_callback"] is True
        assert orjson.loads(receiver.received[0][1])["metadata"] is None


@pytest.mark.parametrize("mode", ["refused", "error", "slow"])
def test_failed_callback_never_fails_the_prediction(app: TestClient, mode: str) -> None:
    with run_receiver(
        "slow" if mode == "slow" else "error", delay=CALLBACK_TIMEOUT + 2
    ) as receiver:
        url = f"http://127.0.0.1:{free_port()}/hook" if mode == "refused" else receiver.url
        started = time.monotonic()
        r = app.post("/predict", json={"X": _window(), "callback_url": url})
        elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["posted_to_callback"] is False
    assert answer["callback_error"]
    assert answer["pred_btc_close_next"] > 0
    # Within the budget plus a margin for the model call and thread scheduling.
    assert elapsed < CALLBACK_TIMEOUT + 1.5, elapsed


def test_unknown_route_and_method_get_json_errors(app: TestClient) -> None:
    r = app.get("/nope")
    assert (r.status_code, r.json()) == (404, {"detail": "Not Found"})
    r = app.get("/predict")
    assert r.status_code == 405
    assert r.json() == {"detail": "Method Not Allowed"}


def test_openapi_document_names_the_spec_title_version_and_schemas(app: TestClient) -> None:
    doc = app.get("/openapi.json").json()
    assert doc["info"] == {"title": "LSTM Inference with MLflow PyFunc", "version": "2.0.0"}
    assert set(doc["paths"]) >= {"/health", "/reload", "/predict"}
    schemas = doc["components"]["schemas"]
    assert {
        "PredictPayload",
        "PredictResponse",
        "ReloadRequest",
        "ReloadResponse",
        "Health",
        "CallbackPayload",
        "Error",
    } <= set(schemas)
    x = schemas["PredictPayload"]["properties"]["X"]
    assert (x["minItems"], x["items"]["minItems"]) == (12, 18)
