"""Fraud screening. The sandbox rejects every guest e-mail address at @fraud.test."""

import secrets
from decimal import Decimal

from django.db import transaction

from . import outage
from .base import FraudDecision
from .models import FraudScreeningRecord


class SandboxFraudScreening:
    def screen(
        self, *, idempotency_key: str, email: str, name: str, amount: Decimal, currency: str
    ) -> FraudDecision:
        """Approve, unless the address ends in @fraud.test. Same key, same decision."""
        outage.raise_if_down("fraud")
        with transaction.atomic():
            record, _ = FraudScreeningRecord.objects.get_or_create(
                idempotency_key=idempotency_key,
                defaults={
                    "reference": f"fr_{secrets.token_hex(8)}",
                    "email": email,
                    "approved": not email.lower().endswith("@fraud.test"),
                    "reason": "address on the sandbox deny list"
                    if email.lower().endswith("@fraud.test")
                    else "",
                },
            )
        return FraudDecision(record.approved, record.reference, record.reason)
