"""The providers the product runs itself: its rules-based fraud screening (deny list managed in
the admin, amount ceiling, velocity per e-mail and per payment method, every decision stored
with its reason) and its own inventory (no overbooking under concurrency)."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client

from bookings.providers.fraud import RulesFraudScreening
from bookings.providers.inventory import OwnInventory
from bookings.providers.models import FraudDenyEntry, FraudScreeningRecord, InventoryReservation

from ..conftest import postgres_only
from ..factories import ResourceFactory, UserFactory


def screen(key: str, *, email="ada@example.com", amount="200.00", method="pm_card_visa"):
    return RulesFraudScreening().screen(
        idempotency_key=key,
        email=email,
        name="Ada",
        amount=Decimal(amount),
        currency="EUR",
        payment_method=method,
    )


@pytest.mark.django_db
class TestRulesFraudScreening:
    def test_an_ordinary_booking_is_approved_and_the_decision_stored(self):
        decision = screen("k1")
        assert decision.approved
        record = FraudScreeningRecord.objects.get(idempotency_key="k1")
        assert (record.approved, record.rule, record.amount) == (True, "", Decimal("200.00"))
        # The payment method is counted by a digest, never stored.
        assert record.payment_method_digest and "pm_card_visa" not in record.payment_method_digest

    def test_a_deny_listed_address_or_domain_is_rejected_with_its_reason(self):
        FraudDenyEntry.objects.create(kind="email", value="Mallory@Example.com ")
        FraudDenyEntry.objects.create(kind="domain", value="@throwaway.test")
        assert not screen("k2", email="mallory@example.com").approved
        assert not screen("k3", email="anyone@THROWAWAY.test").approved
        assert screen("k4", email="alice@example.com").approved
        rejected = FraudScreeningRecord.objects.get(idempotency_key="k3")
        assert rejected.rule == "deny_list" and "throwaway.test" in rejected.reason

    def test_a_deny_list_entry_matches_only_as_its_own_kind(self):
        # An address entry spelled like a domain does not deny that domain's addresses.
        FraudDenyEntry.objects.create(kind="email", value="example.org")
        assert screen("k7", email="bob@example.org").approved
        FraudDenyEntry.objects.create(kind="domain", value="example.org")
        assert not screen("k8", email="bob@example.org").approved

    def test_an_amount_over_the_ceiling_is_rejected(self, settings):
        settings.BOOKING_FRAUD_RULES = {**settings.BOOKING_FRAUD_RULES, "max_amount": "500"}
        assert screen("k5", amount="500.00").approved
        over = screen("k6", amount="500.01")
        assert not over.approved and "ceiling" in over.reason
        assert FraudScreeningRecord.objects.get(idempotency_key="k6").rule == "amount_ceiling"

    def test_velocity_per_email_per_hour(self, settings):
        settings.BOOKING_FRAUD_RULES = {**settings.BOOKING_FRAUD_RULES, "per_email_per_hour": 2}
        assert [screen(f"e{i}", method=f"pm_{i}").approved for i in range(3)] == [
            True,
            True,
            False,
        ]
        assert FraudScreeningRecord.objects.get(idempotency_key="e2").rule == "email_velocity"
        # An hour later the address may book again.
        an_hour_ago = FraudScreeningRecord.objects.first().created_at - timedelta(
            hours=1, seconds=1
        )
        FraudScreeningRecord.objects.update(created_at=an_hour_ago)
        assert screen("e3", method="pm_3").approved

    def test_velocity_per_payment_method_per_hour(self, settings):
        settings.BOOKING_FRAUD_RULES = {
            **settings.BOOKING_FRAUD_RULES,
            "per_payment_method_per_hour": 2,
        }
        results = [screen(f"m{i}", email=f"guest{i}@example.com").approved for i in range(3)]
        assert results == [True, True, False]
        assert FraudScreeningRecord.objects.get(idempotency_key="m2").rule == "payment_velocity"
        assert screen("m3", email="guest3@example.com", method="pm_other").approved

    def test_a_rejection_does_not_count_towards_the_velocity_limit(self, settings):
        settings.BOOKING_FRAUD_RULES = {**settings.BOOKING_FRAUD_RULES, "per_email_per_hour": 1}
        settings.BOOKING_FRAUD_RULES["max_amount"] = "100"
        assert not screen("r1", amount="999").approved  # the ceiling
        assert screen("r2", amount="50").approved  # the address has booked nothing yet


@pytest.mark.django_db
def test_the_deny_list_is_managed_in_the_admin():
    admin_user = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin_user)
    response = client.post(
        "/admin/providers/frauddenyentry/add/",
        {"kind": "domain", "value": "Spam.Example", "note": "chargebacks"},
    )
    assert response.status_code == 302, response.content[:500]
    assert FraudDenyEntry.objects.get().value == "spam.example"
    assert not screen("a1", email="x@spam.example").approved
    decisions = client.get("/admin/providers/fraudscreeningrecord/")
    assert decisions.status_code == 200 and b"deny_list" in decisions.content
    # Decisions are records: they cannot be changed by hand.
    assert client.get("/admin/providers/fraudscreeningrecord/add/").status_code == 403


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_own_inventory_never_overbooks_under_concurrent_reservations():
    ResourceFactory(code="suite", capacity=3)
    start = date.today() + timedelta(days=50)
    barrier = threading.Barrier(10)
    results: list[str] = []

    def reserve(i: int) -> None:
        # Overlapping stays: every one of them covers the night start + 1.
        check_in = start + timedelta(days=i % 2)
        barrier.wait()
        try:
            results.append(
                OwnInventory()
                .reserve(
                    idempotency_key=f"own-{i}",
                    resource_code="suite",
                    check_in=check_in,
                    check_out=check_in + timedelta(days=2),
                )
                .status
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["reserved"] * 3 + ["unavailable"] * 7
    held = InventoryReservation.objects.filter(status="reserved")
    assert held.count() == 3
    busiest = start + timedelta(days=1)
    assert all(r.check_in <= busiest < r.check_out for r in held)


@pytest.mark.django_db
def test_own_inventory_counts_each_night_a_reservation_holds():
    """Capacity applies night by night: a stay is refused only when one of its own nights is
    full; a departure day is not a night held, and a released reservation holds none."""
    ResourceFactory(code="twin", capacity=2)
    day = [date.today() + timedelta(days=60 + n) for n in range(7)]

    def reserve(key: str, check_in: int, check_out: int) -> str:
        return (
            OwnInventory()
            .reserve(
                idempotency_key=key,
                resource_code="twin",
                check_in=day[check_in],
                check_out=day[check_out],
            )
            .status
        )

    assert reserve("a", 1, 3) == "reserved"  # nights 1, 2
    assert reserve("b", 2, 4) == "reserved"  # nights 2, 3
    assert reserve("c", 3, 5) == "reserved"  # night 3 holds b only
    assert reserve("d", 2, 3) == "unavailable"  # night 2 holds a and b
    assert reserve("e", 4, 6) == "reserved"  # night 4 holds c only
    assert reserve("f", 0, 1) == "reserved"  # leaves on the day a arrives
    assert reserve("g", 0, 6) == "unavailable"  # nights 2 and 3 are full
    assert reserve("d", 2, 3) == "unavailable"  # the same key: the same answer
    a = InventoryReservation.objects.get(idempotency_key="a")
    OwnInventory().release(idempotency_key="rel-a", reservation_ref=a.reference)
    assert reserve("h", 2, 3) == "reserved"  # night 2 holds b only now
