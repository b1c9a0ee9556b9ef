"""Concurrent bursts through the real gateway: batching never mixes answers or versions."""

from __future__ import annotations

import asyncio

import httpx
import mlflow
import numpy as np
import pytest

from tests.helpers import (
    MODEL_NAME,
    LiveGateway,
    TrainedVersions,
    point_forecasts,
    real_windows,
)


@pytest.fixture(scope="module")
def expected(trained: TrainedVersions) -> dict[str, np.ndarray]:
    """Each version's own answers for the burst windows, computed outside the gateway."""
    x = real_windows(96, seed=7).astype(np.float32)
    return {
        version: point_forecasts(mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}"), x)
        for version in (trained.staging, trained.production)
    }


async def burst(url: str, bodies: list[dict[str, object]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.post(f"{url}/predict", json=b) for b in bodies))


def test_each_response_in_a_burst_carries_its_own_windows_prediction(
    swappable_gateway: LiveGateway, trained: TrainedVersions, expected: dict[str, np.ndarray]
) -> None:
    x = real_windows(96, seed=7)
    responses = asyncio.run(burst(swappable_gateway.url, [{"X": w.tolist()} for w in x]))
    assert [r.status_code for r in responses] == [200] * len(x)
    got = np.array([r.json()["pred_btc_close_next"] for r in responses])
    np.testing.assert_allclose(got, expected[trained.staging], rtol=1e-5)


def test_a_malformed_request_in_a_burst_gets_its_own_400(
    swappable_gateway: LiveGateway, trained: TrainedVersions, expected: dict[str, np.ndarray]
) -> None:
    x = real_windows(96, seed=7)
    bodies: list[dict[str, object]] = [{"X": w.tolist()} for w in x[:48]]
    short = {"X": x[0].tolist()[:5]}  # refused by the gateway before batching
    negative = x[1].copy()
    negative[-1, 3] = -1.0  # refused by the served version's contract, before batching
    bad_at = {5: short, 17: {"X": negative.tolist()}, 30: short, 41: {"X": negative.tolist()}}
    for i, body in bad_at.items():
        bodies[i] = body
    responses = asyncio.run(burst(swappable_gateway.url, bodies))
    for i, r in enumerate(responses):
        if i in bad_at:
            assert r.status_code == 400, r.text
            assert r.json()["detail"].startswith("예측 실패: ")
        else:
            assert r.status_code == 200, r.text
            assert r.json()["pred_btc_close_next"] == pytest.approx(
                float(expected[trained.staging][i]), rel=1e-5
            )
    assert "prices must be positive" in responses[17].json()["detail"]
    assert "wrong shape" in responses[5].json()["detail"]


def test_a_reload_during_bursts_never_mixes_versions_in_an_answer(
    swappable_gateway: LiveGateway, trained: TrainedVersions, expected: dict[str, np.ndarray]
) -> None:
    x = real_windows(96, seed=7)
    bodies = [{"X": w.tolist()} for w in x]

    async def scenario() -> list[httpx.Response]:
        # A new connection per reload: a burst can outlast the gateway's idle timeout (5 s), and
        # a kept-alive connection the server is closing just then fails the next reload.
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=60, limits=no_keepalive) as admin:
            responses: list[httpx.Response] = []
            for alias in ("Production", "staging", "Production", "staging"):
                reload = asyncio.create_task(
                    admin.post(
                        f"{swappable_gateway.url}/reload",
                        json={"alias": alias},
                        headers=swappable_gateway.admin,
                    )
                )
                responses += await burst(swappable_gateway.url, bodies)
                assert (await reload).status_code == 200
            return responses

    responses = asyncio.run(scenario())
    versions_seen = set()
    for i, r in enumerate(responses):
        assert r.status_code == 200, r.text
        answer = r.json()
        version = answer["model_version"]
        versions_seen.add(version)
        assert answer["model_alias"] == (
            "Production" if version == trained.production else "staging"
        )
        assert answer["pred_btc_close_next"] == pytest.approx(
            float(expected[version][i % len(x)]), rel=1e-5
        )
    assert versions_seen == {trained.staging, trained.production}
