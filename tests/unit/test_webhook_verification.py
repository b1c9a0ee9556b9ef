"""verify_webhook raises only its own error for what a sender controls, and refuses replays
with a SeenIds cache."""

from __future__ import annotations

import pytest

from gateway.client import WebhookVerificationError
from gateway.client.webhooks import verify_webhook
from gateway.webhooks.signing import Signer

# 1. Write-side limits ------------------------------------------------------------------------


# The Python client and the webhook check ------------------------------------------------------


SECRET_KEY = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM="


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: ({**h, "webhook-signature": "v1,not base64!!"}, b),
        lambda h, b: ({**h, "webhook-timestamp": "soon"}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b),
        lambda h, b: (h, b"\xff\xfe not utf-8"),
        lambda h, b: (h, b"[" * 100_000 + b"]" * 100_000),
        lambda h, b: ({**h, "webhook-signature": "\x00" * 10}, b),
    ],
)
def test_verify_webhook_raises_only_its_own_error(tamper) -> None:  # type: ignore[no-untyped-def]
    body = b'{"pred_btc_close_next": 1.0}'
    headers = Signer(SECRET_KEY).headers("msg_1", body)
    bad_headers, bad_body = tamper(headers, body)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET_KEY, bad_headers, bad_body)


def test_verify_webhook_refuses_a_replay_with_a_seen_id_cache() -> None:
    from gateway.client.webhooks import SeenIds

    body = b'{"pred_btc_close_next": 1.0}'
    seen = SeenIds()
    headers = Signer(SECRET_KEY).headers("msg_replayed", body)
    assert verify_webhook(SECRET_KEY, headers, body, seen=seen) == {"pred_btc_close_next": 1.0}
    with pytest.raises(WebhookVerificationError, match="already"):
        verify_webhook(SECRET_KEY, headers, body, seen=seen)
    # Without the cache, each check stands alone (the library's behaviour).
    assert verify_webhook(SECRET_KEY, headers, body) == {"pred_btc_close_next": 1.0}
