"""Fraud screening. The sandbox rejects every guest e-mail address at @fraud.test."""

import secrets
from decimal import Decimal

from . import outage
from .base import FraudDecision
from .ledger import insert_once
from .models import FraudScreeningRecord


class SandboxFraudScreening:
    def screen(
        self, *, idempotency_key: str, email: str, name: str, amount: Decimal, currency: str
    ) -> FraudDecision:
        """Approve, unless the address ends in @fraud.test. Same key, same decision."""
        outage.raise_if_down("fraud")
        rejected = email.lower().endswith("@fraud.test")
        record = insert_once(
            FraudScreeningRecord,
            idempotency_key=idempotency_key,
            reference=f"fr_{secrets.token_hex(8)}",
            email=email,
            approved=not rejected,
            reason="address on the sandbox deny list" if rejected else "",
        ) or FraudScreeningRecord.objects.get(idempotency_key=idempotency_key)
        return FraudDecision(record.approved, record.reference, record.reason)
