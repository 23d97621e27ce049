"""The provider contract (bookings/providers/base.py), one class per kind of provider, run
against every implementation the product ships (tests/providers/implementations.py): the same
key gives the same answer, a lookup by key finds an effect whose response was lost, undoing
twice is a no-op, and failures come as the contract's errors."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.conf import settings

from bookings.providers.base import (
    KINDS,
    IdempotencyConflict,
    OutcomeUnknown,
    ProviderUnavailable,
)
from bookings.providers.models import FraudDenyEntry
from sagas.errors import StepError, TransientError
from sandbox import outage

from ..factories import ResourceFactory, stay
from .implementations import IMPLEMENTATIONS, Harness, Implementation, implementations

pytestmark = pytest.mark.django_db


@pytest.fixture
def harness(implementation: Implementation, request: pytest.FixtureRequest) -> Iterator[Harness]:
    yield implementation.build(request)
    for kind in KINDS:  # a sandbox outage lives in the shared cache and outlives the test
        outage.bring_up(kind)


def test_every_shipped_implementation_is_in_the_contract_suite():
    tested = {i.path for kind in IMPLEMENTATIONS.values() for i in kind}
    shipped = {*settings.REAL_PROVIDERS.values(), *settings.SANDBOX_PROVIDERS.values()}
    assert shipped <= tested, f"add to tests/providers/implementations.py: {shipped - tested}"
    assert set(settings.BOOKING_PROVIDERS.values()) <= tested


def _down(harness: Harness) -> None:
    if harness.take_down is None:
        pytest.skip("this implementation has no outage to simulate")
    harness.take_down()


# --- fraud -----------------------------------------------------------------------------------


@implementations("fraud")
class TestFraudScreening:
    def screen(self, harness: Harness, key: str, email: str = "ada@example.com"):
        return harness.provider.screen(
            idempotency_key=key,
            email=email,
            name="Ada Lovelace",
            amount=Decimal("200.00"),
            currency="EUR",
            payment_method="tok_visa",
        )

    def test_same_key_gives_the_same_decision(self, harness):
        first = self.screen(harness, "k-fraud-1")
        assert first.approved and first.reference
        assert self.screen(harness, "k-fraud-1") == first

    def test_a_deny_listed_domain_is_rejected_with_its_reason(self, harness):
        FraudDenyEntry.objects.create(kind="domain", value="@Stolen.Example")
        decision = self.screen(harness, "k-fraud-2", email="mallory@stolen.example")
        assert not decision.approved and "stolen.example" in decision.reason
        # The decision stands for its key even after the entry is removed.
        FraudDenyEntry.objects.all().delete()
        assert self.screen(harness, "k-fraud-2", email="mallory@stolen.example") == decision

    def test_lookup_finds_a_decision_whose_answer_was_lost(self, harness):
        self.screen(harness, "k-fraud-3")  # the caller never saw the answer
        found = harness.provider.lookup(idempotency_key="k-fraud-3")
        assert found == self.screen(harness, "k-fraud-3")
        assert harness.provider.lookup(idempotency_key="never-used") is None

    def test_an_unavailable_provider_raises_a_transient_error(self, harness):
        _down(harness)
        with pytest.raises(TransientError):
            self.screen(harness, "k-fraud-4")


# --- payments --------------------------------------------------------------------------------


@implementations("payments")
class TestPaymentGateway:
    def authorize(self, harness: Harness, key: str, *, token: str = "", amount: str = "240.00"):
        return harness.provider.authorize(
            idempotency_key=key,
            token=token or harness.approved_token,
            amount=Decimal(amount),
            currency="EUR",
        )

    def test_same_key_gives_the_same_authorization(self, harness):
        first = self.authorize(harness, "k-pay-1")
        assert first.status == "authorized" and first.reference
        assert (first.amount, first.currency) == (Decimal("240.00"), "EUR")
        assert self.authorize(harness, "k-pay-1") == first

    def test_a_decline_is_an_answer_and_the_same_one_again(self, harness):
        declined = self.authorize(harness, "k-pay-2", token=harness.declined_token)
        assert declined.status == "declined" and declined.decline_reason
        assert self.authorize(harness, "k-pay-2", token=harness.declined_token) == declined

    def test_lookup_finds_an_authorization_whose_response_was_lost(self, harness):
        if harness.lose_next_response is not None:
            harness.lose_next_response()
            with pytest.raises(OutcomeUnknown):
                self.authorize(harness, "k-pay-3")
        else:
            self.authorize(harness, "k-pay-3")  # in process: the caller drops the answer
        found = harness.provider.lookup(idempotency_key="k-pay-3")
        assert found is not None and found.status == "authorized"
        assert self.authorize(harness, "k-pay-3").reference == found.reference
        assert harness.provider.lookup(idempotency_key="k-pay-never") is None

    def test_voiding_twice_is_a_no_op(self, harness):
        held = self.authorize(harness, "k-pay-4")
        void = harness.provider.void(idempotency_key="k-void-4", authorization_ref=held.reference)
        assert (void.reference, void.status) == (held.reference, "voided")
        again = harness.provider.void(idempotency_key="k-void-4", authorization_ref=held.reference)
        assert again == void
        other = harness.provider.void(idempotency_key="k-void-4b", authorization_ref=held.reference)
        assert other.status == "voided"
        assert harness.provider.lookup(idempotency_key="k-pay-4").status == "voided"

    def test_voiding_an_unknown_authorization_finds_nothing(self, harness):
        void = harness.provider.void(idempotency_key="k-void-5", authorization_ref="auth_nope")
        assert void.status == "not_found"

    def test_the_same_key_for_another_request_is_an_idempotency_conflict(self, harness):
        self.authorize(harness, "k-pay-6", amount="240.00")
        with pytest.raises(IdempotencyConflict):
            self.authorize(harness, "k-pay-6", amount="999.00")

    def test_an_unavailable_gateway_raises_a_transient_error(self, harness):
        _down(harness)
        with pytest.raises((ProviderUnavailable, OutcomeUnknown)):
            self.authorize(harness, "k-pay-7")


# --- inventory -------------------------------------------------------------------------------


@implementations("inventory")
class TestInventory:
    def reserve(self, harness: Harness, key: str, code: str = "contract-room", days: int = 20):
        check_in, check_out = stay(days, 2)
        return harness.provider.reserve(
            idempotency_key=key, resource_code=code, check_in=check_in, check_out=check_out
        )

    def test_same_key_gives_the_same_reservation(self, harness):
        ResourceFactory(code="contract-room", capacity=1)
        first = self.reserve(harness, "k-inv-1")
        assert first.status == "reserved" and first.reference
        assert self.reserve(harness, "k-inv-1") == first

    def test_a_full_night_is_an_answer_not_an_error(self, harness):
        ResourceFactory(code="contract-room", capacity=1)
        assert self.reserve(harness, "k-inv-2a").status == "reserved"
        full = self.reserve(harness, "k-inv-2b")
        assert full.status == "unavailable"
        assert self.reserve(harness, "k-inv-2b") == full

    def test_lookup_finds_a_reservation_whose_answer_was_lost(self, harness):
        ResourceFactory(code="contract-room", capacity=1)
        self.reserve(harness, "k-inv-3")
        found = harness.provider.lookup(idempotency_key="k-inv-3")
        assert found is not None and found.status == "reserved"
        assert self.reserve(harness, "k-inv-3") == found
        assert harness.provider.lookup(idempotency_key="k-inv-never") is None

    def test_releasing_twice_is_a_no_op_and_frees_the_nights(self, harness):
        ResourceFactory(code="contract-room", capacity=1)
        held = self.reserve(harness, "k-inv-4")
        released = harness.provider.release(
            idempotency_key="k-rel-4", reservation_ref=held.reference
        )
        assert released.status == "released"
        assert harness.provider.release(
            idempotency_key="k-rel-4", reservation_ref=held.reference
        ) == (released)
        assert harness.provider.lookup(idempotency_key="k-inv-4").status == "released"
        assert self.reserve(harness, "k-inv-4b").status == "reserved"  # the night is free again

    def test_releasing_an_unknown_reservation_changes_nothing(self, harness):
        result = harness.provider.release(idempotency_key="k-rel-5", reservation_ref="res_nope")
        assert result.status == "released"

    def test_an_unavailable_inventory_raises_a_transient_error(self, harness):
        ResourceFactory(code="contract-room", capacity=1)
        _down(harness)
        with pytest.raises(TransientError):
            self.reserve(harness, "k-inv-6")


# --- e-mail ----------------------------------------------------------------------------------

CONTEXT = {
    "reference": "BK-CONTRACT",
    "guest_name": "Ada Lovelace",
    "resource": "garden-room",
    "check_in": "2030-01-01",
    "check_out": "2030-01-03",
    "nights": 2,
    "amount": "200.00",
    "currency": "EUR",
}


@implementations("email")
class TestEmailSender:
    def send(self, harness: Harness, key: str, to: str = "ada@example.com"):
        return harness.provider.send(
            idempotency_key=key, to=to, template="booking_confirmed", context=CONTEXT
        )

    def test_same_key_sends_one_message_and_gives_the_same_receipt(self, harness):
        first = self.send(harness, "k-mail-1")
        assert first.message_id
        assert self.send(harness, "k-mail-1") == first
        assert [to for to, _ in harness.delivered()] == ["ada@example.com"]

    def test_lookup_finds_a_message_whose_receipt_was_lost(self, harness):
        sent = self.send(harness, "k-mail-2")
        assert harness.provider.lookup(idempotency_key="k-mail-2") == sent
        assert harness.provider.lookup(idempotency_key="k-mail-never") is None

    def test_an_unavailable_mail_server_raises_a_transient_error_and_sends_later(self, harness):
        _down(harness)
        with pytest.raises(TransientError):
            self.send(harness, "k-mail-3")
        assert harness.provider.lookup(idempotency_key="k-mail-3") is None
        assert harness.delivered() == []


def test_contract_errors_are_step_errors_the_engine_understands():
    """Transient ones retry, the unknown outcome is the engine's "timeout", the rest stop."""
    assert issubclass(ProviderUnavailable, TransientError)
    assert OutcomeUnknown("lost").code == "timeout"
    assert not issubclass(IdempotencyConflict, TransientError)
    assert issubclass(IdempotencyConflict, StepError)
