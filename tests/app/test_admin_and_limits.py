"""Admin auth and body limits against the app in this process with a stand-in model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.helpers import (
    real_windows,
)
from tests.in_process import serve_in_process

TOKEN = "s3cret-token"
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def app() -> Iterator[TestClient]:
    with serve_in_process({"GATEWAY_ADMIN_TOKEN": TOKEN, "MAX_BODY_BYTES": str(LIMIT)}) as client:
        yield client


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer wrong", f"bearer {TOKEN}x", f"Basic {TOKEN}"]
)
def test_reload_without_the_admin_token_is_401(app: TestClient, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    r = app.post("/reload", headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert r.json()["detail"].startswith("모델 리로드 실패: unauthorized")
    assert TOKEN not in r.text


def test_reload_with_the_admin_token_works(app: TestClient) -> None:
    r = app.post("/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "reloaded", "model_alias": "staging", "model_version": "1"}
    # /predict and /health need no token.
    assert app.get("/health").json()["model_loaded"] is True
    assert app.post("/predict", json={"X": real_windows(1)[0].tolist()}).status_code == 200


def test_chunked_body_over_the_limit_is_413(app: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(LIMIT // 1024 + 8):
            yield b" " * 1024

    r = app.post("/predict", content=chunks())
    assert r.status_code == 413
    assert r.json()["detail"] == (
        f"예측 실패: request body too large: at most {LIMIT} bytes, got more"
    )
    r = app.post("/reload", content=chunks(), headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 413
    assert r.json()["detail"].startswith("모델 리로드 실패: request body too large")
