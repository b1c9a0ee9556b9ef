"""Logging: lines a client can cause come at a bounded rate."""

from __future__ import annotations

import pytest

# 1. Write-side limits ------------------------------------------------------------------------


# The Python client and the webhook check ------------------------------------------------------


def test_rate_limited_log_keeps_a_burst_per_period_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from gateway.logs import RateLimitedLog

    now = [0.0]
    limited = RateLimitedLog(
        logging.getLogger("gateway.test"), burst=3, period=10, clock=lambda: now[0]
    )
    with caplog.at_level(logging.INFO, logger="gateway.test"):
        for i in range(50):
            limited.warning("refused %d", i)
        now[0] = 10.0
        limited.warning("refused again")
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0",
        "refused 1",
        "refused 2",
        "47 more such lines suppressed in the last 10 s",
        "refused again",
    ]
