"""POST /reload against a real registry: switching aliases, and failures that keep the old
model serving."""

from __future__ import annotations

import httpx
import mlflow
import numpy as np
import pytest

from tests.helpers import (
    MODEL_NAME,
    BadVersions,
    LiveGateway,
    TrainedVersions,
    point_forecasts,
    real_windows,
)


def reload(gw: LiveGateway, body: bytes = b"") -> httpx.Response:
    return httpx.post(f"{gw.url}/reload", content=body, headers=gw.admin, timeout=60)


def predict(gw: LiveGateway, window: np.ndarray) -> httpx.Response:
    return httpx.post(f"{gw.url}/predict", json={"X": window.tolist()}, timeout=30)


def test_reload_with_no_body_or_empty_object_keeps_the_default_alias(
    swappable_gateway: LiveGateway, trained: TrainedVersions
) -> None:
    for body in (b"", b"{}", b'{"alias": null}'):
        r = reload(swappable_gateway, body)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "status": "reloaded",
            "model_alias": "staging",
            "model_version": trained.staging,
        }


def test_reload_to_production_serves_version_2(
    swappable_gateway: LiveGateway, trained: TrainedVersions
) -> None:
    r = reload(swappable_gateway, b'{"alias": "Production"}')
    assert r.status_code == 200, r.text
    assert r.json() == {
        "status": "reloaded",
        "model_alias": "Production",
        "model_version": trained.production,
    }
    assert swappable_gateway.health()["model_version"] == trained.production
    x = real_windows(3)
    v2 = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{trained.production}")
    v1 = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{trained.staging}")
    expected = point_forecasts(v2, x)
    assert not np.allclose(expected, point_forecasts(v1, x), rtol=1e-7)
    for window, value in zip(x, expected, strict=True):
        answer = predict(swappable_gateway, window).json()
        assert answer["model_alias"] == "Production"
        assert answer["model_version"] == trained.production
        assert answer["pred_btc_close_next"] == pytest.approx(float(value), rel=1e-5)


@pytest.mark.parametrize(
    ("alias", "reason"),
    [
        ("no-such-alias", "alias 'no-such-alias' of model 'BTC_LSTM_Production' not found"),
        ("broken", "could not be loaded: this version's artifacts are broken"),
        (
            "short_window",
            "takes windows of 10 x 18 (seq_len x n_features), this gateway is "
            "configured for 12 x 18",
        ),
    ],
)
def test_failed_reload_is_500_and_the_old_model_keeps_serving(
    swappable_gateway: LiveGateway,
    trained: TrainedVersions,
    bad_versions: BadVersions,
    alias: str,
    reason: str,
) -> None:
    before = reload(swappable_gateway, b'{"alias": "Production"}').json()
    r = reload(swappable_gateway, f'{{"alias": "{alias}"}}'.encode())
    assert r.status_code == 500
    assert r.json()["detail"].startswith("모델 리로드 실패: ")
    assert reason in r.json()["detail"]
    health = swappable_gateway.health()
    assert (health["model_loaded"], health["model_alias"], health["model_version"]) == (
        True,
        "Production",
        before["model_version"],
    )
    answer = predict(swappable_gateway, real_windows(1)[0])
    assert answer.status_code == 200
    assert answer.json()["model_version"] == trained.production


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{alias", "body is not valid JSON"),
        (b'["Production"]', "body must be a JSON object"),
        (b'"Production"', "body must be a JSON object"),
        (b'{"alias": 2}', "alias must be a non-empty string, got a number"),
        (b'{"alias": ""}', "alias must be a non-empty string"),
        (b'{"alias": ["a"]}', "got an array"),
    ],
)
def test_unreadable_reload_body_is_400(
    swappable_gateway: LiveGateway, body: bytes, reason: str
) -> None:
    r = reload(swappable_gateway, body)
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert detail.startswith("모델 리로드 실패: ")
    assert reason in detail
