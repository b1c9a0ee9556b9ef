"""Standard Webhooks signatures for callbacks: `webhook-id`, `webhook-timestamp` and
`webhook-signature`, which is "v1," + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).

Signed with the standard library's `hmac` rather than `standardwebhooks.Webhook.sign`: that
method takes the body as text and the time as a datetime, so every attempt would decode the body
only for it to be encoded again (the cost grows with the client's metadata), and its constructor
reads any text secret as base64, which is not what CALLBACK_SECRET means (see `signing_key`). The
library stays the independent judge: the tests check our headers with its verifier, as receivers
and `gateway.client.verify_webhook` do, and compare our signatures with its `sign`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

__all__ = ["Signer", "signing_key"]

_SECRET_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    """The HMAC key for a secret: base64-decoded after "whsec_", else its UTF-8 bytes."""
    if secret.startswith(_SECRET_PREFIX):
        encoded = secret[len(_SECRET_PREFIX) :]
        try:
            # Secrets are often shared without base64 padding.
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            # Never echo the secret itself.
            raise ValueError("callback secret starts with 'whsec_' but is not base64") from None
    else:
        key = secret.encode("utf-8")
    if not key:
        raise ValueError("callback secret is empty")
    return key


class Signer:
    """Signs callback bodies with one secret; raises ValueError at once for an unusable one."""

    def __init__(self, secret: str) -> None:
        self._key = signing_key(secret)

    def headers(self, message_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The three Standard Webhooks headers for `body`, stamped now unless `timestamp` is given.

        Delivery stamps every attempt afresh, so receivers' replay windows hold for late retries
        too, and keeps `message_id` across them, so receivers can deduplicate."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signed = b".".join((message_id.encode(), stamp.encode(), body))
        digest = hmac.new(self._key, signed, hashlib.sha256).digest()
        return {
            "webhook-id": message_id,
            "webhook-timestamp": stamp,
            "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
        }
