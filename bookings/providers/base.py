"""Typed interfaces to the outside systems. Implementations are chosen in
settings.BOOKING_PROVIDERS; each call carries an idempotency key (same key, same result), and
failures surface as sagas.errors.TransientError (worth a retry) or PermanentError."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class FraudDecision:
    approved: bool
    reference: str
    reason: str = ""


@dataclass(frozen=True)
class AuthorizationResult:
    reference: str
    status: str  # "authorized" | "declined" | "voided"
    amount: Decimal
    currency: str
    decline_reason: str = ""


@dataclass(frozen=True)
class VoidResult:
    reference: str
    status: str  # "voided" | "not_found"


@dataclass(frozen=True)
class Reservation:
    reference: str
    status: str  # "reserved" | "unavailable" | "released"


@dataclass(frozen=True)
class EmailReceipt:
    message_id: str


class FraudScreening(Protocol):
    def screen(
        self, *, idempotency_key: str, email: str, name: str, amount: Decimal, currency: str
    ) -> FraudDecision:
        """Decide whether the booking may go on."""
        ...


class PaymentGateway(Protocol):
    def authorize(
        self, *, idempotency_key: str, token: str, amount: Decimal, currency: str
    ) -> AuthorizationResult:
        """Hold `amount` on the card behind `token`; a decline is a result, not an error."""
        ...

    def void(self, *, idempotency_key: str, authorization_ref: str) -> VoidResult:
        """Release a hold. Voiding twice is harmless."""
        ...

    def lookup(self, *, idempotency_key: str) -> AuthorizationResult | None:
        """The authorization made with this key, if any."""
        ...


class Inventory(Protocol):
    def reserve(
        self, *, idempotency_key: str, resource_code: str, check_in: date, check_out: date
    ) -> Reservation:
        """Hold the room for the nights [check_in, check_out); "unavailable" when full."""
        ...

    def release(self, *, idempotency_key: str, reservation_ref: str) -> Reservation:
        """Give the nights back. Releasing twice is harmless."""
        ...

    def lookup(self, *, idempotency_key: str) -> Reservation | None:
        """The reservation made with this key, if any."""
        ...


class EmailSender(Protocol):
    def send(
        self, *, idempotency_key: str, to: str, template: str, context: dict[str, Any]
    ) -> EmailReceipt:
        """Send the templated message once per key."""
        ...


@cache
def _provider(kind: str) -> Any:
    return import_string(settings.BOOKING_PROVIDERS[kind])()


def fraud() -> FraudScreening:
    return _provider("fraud")


def payments() -> PaymentGateway:
    return _provider("payments")


def inventory() -> Inventory:
    return _provider("inventory")


def email() -> EmailSender:
    return _provider("email")


def reset_cache() -> None:
    """Forget the provider instances (after settings change, in tests)."""
    _provider.cache_clear()
