"""E-mail over real SMTP: Django's SMTP backend against a real SMTP server started by the test
(aiosmtpd on 127.0.0.1). Each key hands over one message with both parts and its headers; a
server that refuses or does not answer is a transient failure, and the retry sends the same
message (same Message-ID)."""

from __future__ import annotations

import pytest

from bookings.providers.base import ProviderUnavailable
from bookings.providers.email import DjangoEmailSender, message_id_for
from bookings.providers.models import EmailRecord

from .test_contract import CONTEXT

pytestmark = pytest.mark.django_db


def send(key: str = "saga-9:send_email:action", to: str = "ada@example.com"):
    return DjangoEmailSender().send(
        idempotency_key=key, to=to, template="booking_confirmed", context=CONTEXT
    )


def test_a_message_has_both_parts_and_its_headers(smtp_server, settings):
    receipt = send()
    [message] = smtp_server.messages
    assert message["Message-ID"] == receipt.message_id == message_id_for("saga-9:send_email:action")
    assert (message["To"], message["From"]) == ("ada@example.com", settings.DEFAULT_FROM_EMAIL)
    assert "BK-CONTRACT" in message["Subject"]
    parts = {part.get_content_type(): part for part in message.walk()}
    assert message.get_content_type() == "multipart/alternative"
    assert {"text/plain", "text/html"} <= set(parts)
    assert "BK-CONTRACT" in parts["text/plain"].get_payload(decode=True).decode()
    assert "<" in parts["text/html"].get_payload(decode=True).decode()


def test_a_refusing_server_is_transient_and_the_retry_sends_one_message(smtp_server):
    smtp_server.refuse = 1
    with pytest.raises(ProviderUnavailable) as caught:
        send()
    assert caught.value.code == "email"
    assert smtp_server.messages == []
    assert EmailRecord.objects.get().status == "failed"
    receipt = send()
    assert [m["Message-ID"] for m in smtp_server.messages] == [receipt.message_id]
    assert send() == receipt and len(smtp_server.messages) == 1


def test_a_server_that_does_not_answer_is_transient(smtp_server):
    smtp_server.hang = 1
    with pytest.raises(ProviderUnavailable):
        send()
    assert smtp_server.messages == []
    send()
    assert len(smtp_server.messages) == 1


def test_a_server_that_is_not_there_is_transient(settings):
    from devtools.harness import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 1
    with pytest.raises(ProviderUnavailable):
        send()
