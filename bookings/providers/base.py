"""The provider contract: typed interfaces to the outside systems, their error vocabulary, and
the rules every implementation keeps. Implementations are chosen in settings.BOOKING_PROVIDERS
(docs/providers.md lists the shipped ones; tests/providers/ holds the contract suite they all
pass).

The rules:

- **Same key, same answer.** Every call carries an idempotency key derived from the saga and the
  step. A second call with a key already used returns the first call's answer and acts no more.
- **Lookup finds a lost effect.** `lookup(idempotency_key=...)` returns the effect an earlier
  call made with that key even when the caller never got its response (it timed out, the
  connection was reset, the worker died), and None when nothing was done.
- **Undo is harmless twice.** Voiding a voided authorization or releasing a released reservation
  answers as the first undo did and changes nothing; undoing something unknown is a no-op.
- **Errors say what retrying means.** A provider call either answers (a decline or a full room
  is an answer, not an error) or raises one of:
    - `ProviderUnavailable` (transient): the provider did not act; retry later;
    - `RateLimited` (deferral): the provider refused the call for now (HTTP 429) and said when
      to come back; not an attempt, so it spends no retry;
    - `OutcomeUnknown` (transient, code "timeout"): the provider may have acted (a timeout or a
      reset after the request was sent, a 5xx); a retry with the same key is safe, and `lookup`
      tells what happened;
    - `ProviderRejected` (permanent): retrying the same request cannot succeed (bad credentials,
      an invalid request);
    - `IdempotencyConflict` (permanent): the key was already used for a different request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from sagas.errors import Deferral, PermanentError, TransientError

# --- errors -------------------------------------------------------------------------------


class ProviderUnavailable(TransientError):
    """The provider did not act (connection refused, maintenance, an outage): retry later."""

    def __init__(
        self, message: str, *, code: str = "provider_unavailable", data: dict | None = None
    ):
        super().__init__(message, code=code, data=data)


class OutcomeUnknown(TransientError):
    """The request may have reached the provider and acted: retry with the same key, or look
    the effect up by it. The saga engine treats code "timeout" as an outcome it cannot rule
    out (the step's compensation runs if the saga turns back)."""

    def __init__(self, message: str, *, code: str = "timeout", data: dict | None = None):
        super().__init__(message, code=code, data=data)


class RateLimited(Deferral):
    """The provider refused the call for now (HTTP 429) and said when to come back: the call was
    not attempted, so it runs again after `delay` seconds without spending a retry."""

    def __init__(self, message: str, *, delay: float):
        super().__init__(message, delay=delay, code="rate_limited")


class ProviderRejected(PermanentError):
    """Retrying the same request cannot succeed: bad credentials, an invalid request."""

    def __init__(self, message: str, *, code: str = "provider_rejected", data: dict | None = None):
        super().__init__(message, code=code, data=data)


class IdempotencyConflict(PermanentError):
    """The idempotency key was already used with different parameters: a bug on our side (a key
    must name one request), never retried."""

    def __init__(self, message: str, *, data: dict | None = None):
        super().__init__(message, code="idempotency_conflict", data=data)


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FraudDecision:
    approved: bool
    reference: str
    reason: str = ""


@dataclass(frozen=True)
class AuthorizationResult:
    reference: str
    status: str  # "authorized" | "declined" | "voided" | "pending" (no final answer yet)
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


# --- interfaces ---------------------------------------------------------------------------


class FraudScreening(Protocol):
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
        """Decide whether the booking may go on; a rejection is a decision, not an error.
        `payment_method` is an opaque token (never card data), used only to count bookings per
        payment method."""
        ...

    def lookup(self, *, idempotency_key: str) -> FraudDecision | None:
        """The decision made with this key, if any."""
        ...


class PaymentGateway(Protocol):
    def authorize(
        self, *, idempotency_key: str, token: str, amount: Decimal, currency: str
    ) -> AuthorizationResult:
        """Hold `amount` on the card behind `token`; a decline is a result, not an error."""
        ...

    def void(self, *, idempotency_key: str, authorization_ref: str) -> VoidResult:
        """Release a hold. Voiding twice is harmless; an unknown reference is "not_found"."""
        ...

    def lookup(self, *, idempotency_key: str) -> AuthorizationResult | None:
        """The authorization made with this key, if any, in its current status (a voided one
        says "voided")."""
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
        """The reservation made with this key, if any, in its current status."""
        ...


class EmailSender(Protocol):
    def send(
        self, *, idempotency_key: str, to: str, template: str, context: dict[str, Any]
    ) -> EmailReceipt:
        """Send the templated message once per key."""
        ...

    def lookup(self, *, idempotency_key: str) -> EmailReceipt | None:
        """The message handed over with this key, if one was."""
        ...


KINDS = ("fraud", "payments", "inventory", "email")
# The status a provider's lookup shows for an effect once it was undone (the other kinds undo
# nothing: a decision stands, a sent message stays sent).
UNDONE_STATUS = {"payments": "voided", "inventory": "released"}


def is_sandbox(dotted_path: str) -> bool:
    """Whether a BOOKING_PROVIDERS entry names a sandbox (demo and test) implementation."""
    return dotted_path.startswith("sandbox.")


def sandbox_kinds() -> list[str]:
    """The provider kinds this deployment runs on a sandbox."""
    return [kind for kind in KINDS if is_sandbox(settings.BOOKING_PROVIDERS[kind])]


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
