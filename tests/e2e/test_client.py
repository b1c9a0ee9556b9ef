"""gateway.client against a live gateway: every method of both clients, every error class with
the spec's detail verbatim, windows from lists, arrays and candles, webhook verification, and no
TensorFlow or MLflow behind `import gateway.client`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.client import (
    AsyncGatewayClient,
    BodyTooLarge,
    GatewayClient,
    GatewayError,
    GatewayUnreachable,
    Health,
    ModelNotLoaded,
    PredictFailed,
    Prediction,
    Readiness,
    Reloaded,
    ReloadFailed,
    ReloadRejected,
    Unauthorized,
    WebhookVerificationError,
    verify_webhook,
)
from gateway.errors import NOT_LOADED_DETAIL, PREDICT_PREFIX, RELOAD_PREFIX
from model_wrapper.data.synthetic import synthetic_candles
from model_wrapper.model.features import window_from_candles
from tests.helpers import (
    ROOT,
    SEQ_LEN,
    LiveGateway,
    TrainedVersions,
    free_port,
    real_windows,
)
from tests.in_process import ServerInThread, UnreachableSource, serve_on_port
from tests.receiver import run_receiver


@pytest.fixture(scope="module")
def unloaded_gateway() -> Iterator[ServerInThread]:
    """The app under uvicorn in this process, its registry never answering: no model, ever."""
    with serve_on_port({"MODEL_LOAD_TIMEOUT": "0"}, UnreachableSource()) as server:
        yield server


def test_importing_the_client_loads_neither_tensorflow_nor_mlflow_nor_model_wrapper(
    live_gateway: LiveGateway, tmp_path: Path
) -> None:
    # A fresh interpreter in which TensorFlow, Keras, MLflow and the model_wrapper package
    # cannot be imported at all, as on a client machine without them: the client must still
    # build a window from candles (with the model's feature code, loaded from its file) and
    # predict.
    csv = tmp_path / "candles.csv"
    synthetic_candles(80, seed=5).to_csv(csv)
    script = f"""
import importlib.abc, sys
import pandas as pd

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "mlflow", "model_wrapper"):
            raise ImportError(f"{{name}} is not installed on this client")
        return None

sys.meta_path.insert(0, Absent())
from gateway.client import GatewayClient

candles = pd.read_csv({str(csv)!r}, index_col=0, parse_dates=True)
with GatewayClient({live_gateway.url!r}) as gw:
    answer = gw.predict(candles)
heavy = sorted(
    m for m in sys.modules
    if m.split(".")[0] in ("tensorflow", "keras", "mlflow", "model_wrapper")
)
print(answer.pred_btc_close_next, heavy)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    forecast, heavy = done.stdout.split(" ", 1)
    assert float(forecast) > 0
    assert heavy.strip() == "[]"


def test_sync_client_every_method(live_gateway: LiveGateway, trained: TrainedVersions) -> None:
    candles = synthetic_candles(80, seed=11)
    window = window_from_candles(candles, SEQ_LEN)
    with GatewayClient(live_gateway.url, admin_token=live_gateway.admin_token) as gw:
        health = gw.health()
        assert isinstance(health, Health)
        assert (health.status, health.model_loaded) == ("ok", True)
        ready = gw.ready()
        assert isinstance(ready, Readiness)
        assert ready.ready and ready.model_version == health.model_version

        from_list = gw.predict(window, metadata={"user_id": "u1"}, request_id="client-sync-1")
        assert isinstance(from_list, Prediction)
        assert from_list.model_version == health.model_version
        assert from_list.posted_to_callback is False and from_list.callback_error is None
        assert from_list.request_id == "client-sync-1"
        assert from_list.pred_btc_close_next > 0
        # The same window as a float64 array and as the candles it came from: the same numbers.
        for x in (np.asarray(window), candles):
            assert gw.predict(x).pred_btc_close_next == from_list.pred_btc_close_next
        # As float32, the numbers sent are rounded to float32, and the gateway reads them as sent.
        rounded = gw.predict(np.asarray(window, np.float32)).pred_btc_close_next
        assert rounded == pytest.approx(from_list.pred_btc_close_next, rel=1e-6)

        moved = gw.reload("Production", timeout=120)
        assert moved == Reloaded("reloaded", "Production", trained.production)
        assert gw.predict(window).model_version == trained.production
        back = gw.reload(timeout=120)  # no alias: MODEL_ALIAS, staging
        assert back == Reloaded("reloaded", "staging", trained.staging)


def test_sync_client_error_classes_carry_status_and_the_specs_detail(
    live_gateway: LiveGateway, unloaded_gateway: ServerInThread
) -> None:
    window = real_windows(1)[0]
    with GatewayClient(live_gateway.url, admin_token=live_gateway.admin_token) as gw:
        with pytest.raises(PredictFailed) as bad_shape:
            gw.predict([[1.0, 2.0]])
        assert bad_shape.value.status_code == 400
        assert bad_shape.value.detail.startswith(PREDICT_PREFIX + "X has the wrong shape")
        with pytest.raises(BodyTooLarge) as too_large:
            gw.predict(np.ones((SEQ_LEN * 4000, 18)))
        assert too_large.value.status_code == 413
        assert too_large.value.detail.startswith(PREDICT_PREFIX + "request body too large")
        with pytest.raises(ReloadFailed) as unknown:
            gw.reload("no-such-alias", timeout=60)
        assert unknown.value.status_code == 500
        assert unknown.value.detail.startswith(RELOAD_PREFIX)
        assert "no-such-alias" in unknown.value.detail
        with pytest.raises(ReloadRejected) as blank:
            gw.reload("  ")
        assert blank.value.status_code == 400
        assert (
            blank.value.detail
            == RELOAD_PREFIX + "alias must be a non-empty string, got an empty string"
        )
        with pytest.raises(TypeError, match="X must be"):
            gw.predict("not a window")
    with GatewayClient(live_gateway.url, admin_token="wrong") as intruder:
        with pytest.raises(Unauthorized) as denied:
            intruder.reload()
        assert denied.value.status_code == 401
        assert denied.value.detail.startswith(RELOAD_PREFIX + "unauthorized")
    with GatewayClient(unloaded_gateway.url) as gw:
        with pytest.raises(ModelNotLoaded) as not_loaded:
            gw.predict(window)
        assert (not_loaded.value.status_code, not_loaded.value.detail) == (503, NOT_LOADED_DETAIL)
        assert gw.ready() == Readiness(False, None, None)
        assert gw.health().model_loaded is False
    with GatewayClient(f"http://127.0.0.1:{free_port()}", timeout=2) as nobody:
        with pytest.raises(GatewayUnreachable) as unreachable:
            nobody.health()
        assert unreachable.value.status_code is None
    # One family: every one of them is a GatewayError.
    for error in (bad_shape, too_large, unknown, blank, denied, not_loaded, unreachable):
        assert isinstance(error.value, GatewayError)


def test_async_client_every_method_and_errors(
    live_gateway: LiveGateway, unloaded_gateway: ServerInThread, trained: TrainedVersions
) -> None:
    windows = real_windows(8, seed=300)
    with GatewayClient(live_gateway.url) as sync:
        alone = [sync.predict(w).pred_btc_close_next for w in windows]

    async def scenario() -> None:
        async with AsyncGatewayClient(live_gateway.url, admin_token=live_gateway.admin_token) as gw:
            assert (await gw.health()).model_loaded is True
            assert (await gw.ready()).ready is True
            answers = await asyncio.gather(*(gw.predict(w) for w in windows))
            # Concurrent calls may share a batch: equal to the lone answers up to float32.
            assert [a.pred_btc_close_next for a in answers] == pytest.approx(alone, rel=1e-5)
            assert len({a.request_id for a in answers}) == len(windows)
            assert await gw.reload("staging", timeout=120) == Reloaded(
                "reloaded", "staging", trained.staging
            )
            with pytest.raises(PredictFailed) as bad:
                await gw.predict([[0.0] * 18] * (SEQ_LEN + 1))
            assert bad.value.detail.startswith(PREDICT_PREFIX)
            with pytest.raises(ReloadFailed):
                await gw.reload("no-such-alias", timeout=60)
        async with AsyncGatewayClient(live_gateway.url) as anonymous:
            with pytest.raises(Unauthorized):
                await anonymous.reload()
        async with AsyncGatewayClient(unloaded_gateway.url) as unloaded:
            with pytest.raises(ModelNotLoaded):
                await unloaded.predict(windows[0])
            assert (await unloaded.ready()).ready is False
        async with AsyncGatewayClient(f"http://127.0.0.1:{free_port()}", timeout=2) as nobody:
            with pytest.raises(GatewayUnreachable):
                await nobody.ready()

    asyncio.run(scenario())


def test_verify_webhook_accepts_the_gateways_signature_and_refuses_tampering(
    live_gateway: LiveGateway,
) -> None:
    with run_receiver("ok") as receiver, GatewayClient(live_gateway.url) as gw:
        answer = gw.predict(real_windows(1)[0], callback_url=receiver.url, metadata={"order": 7})
        assert answer.posted_to_callback is True
        headers, body = receiver.received[-1]
    payload = verify_webhook(live_gateway.callback_secret, headers, body)
    assert payload["pred_btc_close_next"] == answer.pred_btc_close_next
    assert payload["metadata"] == {"order": 7}
    tampered = json.dumps({**payload, "pred_btc_close_next": 1.0}).encode()
    with pytest.raises(WebhookVerificationError):
        verify_webhook(live_gateway.callback_secret, headers, tampered)
    with pytest.raises(WebhookVerificationError):
        verify_webhook("whsec_" + "QUFBQUFBQUFBQUFB", headers, body)
    unsigned = {k: v for k, v in headers.items() if not k.lower().startswith("webhook-")}
    with pytest.raises(WebhookVerificationError):
        verify_webhook(live_gateway.callback_secret, unsigned, body)
