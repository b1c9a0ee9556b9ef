"""The admin token is compared in constant time, whatever the length of what is sent."""

from __future__ import annotations

import pytest

# 1. Write-side limits ------------------------------------------------------------------------


# The Python client and the webhook check ------------------------------------------------------


def test_token_comparison_sees_equal_lengths_whatever_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hmac

    from gateway.routes import token_matches

    lengths: list[tuple[int, int]] = []
    compare = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        lengths.append((len(a), len(b)))
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    assert token_matches("Bearer right-token", "right-token")
    for given in ("", "Bearer r", "Bearer right-token-and-more" * 10):
        assert not token_matches(given, "right-token")
    assert all(a == b for a, b in lengths) and len(set(lengths)) == 1
