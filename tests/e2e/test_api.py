"""The spec's API end to end against the live gateway (real registry, trained model,
`python -m gateway`): health, and predictions equal to the pyfunc's own."""

from __future__ import annotations

from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest

from tests.helpers import (
    MODEL_NAME,
    LiveGateway,
    TrainedVersions,
    real_windows,
)


@pytest.fixture(scope="module")
def staging_pyfunc(trained: TrainedVersions) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{trained.staging}")


# End to end: the live gateway serving the real model ----------------------------------------


def test_health_reports_the_loaded_model(
    live_gateway: LiveGateway, trained: TrainedVersions
) -> None:
    r = httpx.get(f"{live_gateway.url}/health")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "model_loaded": True,
        "model_alias": "staging",
        "model_version": trained.staging,
        # Extras beyond the spec: what runs the network, and the shadow alias (off here).
        "model_runtime": "numpy",
        "shadow": None,
    }


def test_the_gateway_serves_without_loading_tensorflow(live_gateway: LiveGateway) -> None:
    """The version carries its NumPy weights: the serving process never maps TensorFlow's
    libraries (which would cost it seconds of start-up and hundreds of MiB)."""
    assert httpx.get(f"{live_gateway.url}/health").json()["model_runtime"] == "numpy"
    maps = Path(f"/proc/{live_gateway.pid}/maps").read_text()
    assert "site-packages/numpy" in maps  # the check can see site-packages
    assert "tensorflow" not in maps


def test_predict_equals_the_pyfuncs_own_output(
    live_gateway: LiveGateway,
    staging_pyfunc: mlflow.pyfunc.PyFuncModel,
    trained: TrainedVersions,
) -> None:
    x = real_windows(5)
    expected = staging_pyfunc.predict(x.astype(np.float32))
    for window, row in zip(x, expected.itertuples(index=False), strict=True):
        r = httpx.post(f"{live_gateway.url}/predict", json={"X": window.tolist()}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "pred_btc_close_next": pytest.approx(row.pred_btc_close_next, rel=1e-5),
            "posted_to_callback": False,
            "model_alias": "staging",
            "model_version": trained.staging,
            "pred_interval": {
                "lower": pytest.approx(row.pred_interval_lower, rel=1e-5),
                "upper": pytest.approx(row.pred_interval_upper, rel=1e-5),
                "level": 0.8,
            },
        }


def test_predict_takes_an_integer_window_like_the_pyfunc(
    live_gateway: LiveGateway, staging_pyfunc: mlflow.pyfunc.PyFuncModel
) -> None:
    """The gateway door of the input contract (tests/e2e/test_input_contract.py): JSON integers."""
    window = np.round(real_windows(1)[0]).astype(np.int64)
    expected = staging_pyfunc.predict(window.tolist())["pred_btc_close_next"][0]
    r = httpx.post(f"{live_gateway.url}/predict", json={"X": window.tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["pred_btc_close_next"] == pytest.approx(expected, rel=1e-5)


# In this process, with the stand-in model ---------------------------------------------------
