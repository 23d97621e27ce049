"""Payments through Stripe (the official `stripe` library): a pre-authorization is a
PaymentIntent with capture_method=manual, created and confirmed in one request with the booking's
payment method and the step's idempotency key; the void cancels it; the lookup searches
PaymentIntents by the key, which every one carries in its metadata.

The flow needs no webhook: the answer to the confirming request is final for cards that need no
customer action (the booking's token is a saved payment method), and a lost answer is found
again by the lookup. Stripe keeps an idempotency key's response for 24 hours, longer than any
retry schedule of the saga.

Errors map onto the contract (base.py): a card error is a decline (an answer), a rate limit is
deferred by its Retry-After, a connection error, a timeout or a 5xx is an unknown outcome (the
retry with the same key, or the lookup, tells), an idempotency error is a conflict, and
authentication, permission and invalid requests are permanent.

Configured by settings.STRIPE_API_KEY (and STRIPE_API_BASE to talk to another server, as the
tests do, and STRIPE_TIMEOUT)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import stripe
from django.conf import settings

from .base import (
    AuthorizationResult,
    IdempotencyConflict,
    OutcomeUnknown,
    ProviderRejected,
    RateLimited,
    VoidResult,
)

# Currencies whose amounts Stripe takes in whole units, or in thousandths (ISO 4217 exponents as
# Stripe documents them under "Zero-decimal currencies" and "Three-decimal currencies").
ZERO_DECIMAL = frozenset(["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
                          "ugx", "vnd", "vuv", "xaf", "xof", "xpf"])  # fmt: skip
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])

# PaymentIntent statuses, as the contract names them.
STATUS = {
    "requires_capture": "authorized",
    "canceled": "voided",
    "requires_payment_method": "declined",
    "requires_action": "declined",  # 3-D Secure: the guest is not here to authenticate
    "requires_confirmation": "pending",
    "processing": "pending",
    "succeeded": "authorized",  # captured: more than a hold, and still the booking's payment
}
CANCELABLE = {"requires_payment_method", "requires_capture", "requires_confirmation",
              "requires_action", "processing"}  # fmt: skip
RETRY_AFTER_BOUNDS = (1.0, 300.0)


def _exponent(currency: str) -> int:
    code = currency.lower()
    return 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2


def to_minor_units(amount: Decimal, currency: str) -> int:
    """`amount` in the currency's smallest unit, as Stripe expects (EUR 240.00 -> 24000)."""
    minor = amount.scaleb(_exponent(currency))
    if minor != minor.to_integral_value():
        raise ProviderRejected(f"{amount} {currency} has more decimals than the currency allows")
    return int(minor)


def from_minor_units(amount: int, currency: str) -> Decimal:
    exponent = _exponent(currency)
    return Decimal(amount).scaleb(-exponent).quantize(Decimal(1).scaleb(-max(exponent, 2)))


class StripePaymentGateway:
    """The payment gateway of production: Stripe PaymentIntents with manual capture."""

    def __init__(self, client: stripe.StripeClient | None = None) -> None:
        if client is None:
            client = stripe.StripeClient(
                settings.STRIPE_API_KEY,
                base_addresses={"api": settings.STRIPE_API_BASE or stripe.DEFAULT_API_BASE},
                # The saga retries, with backoff and the same key; the library must not retry
                # behind its back (a hidden retry would hide the outcome the saga records).
                max_network_retries=0,
                http_client=stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT),
            )
        self.client = client

    def authorize(
        self, *, idempotency_key: str, token: str, amount: Decimal, currency: str
    ) -> AuthorizationResult:
        """Create and confirm a manual-capture PaymentIntent for `amount` with the payment
        method `token`. A declined card is a "declined" result; the same key replays Stripe's
        first answer."""
        params: dict[str, Any] = {
            "amount": to_minor_units(amount, currency),
            "currency": currency.lower(),
            "payment_method": token,
            "payment_method_types": ["card"],
            "capture_method": "manual",
            "confirm": True,
            "metadata": {"idempotency_key": idempotency_key},
        }
        try:
            intent = self.client.v1.payment_intents.create(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            return self._declined(exc, amount, currency)
        except stripe.InvalidRequestError as exc:
            if exc.param == "payment_method":  # no such payment method: the token is no card
                return AuthorizationResult("", "declined", amount, currency, exc.user_message
                                           or "invalid payment method")  # fmt: skip
            raise _contract_error(exc, "authorization") from exc
        except stripe.StripeError as exc:
            raise _contract_error(exc, "authorization") from exc
        if intent.status in ("processing", "requires_confirmation"):
            intent = self._retrieve(intent.id)
            if STATUS.get(intent.status) == "pending":
                raise OutcomeUnknown(f"payment {intent.id} still {intent.status}")
        return _result(intent)

    def void(self, *, idempotency_key: str, authorization_ref: str) -> VoidResult:
        """Cancel the PaymentIntent. One already canceled answers "voided" again; an unknown one
        "not_found"."""
        if not authorization_ref:
            return VoidResult(authorization_ref, "not_found")
        try:
            intent = self.client.v1.payment_intents.cancel(
                authorization_ref, {}, {"idempotency_key": idempotency_key}
            )
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return VoidResult(authorization_ref, "not_found")
            if exc.code != "payment_intent_unexpected_state":
                raise _contract_error(exc, "void") from exc
            # Canceled already (by an earlier void whose answer was lost, or by hand), or
            # captured: ask what it is now.
            intent = self._retrieve(authorization_ref)
            if intent.status != "canceled":
                raise ProviderRejected(
                    f"payment {authorization_ref} is {intent.status}: it cannot be voided",
                    code="not_voidable",
                ) from exc
        except stripe.StripeError as exc:
            raise _contract_error(exc, "void") from exc
        return VoidResult(intent.id, "voided")

    def lookup(self, *, idempotency_key: str) -> AuthorizationResult | None:
        """The PaymentIntent created with this key, found by its metadata (Stripe's search),
        in its current status; None when Stripe has none.

        Stripe's search index trails writes by seconds (up to an hour during Stripe incidents),
        so a lookup right after a lost response may not see the intent yet: the saga only looks
        up when it turns back, after its retries, and Stripe cancels an uncaptured intent by
        itself after seven days."""
        quoted = idempotency_key.replace("\\", "\\\\").replace("'", "\\'")
        try:
            found = self.client.v1.payment_intents.search(
                {"query": f"metadata['idempotency_key']:'{quoted}'", "limit": 1}
            )
        except stripe.StripeError as exc:
            raise _contract_error(exc, "lookup") from exc
        return _result(found.data[0]) if found.data else None

    def _retrieve(self, reference: str) -> stripe.PaymentIntent:
        try:
            return self.client.v1.payment_intents.retrieve(reference)
        except stripe.StripeError as exc:
            raise _contract_error(exc, "lookup") from exc

    def _declined(
        self, exc: stripe.CardError, amount: Decimal, currency: str
    ) -> AuthorizationResult:
        error = exc.error
        intent = getattr(error, "payment_intent", None) if error else None
        reason = (getattr(error, "decline_code", None) or exc.code or "card_declined") + (
            f": {exc.user_message}" if exc.user_message else ""
        )
        return AuthorizationResult(
            intent.id if intent else "", "declined", amount, currency, reason[:200]
        )


def _result(intent: stripe.PaymentIntent) -> AuthorizationResult:
    status = STATUS.get(intent.status, "pending")
    error = intent.last_payment_error
    reason = (error.decline_code or error.code or "declined") if error else ""
    if intent.status == "requires_action":
        reason = "the card asks for authentication (3-D Secure)"
    return AuthorizationResult(
        intent.id,
        status,
        from_minor_units(intent.amount, intent.currency),
        intent.currency.upper(),
        reason if status == "declined" else "",
    )


def _retry_after(exc: stripe.StripeError) -> float:
    try:
        seconds = float((exc.headers or {}).get("Retry-After", ""))
    except (TypeError, ValueError):
        seconds = RETRY_AFTER_BOUNDS[0]
    low, high = RETRY_AFTER_BOUNDS
    return min(high, max(low, seconds))


def _contract_error(exc: stripe.StripeError, what: str) -> Exception:
    """The contract's error for a Stripe error."""
    message = f"stripe {what}: {type(exc).__name__}: {exc.user_message or exc}"[:500]
    data = {"stripe_request_id": exc.request_id} if exc.request_id else {}
    if isinstance(exc, stripe.IdempotencyError):
        return IdempotencyConflict(message, data=data)
    if isinstance(exc, stripe.RateLimitError):
        return RateLimited(message, delay=_retry_after(exc))
    if isinstance(exc, stripe.APIConnectionError):
        # The request may have been sent and acted on before the connection failed.
        return OutcomeUnknown(message, data=data)
    status = exc.http_status or 0
    if status >= 500 or isinstance(exc, stripe.APIError):
        return OutcomeUnknown(message, data=data)
    if status == 409:  # a concurrent request with the same key is still running
        return OutcomeUnknown(message, data=data)
    return ProviderRejected(message, data=data)
