"""E-mail through Django's e-mail framework (SMTP in production), with plain-text and HTML
templates under templates/email/. The ledger (EmailRecord) makes each idempotency key hand over
one message, and the Message-ID is derived from the key: should a worker die after the SMTP
server accepted a message but before the ledger recorded it, the retry sends the same message
with the same Message-ID, which mail systems treat as one."""

import hashlib
import smtplib
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from sagas.errors import TransientError

from .base import EmailReceipt, ProviderUnavailable
from .models import EmailRecord

# A refused message, a server that is down or times out: the mail was not accepted (a timeout
# after DATA was sent is the rare exception the stable Message-ID covers).
DELIVERY_ERRORS = (smtplib.SMTPException, OSError, TransientError)


def message_id_for(idempotency_key: str) -> str:
    """The Message-ID of the message sent with this key: the same on every attempt."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip(">") or "bookings"
    return f"<{digest}@{domain}>"


class DjangoEmailSender:
    def send(
        self, *, idempotency_key: str, to: str, template: str, context: dict[str, Any]
    ) -> EmailReceipt:
        """Send once per key: a key already sent returns its first message id."""
        subject = render_to_string(f"email/{template}_subject.txt", context).strip()
        message_id = message_id_for(idempotency_key)
        try:
            # First call with this key: the ledger row is inserted as sent and committed only
            # once the message is handed over; until then its key is locked, so a concurrent
            # duplicate waits for the answer instead of sending a second message.
            with transaction.atomic():
                EmailRecord.objects.create(
                    idempotency_key=idempotency_key,
                    to=to,
                    template=template,
                    subject=subject,
                    status=EmailRecord.Status.SENT,
                    attempts=1,
                    message_id=message_id,
                    sent_at=timezone.now(),
                )
                self.deliver(to, subject, template, context, message_id)
        except IntegrityError:
            return self._again(idempotency_key, to, template, context)
        except DELIVERY_ERRORS as exc:
            self._failed(idempotency_key, to, template, exc)
            raise ProviderUnavailable(f"e-mail not sent: {exc}", code="email") from exc
        return EmailReceipt(message_id)

    def _failed(self, idempotency_key: str, to: str, template: str, exc: Exception) -> None:
        with transaction.atomic():
            record, _ = EmailRecord.objects.select_for_update().get_or_create(
                idempotency_key=idempotency_key, defaults={"to": to, "template": template}
            )
            record.attempts += 1
            record.last_error = str(exc)[:255] or type(exc).__name__
            record.save()

    def _again(
        self, idempotency_key: str, to: str, template: str, context: dict[str, Any]
    ) -> EmailReceipt:
        """A retry or a duplicate: the first message id if sent, else one more try."""
        error = ""
        with transaction.atomic():
            record, _ = EmailRecord.objects.select_for_update().get_or_create(
                idempotency_key=idempotency_key, defaults={"to": to, "template": template}
            )
            if record.status == EmailRecord.Status.SENT:
                return EmailReceipt(record.message_id)
            record.attempts += 1
            subject = render_to_string(f"email/{template}_subject.txt", context).strip()
            message_id = message_id_for(idempotency_key)
            try:
                self.deliver(to, subject, template, context, message_id)
            except DELIVERY_ERRORS as exc:
                error = str(exc)[:255] or type(exc).__name__
                record.last_error = error
            else:
                record.status = EmailRecord.Status.SENT
                record.subject, record.message_id = subject, message_id
                record.sent_at = timezone.now()
            record.save()
        if error:
            raise ProviderUnavailable(f"e-mail not sent: {error}", code="email")
        return EmailReceipt(record.message_id)

    def lookup(self, *, idempotency_key: str) -> EmailReceipt | None:
        """The message handed over with this key, if one was."""
        record = EmailRecord.objects.filter(
            idempotency_key=idempotency_key, status=EmailRecord.Status.SENT
        ).first()
        return EmailReceipt(record.message_id) if record else None

    def deliver(
        self, to: str, subject: str, template: str, context: dict[str, Any], message_id: str
    ) -> None:
        """Render and hand the message to Django's configured e-mail backend."""
        text = render_to_string(f"email/{template}.txt", context)
        html = render_to_string(f"email/{template}.html", context)
        message = EmailMultiAlternatives(
            subject, text, settings.DEFAULT_FROM_EMAIL, [to], headers={"Message-ID": message_id}
        )
        message.attach_alternative(html, "text/html")
        message.send()
