"""The Open Inference Protocol's routes (gateway/oip.py) against the app in this process with a
stand-in model (tests/in_process.py): health and metadata, infer equal to /predict window by
window, every refusal in the protocol's form, the metrics, one model call per block off the event
loop, and the Python client's predict_many."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from gateway.client import GatewayClient, PredictFailed
from gateway.served_model import ServedModel
from model_wrapper.model.transforms import CLOSE
from tests.helpers import MODEL_NAME, PROPERTY_EXAMPLES, real_windows, wait_for
from tests.in_process import StandInSource, serve_in_process, serve_on_port

BOUND = 64  # INFER_MAX_WINDOWS of the module's app
INFER = f"/v2/models/{MODEL_NAME}/infer"
OUTPUTS = ["pred_btc_close_next", "pred_interval_lower", "pred_interval_upper"]
WINDOWS = real_windows(BOUND + 1)


@pytest.fixture(scope="module")
def app() -> Iterator[TestClient]:
    """The app in this process, serving stand-in version 1 behind @staging."""
    with serve_in_process({"INFER_MAX_WINDOWS": str(BOUND)}) as client:
        yield client


def infer_body(x: Any, datatype: str = "FP64", **extra: Any) -> dict[str, Any]:
    data = x.tolist() if isinstance(x, np.ndarray) else x
    shape = list(np.shape(x)) if isinstance(x, np.ndarray) else [len(x), 12, 18]
    return {"inputs": [{"name": "X", "shape": shape, "datatype": datatype, "data": data}], **extra}


def per_window(client: TestClient, x: np.ndarray) -> list[dict[str, Any]]:
    answers = []
    for window in x:
        r = client.post("/predict", json={"X": window.tolist()})
        assert r.status_code == 200, r.text
        answers.append(r.json())
    return answers


def metric(client: TestClient, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# Health and metadata -------------------------------------------------------------------------


def test_health_ready_and_metadata_name_the_served_version(app: TestClient) -> None:
    assert (app.get("/v2/health/live").status_code, app.get("/v2/health/live").json()) == (
        200,
        {"live": True},
    )
    r = app.get("/v2/health/ready")
    assert (r.status_code, r.json()) == (200, {"ready": True})
    r = app.get(f"/v2/models/{MODEL_NAME}/ready")
    assert (r.status_code, r.json()) == (200, {"name": MODEL_NAME, "ready": True})
    r = app.get(f"/v2/models/{MODEL_NAME}")
    assert r.status_code == 200
    assert r.json() == {
        "name": MODEL_NAME,
        "versions": ["1"],
        "platform": "mlflow",
        "inputs": [{"name": "X", "datatype": "FP64", "shape": [-1, 12, 18]}],
        "outputs": [{"name": name, "datatype": "FP64", "shape": [-1, 1]} for name in OUTPUTS],
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/Other"),
        ("GET", "/v2/models/Other/ready"),
        ("POST", "/v2/models/x/infer"),
    ],
)
def test_another_model_name_is_404_in_the_protocols_form(
    app: TestClient, method: str, path: str
) -> None:
    r = app.request(method, path, json=infer_body(WINDOWS[:1]))
    assert r.status_code == 404
    assert r.json() == {
        "error": f"unknown model {path.split('/')[3]!r}: this gateway serves {MODEL_NAME!r}"
    }


def test_not_ready_is_400_for_the_ready_routes_and_503_for_infer_and_metadata() -> None:
    source = StandInSource()
    source.gate.clear()  # the start-up load waits
    with serve_in_process(source=source, wait_loaded=False) as client:
        assert client.get("/v2/health/live").status_code == 200
        r = client.get("/v2/health/ready")
        assert (r.status_code, r.json()) == (400, {"ready": False})
        r = client.get(f"/v2/models/{MODEL_NAME}/ready")
        assert (r.status_code, r.json()) == (400, {"name": MODEL_NAME, "ready": False})
        for r in (
            client.get(f"/v2/models/{MODEL_NAME}"),
            client.post(INFER, json=infer_body(WINDOWS[:2])),
        ):
            assert r.status_code == 503, r.text
            assert r.json() == {
                "error": f"model {MODEL_NAME!r} is not loaded yet: try again once "
                "/v2/health/ready is 200"
            }
        source.gate.set()
        wait_for(lambda: client.get("/v2/health/ready").status_code == 200, 10, "the load")
        assert client.post(INFER, json=infer_body(WINDOWS[:2])).status_code == 200


# Infer: each window's answer is /predict's ---------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, BOUND])
@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_infer_equals_predict_window_by_window(app: TestClient, n: int, layout: str) -> None:
    x = WINDOWS[:n]
    body = infer_body(x, id="batch-7")
    if layout == "flat":
        body["inputs"][0]["data"] = x.ravel().tolist()
    r = app.post(INFER, json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    expected = per_window(app, x)
    assert answer == {
        "model_name": MODEL_NAME,
        "model_version": "1",
        "id": "batch-7",
        "parameters": {"model_alias": "staging", "interval_level": 0.8},
        "outputs": [
            {
                "name": "pred_btc_close_next",
                "datatype": "FP64",
                "shape": [n, 1],
                "data": [e["pred_btc_close_next"] for e in expected],
            },
            {
                "name": "pred_interval_lower",
                "datatype": "FP64",
                "shape": [n, 1],
                "data": [e["pred_interval"]["lower"] for e in expected],
            },
            {
                "name": "pred_interval_upper",
                "datatype": "FP64",
                "shape": [n, 1],
                "data": [e["pred_interval"]["upper"] for e in expected],
            },
        ],
    }


def test_fp32_is_rounded_to_float32_and_outputs_can_be_chosen(app: TestClient) -> None:
    x = WINDOWS[:3]
    body = infer_body(x, "FP32", outputs=[{"name": "pred_interval_upper"}])
    r = app.post(INFER, json=body)
    assert r.status_code == 200, r.text
    (output,) = r.json()["outputs"]
    rounded = x.astype(np.float32).astype(np.float64)
    expected = [e["pred_interval"]["upper"] for e in per_window(app, rounded)]
    assert (output["name"], output["data"]) == ("pred_interval_upper", expected)
    assert "id" not in r.json()


def _with(n: int, i: int, j: int, value: Any) -> list[Any]:
    data: list[Any] = WINDOWS[:n].tolist()
    data[-1][i][j] = value
    return data


def _rows(n: int) -> list[Any]:
    rows: list[Any] = WINDOWS[n].tolist()
    return rows


def _tensor(**changes: Any) -> dict[str, Any]:
    tensor = infer_body(WINDOWS[:2])["inputs"][0]
    return {"inputs": [{**tensor, **changes}]}


BAD_BODIES: dict[str, tuple[Any, str]] = {
    "not JSON": (b"{inputs: 1", "body is not valid JSON"),
    "an array": ([1], "body must be a JSON object with inputs, got an array"),
    "no inputs": ({"id": "1"}, "inputs must be an array of one tensor named X"),
    "id a number": ({**_tensor(), "id": 7}, "id must be a string, got a number"),
    "input X missing": (
        {"inputs": [{**_tensor()["inputs"][0], "name": "x"}]},
        'input X is missing (expected inputs: [{"name": "X", "shape": [N, 12, 18]',
    ),
    "two inputs": (
        {"inputs": [*_tensor()["inputs"], *_tensor()["inputs"]]},
        "this model takes one input, X",
    ),
    "wrong datatype": (
        _tensor(datatype="INT64"),
        "X's datatype must be FP64 (or FP32), got 'INT64'",
    ),
    "datatype missing": (_tensor(datatype=None), "X's datatype must be FP64 (or FP32), got null"),
    "bad shape": (_tensor(shape=[2, 12, 17]), "X's shape must be [N, 12, 18]"),
    "shape of two": (
        _tensor(shape=[2, 216]),
        "X's shape must be [N, 12, 18] (N windows of T x F), got [2,216]",
    ),
    "shape with a boolean": (_tensor(shape=[True, 12, 18]), "X's shape must be [N, 12, 18]"),
    "no window": (_tensor(shape=[0, 12, 18], data=[]), "X must hold at least one window"),
    "over the bound": (
        infer_body(WINDOWS[: BOUND + 1]),
        f"X holds {BOUND + 1} windows, at most {BOUND} (INFER_MAX_WINDOWS) are taken in one",
    ),
    "data short": (
        _tensor(data=WINDOWS[:2].ravel().tolist()[:-1]),
        "must hold 432 numbers for shape [2, 12, 18], got 431",
    ),
    "data not a list": (_tensor(data="x"), "X's data must be an array of 432 numbers"),
    "nested short row": (
        _tensor(data=[WINDOWS[0].tolist(), [*_rows(1)[:5], [1.0], *_rows(1)[6:]]]),
        "X's data[1][5] must be 18 numbers, got 1 values",
    ),
    "nested one window": (
        _tensor(data=WINDOWS[:1].tolist()),
        "X's data holds 1 windows, its shape says 2",
    ),
    "a string value": (
        _tensor(data=_with(2, 3, 4, "1.5")),
        "X[1][3][4] must be a number, got a string",
    ),
    "a boolean value": (
        _tensor(data=_with(2, 0, 0, True)),
        "X[1][0][0] must be a number, got a boolean",
    ),
    "a null value": (
        _tensor(data=_with(2, 11, 17, None)),
        "X[1][11][17] must be a number, got null",
    ),
    "negative close": (
        _tensor(data=_with(2, 11, CLOSE, -100.0)),
        "X[1][11][3] is out of range: prices must be positive, got -100 for feature 'close'",
    ),
    "beyond float32": (_tensor(data=_with(2, 1, 7, 1e300)), "X[1][1][7] is out of range"),
    "beyond FP32": (
        _tensor(data=_with(2, 1, 7, 1e300), datatype="FP32"),
        "X[1][1][7] is beyond FP32's range",
    ),
    "unknown output": (
        {**_tensor(), "outputs": [{"name": "close"}]},
        "outputs must be an array of objects named one of",
    ),
    "output twice": (
        {**_tensor(), "outputs": [{"name": OUTPUTS[0]}] * 2},
        "outputs names an output twice",
    ),
    "deep nesting": (b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", "body is not valid JSON"),
    "deep name": ({"inputs": [{"name": json.loads("[" * 300 + "]" * 300)}]}, "input X is missing"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_infer_bodies_get_400_in_the_protocols_form(app: TestClient, case: str) -> None:
    body, reason = BAD_BODIES[case]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = app.post(INFER, content=content)
    assert r.status_code == 400, r.text
    assert list(r.json()) == ["error"]
    assert reason in r.json()["error"], r.json()
    assert len(r.json()["error"]) < 600  # the input is never echoed back


def test_cross_site_binary_and_compressed_requests_are_refused(app: TestClient) -> None:
    body = orjson.dumps(infer_body(WINDOWS[:1]))
    cases = [
        ({"Content-Type": "text/plain"}, 415, "Content-Type must be application/json"),
        ({"Origin": "https://elsewhere.example"}, 403, "cross-site request refused"),
        ({"Inference-Header-Content-Length": "10"}, 400, "binary tensor data is not supported"),
        ({"Content-Encoding": "gzip"}, 415, "Content-Encoding must be identity, got 'gzip'"),
    ]
    for headers, status, says in cases:
        r = app.post(INFER, content=body, headers=headers)
        assert r.status_code == status, (headers, r.text)
        assert says in r.json()["error"]
    # A browser page of the gateway's own origin (an IP address) is served.
    own = {"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:8000"}
    assert app.post(INFER, content=body, headers=own).status_code == 200


def test_the_body_limit_fits_the_bound_and_predicts_own_is_unchanged(app: TestClient) -> None:
    # INFER_MAX_WINDOWS=64: 64 x 12 x 18 values at 32 bytes plus 64 KiB, above MAX_BODY_BYTES.
    limit = BOUND * 12 * 18 * 32 + 64 * 1024
    full = orjson.dumps(infer_body(WINDOWS[:BOUND]))
    assert 256 * 1024 < len(full) < limit
    assert app.post(INFER, content=full).status_code == 200
    r = app.post(INFER, content=b" " * (limit + 1))
    assert r.status_code == 413
    too_large = f"request body too large: at most {limit} bytes, got {limit + 1} bytes"
    assert r.json() == {"error": too_large}
    r = app.post("/predict", content=b" " * (256 * 1024 + 1))
    assert r.status_code == 413
    assert r.json()["detail"].startswith("예측 실패: request body too large: at most 262144 bytes")


# Any body: a 200 or a 4xx in the protocol's form, never a 500 ---------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)
_shapes = st.just([2, 12, 18]) | st.lists(
    st.integers(-1, 3) | st.sampled_from([12, 18, 216]) | _json, max_size=4
)
_tensors = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["X", "Y"]) | _json,
        "datatype": st.sampled_from(["FP64", "FP32", "INT64"]) | _json,
        "shape": _shapes,
        "data": st.lists(st.floats(0.5, 2.0) | _json, max_size=8) | st.just(WINDOWS[:2].tolist()),
    },
)
_infer_like = {"inputs": st.lists(_tensors | _json, max_size=2)}
_bodies = (
    st.fixed_dictionaries(
        {}, optional={**_infer_like, "id": _json, "outputs": _json, "parameters": _json}
    )
    | _json
)


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_bodies)
def test_any_json_body_gets_a_200_or_a_400_in_the_protocols_form(
    app: TestClient, body: Any
) -> None:
    r = app.post(INFER, content=json.dumps(body).encode())
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert list(r.json()) == ["error"] and r.json()["error"]


# The model: a NaN is an error, one call per block, metrics --------------------------------------


class NaNForHugeCloses(StandInSource):
    """Stand-in versions that answer NaN for a window whose last close is above 1e30."""

    def load(self, alias: str, version: str) -> ServedModel:
        model = super().load(alias, version)

        def predict(x: np.ndarray) -> np.ndarray:
            out = model.predict(x)
            out[x[:, -1, CLOSE] > 1e30] = np.nan
            return out

        return replace(model, predict=predict)


def test_a_window_the_model_answers_nan_for_fails_the_request() -> None:
    x = WINDOWS[:3].copy()
    x[1, -1, CLOSE] = 1e31  # within the contract (float32), NaN from this model
    with serve_in_process(source=NaNForHugeCloses()) as client:
        r = client.post("/predict", json={"X": x[1].tolist()})
        assert r.json() == {"detail": "예측 실패: the model gave no finite forecast"}
        r = client.post(INFER, json=infer_body(x))
        assert (r.status_code, r.json()) == (
            400,
            {"error": "the model gave no finite pred_btc_close_next for window 1 of X"},
        )
        assert client.post(INFER, json=infer_body(x[[0, 2]])).status_code == 200


def test_infer_is_counted_as_predict_is(app: TestClient) -> None:
    requests = f'gateway_requests_total{{method="POST",route="{INFER}",status="200"}}'
    forecasts = 'gateway_forecasts_total{role="served",version="1"}'
    names = (requests, forecasts, "gateway_predictions_total", "gateway_batch_size_count")
    before = [metric(app, name) for name in (*names, "gateway_batch_size_sum")]
    assert app.post(INFER, json=infer_body(WINDOWS[:9])).status_code == 200
    after = [metric(app, name) for name in (*names, "gateway_batch_size_sum")]
    # One request, nine forecasts, one model call of nine windows.
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 9, 9, 1, 9]


class HeldSource(StandInSource):
    """Stand-in versions whose model calls wait for `release` and record their sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.release.set()
        self.sizes: list[int] = []

    def load(self, alias: str, version: str) -> ServedModel:
        model = super().load(alias, version)

        def held(x: np.ndarray) -> np.ndarray:
            self.sizes.append(len(x))
            assert self.release.wait(30)
            return model.predict(x)

        return replace(model, predict=held)


def test_a_block_is_one_model_call_off_the_event_loop() -> None:
    source = HeldSource()
    with serve_on_port({"INLINE_PREDICT_MAX_MS": "0"}, source=source) as server:
        source.sizes.clear()
        source.release.clear()
        with ThreadPoolExecutor(1) as pool:
            block = pool.submit(
                httpx.post, server.url + INFER, json=infer_body(WINDOWS[:40]), timeout=30
            )
            wait_for(lambda: source.sizes == [40], 10, "the block to reach the model")
            # The model thread is held: the loop still answers.
            assert httpx.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200
            assert not block.done()
            source.release.set()
            assert block.result(30).status_code == 200
    assert source.sizes == [40]


# The Python client ----------------------------------------------------------------------------


def test_predict_many_chunks_to_the_bound_and_keeps_the_order() -> None:
    x = real_windows(150, seed=7)
    source = HeldSource()
    with (
        serve_on_port({"INFER_MAX_WINDOWS": "16"}, source=source) as server,
        GatewayClient(server.url) as gw,
    ):
        expected = [gw.predict(window) for window in x]
        source.sizes.clear()
        answers = gw.predict_many(x, max_windows=16)
        with pytest.raises(PredictFailed) as refused:
            gw.predict_many(x[:17], max_windows=17)
    assert source.sizes == [16] * 9 + [6]
    assert len(answers) == 150
    for got, want in zip(answers, expected, strict=True):
        assert replace(got, request_id=None) == replace(want, request_id=None)
    assert refused.value.status_code == 400
    assert "at most 16 (INFER_MAX_WINDOWS)" in refused.value.detail
