"""The Open Inference Protocol's routes end to end: a real protocol client (tritonclient's HTTP
client) against `python -m gateway` serving the trained model from the real registry. Infer
equals /predict window by window; refusals come in the protocol's form; the Python client's
predict_many chunks to a gateway's bound."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import mlflow
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from gateway.client import AsyncGatewayClient, GatewayClient, PredictFailed, Prediction
from model_wrapper.model.transforms import OUTPUT_COLUMNS
from tests.helpers import (
    MODEL_NAME,
    SEQ_LEN,
    GatewayProcess,
    LiveGateway,
    TrainedVersions,
    real_windows,
)

N_FEATURES = 18
# The network computes in float32, and its BLAS products round differently with the batch size
# (as in /predict's own coalesced batches): a float32 unit or two of its output, about 1e-9 of
# the price. A window's answer in a block of N > 1 equals its answer alone to within this.
BATCH_ROUNDING = 1e-8
SMALL_BOUND = 16
WINDOWS = real_windows(150, seed=300)


@pytest.fixture
def protocol_client(live_gateway: LiveGateway) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=live_gateway.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def small_bound(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    """A gateway taking at most SMALL_BOUND windows per infer request."""
    return start_gateway({"INFER_MAX_WINDOWS": str(SMALL_BOUND)})


def infer(
    client: triton.InferenceServerClient, x: np.ndarray, datatype: str = "FP64", **options: object
) -> triton.InferResult:
    tensor = triton.InferInput("X", list(x.shape), datatype)
    tensor.set_data_from_numpy(x, binary_data=False)
    outputs = [triton.InferRequestedOutput(name, binary_data=False) for name in OUTPUT_COLUMNS]
    return client.infer(MODEL_NAME, [tensor], outputs=outputs, **options)


def test_health_and_metadata_through_a_protocol_client(
    protocol_client: triton.InferenceServerClient, trained: TrainedVersions
) -> None:
    assert protocol_client.is_server_live()
    assert protocol_client.is_server_ready()
    assert protocol_client.is_model_ready(MODEL_NAME)
    assert not protocol_client.is_model_ready("Another_Model")
    assert protocol_client.get_model_metadata(MODEL_NAME) == {
        "name": MODEL_NAME,
        "versions": [trained.staging],
        "platform": "mlflow",
        "inputs": [{"name": "X", "datatype": "FP64", "shape": [-1, SEQ_LEN, N_FEATURES]}],
        # One output per column of the pyfunc's own answer.
        "outputs": [
            {"name": name, "datatype": "FP64", "shape": [-1, 1]} for name in OUTPUT_COLUMNS
        ],
    }
    with pytest.raises(InferenceServerException) as unknown:
        protocol_client.get_model_metadata("Another_Model")
    assert unknown.value.status() == "404"


@pytest.fixture(scope="module")
def staging_model(trained: TrainedVersions) -> Any:
    """The served version's wrapper, loaded in this process as the gateway loads it."""
    return mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{trained.staging}").unwrap_python_model()


@pytest.mark.parametrize("n", [1, 7, 64])
def test_infer_equals_predict_window_by_window(
    protocol_client: triton.InferenceServerClient,
    live_gateway: LiveGateway,
    trained: TrainedVersions,
    staging_model: Any,
    n: int,
) -> None:
    x = WINDOWS[:n]
    result = infer(protocol_client, x, request_id=f"block-{n}")
    answer = result.get_response()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == (
        MODEL_NAME,
        trained.staging,
        f"block-{n}",
    )
    expected = []
    with httpx.Client(base_url=live_gateway.url, timeout=30) as http:
        for window in x:
            r = http.post("/predict", json={"X": window.tolist()})
            assert r.status_code == 200, r.text
            assert r.json()["model_version"] == trained.staging
            expected.append(r.json())
    by_output = {
        "pred_btc_close_next": [e["pred_btc_close_next"] for e in expected],
        "pred_interval_lower": [e["pred_interval"]["lower"] for e in expected],
        "pred_interval_upper": [e["pred_interval"]["upper"] for e in expected],
    }
    # The block is one call of the version's own fast path: bit for bit what it gives.
    block = staging_model.forecast_unchecked(x)
    for j, (name, values) in enumerate(by_output.items()):
        got = result.as_numpy(name)
        assert got is not None and got.shape == (n, 1) and got.dtype == np.float64
        assert got[:, 0].tolist() == block[:, j].tolist(), name
        # Window by window, /predict's answer (a call of one window): exact for a block of one,
        # within BATCH_ROUNDING for more.
        if n == 1:
            assert got[:, 0].tolist() == values, name
        else:
            np.testing.assert_allclose(got[:, 0], values, rtol=BATCH_ROUNDING, atol=0, err_msg=name)


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("bad shape", "X's shape must be [N, 12, 18]"),
        ("wrong datatype", "X's datatype must be FP64 (or FP32), got 'INT64'"),
        ("over the bound", f"X holds {SMALL_BOUND + 1} windows, at most {SMALL_BOUND}"),
        ("binary data", "binary tensor data is not supported"),
        ("another model", f"unknown model 'Another_Model': this gateway serves {MODEL_NAME!r}"),
    ],
)
def test_refusals_reach_a_protocol_client_in_the_protocols_form(
    small_bound: GatewayProcess, case: str, says: str
) -> None:
    client = triton.InferenceServerClient(url=small_bound.url.removeprefix("http://"))
    x = WINDOWS[:2]
    model = MODEL_NAME
    if case == "bad shape":
        x = x[:, :, :-1]
    elif case == "wrong datatype":
        x = np.ones((2, SEQ_LEN, N_FEATURES), np.int64)
    elif case == "over the bound":
        x = WINDOWS[: SMALL_BOUND + 1]
    elif case == "another model":
        model = "Another_Model"
    datatype = "INT64" if x.dtype == np.int64 else "FP64"
    tensor = triton.InferInput("X", list(x.shape), datatype)
    tensor.set_data_from_numpy(x, binary_data=case == "binary data")
    try:
        with pytest.raises(InferenceServerException) as refused:
            client.infer(model, [tensor])
    finally:
        client.close()
    assert refused.value.status() == ("404" if case == "another model" else "400")
    assert says in str(refused.value.message())


def requests_answered(gateway: GatewayProcess) -> float:
    """gateway_requests_total of the infer route's 200s."""
    route = f"/v2/models/{MODEL_NAME}/infer"
    line = f'gateway_requests_total{{method="POST",route="{route}",status="200"}} '
    for text in httpx.get(f"{gateway.url}/metrics").text.splitlines():
        if text.startswith(line):
            return float(text.removeprefix(line))
    return 0.0


def test_predict_many_chunks_to_the_gateways_bound(small_bound: GatewayProcess) -> None:
    before = requests_answered(small_bound)
    with GatewayClient(small_bound.url, timeout=30) as gw:
        answers = gw.predict_many(WINDOWS, max_windows=SMALL_BOUND)
        after = requests_answered(small_bound)
        expected = [gw.predict(window) for window in WINDOWS]
        with pytest.raises(PredictFailed) as refused:
            gw.predict_many(WINDOWS[: SMALL_BOUND + 1], max_windows=SMALL_BOUND + 1)

    async def many() -> list[Prediction]:
        async with AsyncGatewayClient(small_bound.url, timeout=30) as agw:
            return await agw.predict_many(WINDOWS[:40].tolist(), max_windows=SMALL_BOUND)

    async_answers = asyncio.run(many())
    # 150 windows in requests of at most SMALL_BOUND: ten, each counted as /predict's are.
    assert after - before == 10
    assert refused.value.status_code == 400
    assert "(INFER_MAX_WINDOWS)" in refused.value.detail
    assert len(answers) == len(WINDOWS)
    for got, want in zip(answers, expected, strict=True):
        assert (got.model_alias, got.model_version) == (want.model_alias, want.model_version)
        assert got.pred_interval is not None and want.pred_interval is not None
        assert got.pred_interval.level == want.pred_interval.level
        np.testing.assert_allclose(
            [got.pred_btc_close_next, got.pred_interval.lower, got.pred_interval.upper],
            [want.pred_btc_close_next, want.pred_interval.lower, want.pred_interval.upper],
            rtol=BATCH_ROUNDING,
            atol=0,
        )
    assert [a.model_version for a in async_answers] == [a.model_version for a in answers[:40]]
    np.testing.assert_allclose(
        [a.pred_btc_close_next for a in async_answers],
        [a.pred_btc_close_next for a in answers[:40]],
        rtol=BATCH_ROUNDING,
        atol=0,
    )
