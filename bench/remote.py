"""Providers whose work happens on another machine, for the bench's "peers' workload" scenario.

The peers (../shared/peers) run sagas of four steps that each return a small value: no side
effect on this machine beyond the durable record of the step. Our sandbox providers instead keep
their ledgers (fraud screenings, authorizations, reservations with a locked availability count,
rendered e-mails) in our own database, on the same two cores: that is the work of the outside
systems, which a real deployment reaches over the network. These stand-ins answer at once, keep
the providers' contract where it matters to the engine (same key, same answer: the reference is
derived from the idempotency key) and keep nothing. The engine around them is unchanged: the
guard (breaker, rate limit), the durable record of every attempt, the history, the chaining.

Selected through the settings' provider variables, never by default:
    BOOKING_FRAUD_PROVIDER=bench.remote.Fraud BOOKING_PAYMENT_PROVIDER=bench.remote.Payments ...
"""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal
from typing import Any

from bookings.providers.base import (
    AuthorizationResult,
    EmailReceipt,
    FraudDecision,
    Reservation,
    VoidResult,
)

PROVIDERS = {
    "BOOKING_FRAUD_PROVIDER": "bench.remote.Fraud",
    "BOOKING_PAYMENT_PROVIDER": "bench.remote.Payments",
    "BOOKING_INVENTORY_PROVIDER": "bench.remote.Inventory",
    "BOOKING_EMAIL_PROVIDER": "bench.remote.Email",
}


def _ref(prefix: str, idempotency_key: str) -> str:
    return f"{prefix}_{hashlib.blake2s(idempotency_key.encode(), digest_size=8).hexdigest()}"


class Fraud:
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
        return FraudDecision(True, _ref("fr", idempotency_key))

    def lookup(self, *, idempotency_key: str) -> FraudDecision | None:
        return None


class Payments:
    def authorize(
        self, *, idempotency_key: str, token: str, amount: Decimal, currency: str
    ) -> AuthorizationResult:
        return AuthorizationResult(_ref("auth", idempotency_key), "authorized", amount, currency)

    def void(self, *, idempotency_key: str, authorization_ref: str) -> VoidResult:
        return VoidResult(authorization_ref, "voided")

    def lookup(self, *, idempotency_key: str) -> AuthorizationResult | None:
        return None  # nothing kept here: the engine asks again with the same key


class Inventory:
    def reserve(
        self, *, idempotency_key: str, resource_code: str, check_in: date, check_out: date
    ) -> Reservation:
        return Reservation(_ref("res", idempotency_key), "reserved")

    def release(self, *, idempotency_key: str, reservation_ref: str) -> Reservation:
        return Reservation(reservation_ref, "released")

    def lookup(self, *, idempotency_key: str) -> Reservation | None:
        return None


class Email:
    def send(
        self, *, idempotency_key: str, to: str, template: str, context: dict[str, Any]
    ) -> EmailReceipt:
        return EmailReceipt(f"<{_ref('msg', idempotency_key)}@bookings>")

    def lookup(self, *, idempotency_key: str) -> EmailReceipt | None:
        return None
