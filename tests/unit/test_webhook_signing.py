"""gateway.webhooks.signing, judged by the `standardwebhooks` library: its verifier checks what
real receivers got, and its own `sign` must give the same signature for the same inputs."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.webhooks.delivery import CallbackSender, DeliveryResult
from gateway.webhooks.policy import create_session
from gateway.webhooks.signing import Signer
from tests.receiver import Receiver
from tests.webhooks import ALLOWED, ALLOWED_HOST, PAYLOAD, sender


def whsec() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


@pytest.mark.anyio
async def test_signed_with_whsec_secret_and_same_id_across_retries() -> None:
    secret = whsec()
    async with (
        Receiver(statuses=(503, 500, 200), host=ALLOWED_HOST) as receiver,
        sender(secret=secret) as s,
    ):
        result = await s.deliver(receiver.url, PAYLOAD)
    assert result == DeliveryResult(ok=True, error=None, attempts=3)
    verifier = Webhook(secret)
    for got in receiver.received:
        assert verifier.verify(got.body, got.headers) == PAYLOAD
        assert got.headers["webhook-signature"].startswith("v1,")
        int(got.headers["webhook-timestamp"])  # integer seconds
    ids = {got.headers["webhook-id"] for got in receiver.received}
    assert len(ids) == 1
    assert ids.pop().startswith("msg_")


@pytest.mark.anyio
async def test_signed_with_plain_secret_uses_its_utf8_bytes() -> None:
    secret = "plain secret, not base64: ü"
    async with Receiver(host=ALLOWED_HOST) as receiver, sender(secret=secret) as s:
        assert (await s.deliver(receiver.url, PAYLOAD)).ok
    [got] = receiver.received
    # standardwebhooks base64-decodes any str secret: raw keys must be given as bytes.
    assert Webhook(secret.encode()).verify(got.body, got.headers) == PAYLOAD
    with pytest.raises(WebhookVerificationError):
        Webhook(whsec()).verify(got.body, got.headers)


@pytest.mark.anyio
async def test_unpadded_whsec_secret_is_accepted() -> None:
    key = os.urandom(16)  # 16 bytes -> base64 with "==" padding, stripped here
    secret = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    async with Receiver(host=ALLOWED_HOST) as receiver, sender(secret=secret) as s:
        assert (await s.deliver(receiver.url, PAYLOAD)).ok
    [got] = receiver.received
    assert Webhook(key).verify(got.body, got.headers) == PAYLOAD


@pytest.mark.anyio
@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_not*base64!"])
async def test_unusable_secret_is_refused(secret: str) -> None:
    session = create_session(ALLOWED)
    try:
        with pytest.raises(ValueError) as info:
            CallbackSender(session, 1.0, secret)
        if secret.startswith("whsec_") and len(secret) > 6:
            assert secret not in str(info.value)  # never echo the secret
    finally:
        await session.close()


@settings(max_examples=100)
@given(
    key=st.binary(min_size=1, max_size=64),
    message_id=st.text(min_size=1, max_size=40),
    timestamp=st.integers(0, 2**33),
    body=st.text(max_size=300),
)
def test_signature_equals_the_librarys(
    key: bytes, message_id: str, timestamp: int, body: str
) -> None:
    headers = Signer("whsec_" + base64.b64encode(key).decode()).headers(
        message_id, body.encode(), timestamp
    )
    expected = Webhook(key).sign(message_id, datetime.fromtimestamp(timestamp, UTC), body)
    assert headers == {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": expected,
    }
