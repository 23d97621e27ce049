"""Fraud screening the product owns: rules over its own records, every decision stored with the
rule that made it and why.

The rules, in order (the first that matches rejects):
- the deny list (FraudDenyEntry, managed in the admin): an exact e-mail address or a domain;
- the amount ceiling: settings.BOOKING_FRAUD_RULES["max_amount"] (any currency);
- velocity: at most "per_email_per_hour" approved bookings per guest e-mail, and at most
  "per_payment_method_per_hour" per payment method, in the last hour.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from config import queries

from .base import FraudDecision
from .ledger import insert_once
from .models import FraudDenyEntry, FraudScreeningRecord


def payment_method_digest(payment_method: str) -> str:
    """A stable digest of a payment token: counts bookings per method without storing it."""
    if not payment_method:
        return ""
    return hashlib.sha256(f"{settings.SECRET_KEY}:{payment_method}".encode()).hexdigest()


class RulesFraudScreening:
    """The production fraud screening: the deny list, an amount ceiling, velocity limits."""

    def screen(
        self,
        *,
        idempotency_key: str,
        email: str,
        name: str,
        amount: Decimal,
        currency: str,
        payment_method: str = "",
    ) -> FraudDecision:
        """Apply the rules and store the decision with its reason. Same key, same decision
        (the first one), even when the rules or the counts have changed since: the ledger's unique
        key decides, so two concurrent first calls store one decision."""
        email = email.strip().lower()
        digest = payment_method_digest(payment_method)
        rule, reason = self.verdict(email=email, amount=amount, digest=digest) or ("", "")
        record = insert_once(
            FraudScreeningRecord,
            idempotency_key=idempotency_key,
            reference=f"fr_{secrets.token_hex(8)}",
            email=email,
            approved=not rule,
            rule=rule,
            reason=reason,
            payment_method_digest=digest,
            amount=amount,
            currency=currency,
        ) or FraudScreeningRecord.objects.get(idempotency_key=idempotency_key)
        return FraudDecision(record.approved, record.reference, record.reason)

    def deny_listed(self, email: str) -> tuple[str, str] | None:
        """The deny-list entry that rejects this address, if any."""
        domain = email.rpartition("@")[2]
        kinds = FraudDenyEntry.Kind
        # Each pair is served by the unique index on kind and value.
        entries = queries.select(
            FraudDenyEntry,
            "({kind} = %s AND {value} = %s) OR ({kind} = %s AND {value} = %s) ORDER BY {id}",
            [kinds.EMAIL.value, email, kinds.DOMAIN.value, domain],
        )
        entry = next(iter(entries), None)
        return ("deny_list", f"{entry} is on the deny list"[:120]) if entry else None

    def verdict(self, *, email: str, amount: Decimal, digest: str) -> tuple[str, str] | None:
        """The rule that rejects the booking and why, or None to approve it."""
        denied = self.deny_listed(email)
        if denied:
            return denied
        rules = settings.BOOKING_FRAUD_RULES
        ceiling = Decimal(str(rules["max_amount"]))
        if amount > ceiling:
            return "amount_ceiling", f"amount {amount} is over the ceiling of {ceiling}"
        since = timezone.now() - timedelta(hours=1)
        recent = FraudScreeningRecord.objects.filter(approved=True, created_at__gte=since)
        per_email = int(rules["per_email_per_hour"])
        if recent.filter(email=email).count() >= per_email:
            return "email_velocity", f"more than {per_email} bookings in an hour for this e-mail"
        per_method = int(rules["per_payment_method_per_hour"])
        if digest and recent.filter(payment_method_digest=digest).count() >= per_method:
            return (
                "payment_velocity",
                f"more than {per_method} bookings in an hour with this payment method",
            )
        return None

    def lookup(self, *, idempotency_key: str) -> FraudDecision | None:
        """The decision made with this key, if any."""
        record = FraudScreeningRecord.objects.filter(idempotency_key=idempotency_key).first()
        return FraudDecision(record.approved, record.reference, record.reason) if record else None
