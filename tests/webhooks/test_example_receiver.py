"""examples/webhook_receiver.py (what docs/semantics.md and docs/webhooks.md show a client)
accepts what the independent `standardwebhooks` library signs, and refuses forged, stale and
foreign ones."""

from __future__ import annotations

import importlib.util
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import standardwebhooks

from webhooks import signing

PATH = Path(__file__).resolve().parents[2] / "examples" / "webhook_receiver.py"
spec = importlib.util.spec_from_file_location("webhook_receiver", PATH)
assert spec and spec.loader
receiver = importlib.util.module_from_spec(spec)
spec.loader.exec_module(receiver)

SECRET = signing.new_secret()
BODY = b'{"id":"evt-1","type":"booking.completed","sequence":2,"data":{"state":"completed"}}'


def signed(secret: str = SECRET, body: bytes = BODY, at: float | None = None) -> dict[str, str]:
    moment = datetime.fromtimestamp(at or time.time(), tz=UTC)
    signature = standardwebhooks.Webhook(secret).sign("evt-1", moment, body.decode())
    return {
        "webhook-id": "evt-1",
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }


def test_a_message_signed_by_the_library_verifies():
    assert receiver.verify(SECRET, signed(), BODY)["type"] == "booking.completed"


def test_one_good_signature_among_several_is_enough():
    headers = signed()
    other = signed(signing.new_secret())["webhook-signature"]
    headers["webhook-signature"] = f"{other} {headers['webhook-signature']}"
    assert receiver.verify(SECRET, headers, BODY)["sequence"] == 2


@pytest.mark.parametrize(
    "headers,body",
    [
        (signed(signing.new_secret()), BODY),  # another secret
        (signed(), BODY.replace(b"completed", b"cancelled")),  # a changed body
        (signed(at=time.time() - 3600), BODY),  # an old message replayed
    ],
)
def test_forged_changed_or_stale_messages_are_refused(headers, body):
    with pytest.raises(ValueError):
        receiver.verify(SECRET, headers, body)
