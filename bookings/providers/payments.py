"""Payment gateway. Sandbox magic tokens: tok_declined (declined), tok_flaky (two transient
failures, then authorized), tok_void_fails (authorized, every void fails transiently),
tok_void_flaky (authorized, the first two voids fail transiently); any other tok_... is
authorized; anything else is declined as an invalid token."""

import secrets
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from sagas.errors import TransientError

from . import outage
from .base import AuthorizationResult, VoidResult
from .ledger import insert_once
from .models import PaymentAuthorization

Status = PaymentAuthorization.Status


def _result(record: PaymentAuthorization) -> AuthorizationResult:
    decline = "card declined" if record.status == Status.DECLINED else ""
    return AuthorizationResult(
        record.reference, record.status, record.amount, record.currency, decline
    )


class SandboxPaymentGateway:
    def authorize(
        self, *, idempotency_key: str, token: str, amount: Decimal, currency: str
    ) -> AuthorizationResult:
        """Hold the amount. A key seen before returns its first final answer."""
        outage.raise_if_down("payments")
        # First call with this key (the common case): one INSERT with the answer.
        flaky = token == "tok_flaky"
        declined = token == "tok_declined" or not token.startswith("tok_")
        status = Status.PENDING if flaky else Status.DECLINED if declined else Status.AUTHORIZED
        record = insert_once(
            PaymentAuthorization,
            idempotency_key=idempotency_key,
            reference=f"auth_{secrets.token_hex(8)}",
            token=token,
            amount=amount,
            currency=currency,
            status=status,
            attempts=1,
            authorized_at=timezone.now() if status == Status.AUTHORIZED else None,
        )
        if record is None:
            return self._again(idempotency_key)
        if flaky:
            raise TransientError("payment gateway timed out (sandbox: flaky card)", code="gateway")
        return _result(record)

    def _again(self, idempotency_key: str) -> AuthorizationResult:
        """A retry or a duplicate: the first final answer, or (tok_flaky) one more try."""
        transient = False
        with transaction.atomic():
            record = PaymentAuthorization.objects.select_for_update().get(
                idempotency_key=idempotency_key
            )
            if record.status != Status.PENDING:
                return _result(record)
            record.attempts += 1
            if record.attempts <= 2:  # tok_flaky: the first two attempts time out
                transient = True
            else:
                record.status = Status.AUTHORIZED
                record.authorized_at = timezone.now()
            record.save()
        if transient:
            raise TransientError("payment gateway timed out (sandbox: flaky card)", code="gateway")
        return _result(record)

    def void(self, *, idempotency_key: str, authorization_ref: str) -> VoidResult:
        """Release the hold. Unknown references and holds already voided are no-ops."""
        outage.raise_if_down("payments")
        failed = False
        with transaction.atomic():
            record = (
                PaymentAuthorization.objects.select_for_update()
                .filter(reference=authorization_ref)
                .first()
            )
            if record is None or record.status in (Status.DECLINED, Status.PENDING):
                return VoidResult(authorization_ref, "not_found")
            if record.status == Status.VOIDED:
                return VoidResult(record.reference, "voided")
            record.void_attempts += 1
            if record.token == "tok_void_fails" or (
                record.token == "tok_void_flaky" and record.void_attempts <= 2
            ):
                failed = True
            else:
                record.status = Status.VOIDED
                record.voided_at = timezone.now()
                record.void_key = idempotency_key
            record.save()
        if failed:
            raise TransientError("void refused (sandbox: card whose voids fail)", code="gateway")
        return VoidResult(record.reference, "voided")

    def lookup(self, *, idempotency_key: str) -> AuthorizationResult | None:
        """The authorization made with this key, if any."""
        record = PaymentAuthorization.objects.filter(idempotency_key=idempotency_key).first()
        return _result(record) if record else None
