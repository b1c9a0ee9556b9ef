"""Checking a callback's signature on the receiving side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import standardwebhooks
from standardwebhooks import WebhookVerificationError

from gateway.webhooks.signing import signing_key


def verify_webhook(secret: str, headers: Mapping[str, str], body: bytes | str) -> dict[str, Any]:
    """The callback payload, once its Standard Webhooks signature checks out against `secret`
    (the gateway's CALLBACK_SECRET: "whsec_<base64>" or any other text, taken as UTF-8 bytes).
    Raises WebhookVerificationError for a missing, wrong or stale (over 5 minutes) signature,
    and ValueError for a secret the gateway itself would refuse."""
    # The gateway's own key rule, so that both sides read a secret the same way; the check is
    # the library's, an implementation independent of the gateway's signer.
    payload = standardwebhooks.Webhook(signing_key(secret)).verify(body, dict(headers))
    if not isinstance(payload, dict):
        raise WebhookVerificationError("the signed body is not a JSON object")
    return payload
