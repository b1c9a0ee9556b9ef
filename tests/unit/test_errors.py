"""The spec's exact texts."""

from __future__ import annotations

from gateway.errors import NOT_LOADED_DETAIL

# End to end: the live gateway serving the real model ----------------------------------------


def test_not_loaded_detail_is_the_spec_text() -> None:
    assert NOT_LOADED_DETAIL == "모델이 로드되지 않았습니다. /reload를 시도하세요."
