"""Checking a callback's signature on the receiving side, with optional replay protection."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import standardwebhooks
from standardwebhooks import WebhookVerificationError

from gateway.webhooks.signing import signing_key

# standardwebhooks accepts a timestamp up to 5 minutes either side of now: an id must be
# remembered at least that long after its timestamp, plus the time it may come early.
_REMEMBER_SECONDS = 10 * 60


class SeenIds:
    """The `webhook-id`s already accepted, for `verify_webhook(..., seen=)`: a second message
    with one of them is a replay (or a retry of a delivery already taken). Kept for the
    signature's tolerance window, at most `max_ids` (the oldest go first). Thread-safe."""

    def __init__(self, max_ids: int = 100_000) -> None:
        self._max_ids = max_ids
        self._seen: OrderedDict[str, float] = OrderedDict()  # id -> when it may be forgotten
        self._lock = threading.Lock()

    def add(self, message_id: str, now: float | None = None) -> bool:
        """Records `message_id`; False if it was already there."""
        now = time.time() if now is None else now
        with self._lock:
            while self._seen and (
                next(iter(self._seen.values())) < now or len(self._seen) >= self._max_ids
            ):
                self._seen.popitem(last=False)
            if message_id in self._seen:
                return False
            self._seen[message_id] = now + _REMEMBER_SECONDS
            return True


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    seen: SeenIds | None = None,
) -> dict[str, Any]:
    """The callback payload, once its Standard Webhooks signature checks out against `secret`
    (the gateway's CALLBACK_SECRET: "whsec_<base64>" or any other text, taken as UTF-8 bytes).

    Raises WebhookVerificationError, and only that, for anything a sender controls: a missing,
    wrong or stale (over 5 minutes) signature, a malformed header or body, and, with `seen`, an
    id already accepted. ValueError is reserved for a `secret` the gateway itself would refuse.
    """
    # The gateway's own key rule, so that both sides read a secret the same way; the check is
    # the library's, an implementation independent of the gateway's signer.
    webhook = standardwebhooks.Webhook(signing_key(secret))
    try:
        payload = webhook.verify(body, dict(headers))
    except WebhookVerificationError:
        raise
    except (ValueError, TypeError, RecursionError, KeyError) as e:
        # The library lets malformed input through as these (bad base64, a body that is not
        # UTF-8, nesting too deep to parse).
        raise WebhookVerificationError(f"malformed webhook: {type(e).__name__}") from None
    if not isinstance(payload, dict):
        raise WebhookVerificationError("the signed body is not a JSON object")
    if seen is not None and not seen.add(_header(headers, "webhook-id")):
        raise WebhookVerificationError("this webhook-id was already accepted (a replay)")
    return payload


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing {name} header")
