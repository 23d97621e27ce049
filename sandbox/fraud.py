"""The sandbox fraud screening: rejects every guest e-mail address at @fraud.test (and the
admin's deny list), with no velocity limit or amount ceiling, so that demos and tests can book
as often as they like. Its decisions are stored like the product's own."""

from __future__ import annotations

from decimal import Decimal

from bookings.providers.base import FraudDecision
from bookings.providers.fraud import RulesFraudScreening

from . import outage


class SandboxFraudScreening(RulesFraudScreening):
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
        """Approve, unless the address ends in @fraud.test. Same key, same decision."""
        outage.raise_if_down("fraud")
        return super().screen(
            idempotency_key=idempotency_key,
            email=email,
            name=name,
            amount=amount,
            currency=currency,
            payment_method=payment_method,
        )

    def verdict(self, *, email: str, amount: Decimal, digest: str) -> tuple[str, str] | None:
        """The magic domain, then the admin's deny list; no ceiling, no velocity limit."""
        if email.endswith("@fraud.test"):
            return "deny_list", "address on the sandbox deny list"
        return self.deny_listed(email)
