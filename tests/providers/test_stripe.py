"""The Stripe gateway through the real `stripe` library against a local Stripe: the requests it
sends (Idempotency-Key, form fields, amounts in minor units) and how Stripe's answers and
failures map onto the provider contract."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bookings.providers.base import (
    IdempotencyConflict,
    OutcomeUnknown,
    ProviderRejected,
    RateLimited,
)
from bookings.providers.stripe_payments import (
    StripePaymentGateway,
    from_minor_units,
    to_minor_units,
)


@pytest.fixture
def gateway(stripe_server) -> StripePaymentGateway:
    return StripePaymentGateway()


def authorize(gateway, key="saga-1:preauthorize:action", token="pm_card_visa", amount="240.00",
              currency="EUR"):  # fmt: skip
    return gateway.authorize(
        idempotency_key=key, token=token, amount=Decimal(amount), currency=currency
    )


def test_a_hold_is_a_confirmed_manual_capture_payment_intent_sent_with_the_step_key(
    gateway, stripe_server
):
    held = authorize(gateway)
    assert held.status == "authorized" and held.reference.startswith("pi_")
    assert (held.amount, held.currency) == (Decimal("240.00"), "EUR")
    [sent] = stripe_server.posts()
    assert sent.path == "/v1/payment_intents"
    assert sent.headers["idempotency-key"] == "saga-1:preauthorize:action"
    assert sent.headers["authorization"] == "Bearer sk_test_local"
    assert sent.form == {
        "amount": "24000",
        "currency": "eur",
        "payment_method": "pm_card_visa",
        "payment_method_types[0]": "card",
        "capture_method": "manual",
        "confirm": "true",
        "metadata[idempotency_key]": "saga-1:preauthorize:action",
    }
    assert stripe_server.intents[held.reference]["status"] == "requires_capture"


def test_the_void_cancels_the_payment_intent_with_its_own_key(gateway, stripe_server):
    held = authorize(gateway)
    void = gateway.void(idempotency_key="saga-1:preauthorize:compensation",
                        authorization_ref=held.reference)  # fmt: skip
    assert void.status == "voided"
    cancel = stripe_server.posts()[-1]
    assert cancel.path == f"/v1/payment_intents/{held.reference}/cancel"
    assert cancel.headers["idempotency-key"] == "saga-1:preauthorize:compensation"
    assert stripe_server.holds() == []


def test_the_lookup_searches_by_the_key_in_the_metadata(gateway, stripe_server):
    held = authorize(gateway, key="it's:a:key")
    assert gateway.lookup(idempotency_key="it's:a:key") == held
    search = stripe_server.requests[-1]
    assert (search.method, search.path) == ("GET", "/v1/payment_intents/search")
    assert search.form["query"] == "metadata['idempotency_key']:'it\\'s:a:key'"


@pytest.mark.parametrize(
    "amount,currency,minor",
    [
        ("240.00", "EUR", 24000),
        ("0.50", "usd", 50),
        ("12000", "JPY", 12000),
        ("1.250", "KWD", 1250),
    ],
)
def test_amounts_travel_in_the_currency_minor_units(gateway, stripe_server, amount, currency,
                                                     minor):  # fmt: skip
    held = authorize(gateway, amount=amount, currency=currency)
    assert stripe_server.posts()[-1].form["amount"] == str(minor)
    assert held.amount == Decimal(amount) and held.currency == currency.upper()
    assert to_minor_units(Decimal(amount), currency) == minor
    assert from_minor_units(minor, currency) == Decimal(amount)


def test_an_amount_finer_than_the_currency_is_refused_before_any_request(gateway, stripe_server):
    with pytest.raises(ProviderRejected):
        authorize(gateway, amount="100.5", currency="JPY")
    assert stripe_server.requests == []


def test_a_card_error_is_a_decline_with_stripe_reason(gateway, stripe_server):
    declined = authorize(gateway, token="pm_card_chargeDeclinedInsufficientFunds")
    assert declined.status == "declined" and declined.reference.startswith("pi_")
    assert declined.decline_reason.startswith("insufficient_funds")
    # The intent is there, in its declined state, for the lookup too.
    assert gateway.lookup(idempotency_key="saga-1:preauthorize:action").status == "declined"


def test_a_token_that_is_no_payment_method_is_declined(gateway, stripe_server):
    assert authorize(gateway, token="tok_not_a_method").status == "declined"


def test_a_rate_limit_defers_by_retry_after(gateway, stripe_server):
    stripe_server.fail_next("rate_limited", retry_after=7)
    with pytest.raises(RateLimited) as caught:
        authorize(gateway)
    assert caught.value.delay == 7 and caught.value.code == "rate_limited"
    assert stripe_server.intents == {}
    assert authorize(gateway).status == "authorized"  # the next try goes through


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_an_unknown_outcome(gateway, stripe_server, status):
    stripe_server.fail_next("server_error", status=status)
    with pytest.raises(OutcomeUnknown) as caught:
        authorize(gateway)
    assert caught.value.code == "timeout"
    assert authorize(gateway).status == "authorized"
    assert len(stripe_server.holds()) == 1


def test_a_connection_reset_is_an_unknown_outcome_and_the_retry_finds_the_one_hold(
    gateway, stripe_server
):
    stripe_server.fail_next("lose_response")
    with pytest.raises(OutcomeUnknown):
        authorize(gateway)
    again = authorize(gateway)  # the same key: Stripe replays the first answer
    assert again.status == "authorized" and len(stripe_server.intents) == 1


def test_a_timeout_after_acting_is_an_unknown_outcome_and_the_lookup_finds_the_hold(
    gateway, stripe_server
):
    stripe_server.fail_next("timeout_after_acting")
    with pytest.raises(OutcomeUnknown):
        authorize(gateway)
    found = gateway.lookup(idempotency_key="saga-1:preauthorize:action")
    assert found is not None and found.status == "authorized"
    assert gateway.void(idempotency_key="v", authorization_ref=found.reference).status == "voided"
    assert stripe_server.holds() == []


def test_reusing_a_key_for_another_amount_is_an_idempotency_conflict(gateway, stripe_server):
    authorize(gateway)
    with pytest.raises(IdempotencyConflict):
        authorize(gateway, amount="250.00")


def test_a_wrong_api_key_is_permanent(settings, stripe_server):
    settings.STRIPE_API_KEY = "pk_live_wrong_kind_of_key"
    with pytest.raises(ProviderRejected):
        authorize(StripePaymentGateway())


def test_voiding_a_captured_payment_is_refused_not_pretended(gateway, stripe_server):
    held = authorize(gateway)
    stripe_server.intents[held.reference]["status"] = "succeeded"  # captured in the dashboard
    with pytest.raises(ProviderRejected, match="cannot be voided"):
        gateway.void(idempotency_key="v2", authorization_ref=held.reference)
