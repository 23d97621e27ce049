"""Operator resolution knows about providers (issue 15, defect 9; issue 16, item 8): resolving as
cancelled a booking whose void failed records what the operator says was done at the provider,
in the service, the command and the admin; check_consistency asks the providers through the
contract's lookups and honours that record."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from bookings import services
from bookings.consistency import consistency_report
from bookings.models import Booking
from bookings.providers import base as providers
from bookings.providers.models import ProviderResolution

from ..factories import ResourceFactory, UserFactory
from ..helpers import book, drive, reload

pytestmark = pytest.mark.django_db

DONE = "voided by hand in the gateway's dashboard, ref void-8812"


@pytest.fixture
def void_parked(db) -> Booking:
    """Sold out, and the payment void keeps failing: parked while compensating, hold live."""
    booking = book(ResourceFactory(code="sold-out", capacity=0), token="tok_void_fails")
    drive(booking.saga_id)
    booking = reload(booking)
    assert booking.state == "requires_attention" and booking.authorization_ref
    return booking


def resolve(booking: Booking, done: str = "") -> None:
    services.booking_resolve(
        booking=booking,
        outcome="cancelled",
        actor="olga",
        reason="guest called; hold released at the gateway",
        expected_state="requires_attention",
        done_at_provider=done,
    )


def test_resolving_as_cancelled_records_what_was_done_at_the_provider(void_parked):
    resolve(void_parked, DONE)
    booking = reload(void_parked)
    assert booking.state == "cancelled"
    record = ProviderResolution.objects.get(booking=booking)
    assert (record.provider, record.action, record.reference) == (
        "payments",
        "voided",
        void_parked.authorization_ref,
    )
    assert (record.note, record.recorded_by) == (DONE, "olga")


def test_check_consistency_honours_a_void_done_by_hand(void_parked, capsys):
    resolve(void_parked, DONE)
    # The sandbox gateway still holds the money (the void never went through it)...
    assert (
        providers.payments()
        .lookup(idempotency_key=f"{void_parked.saga_id}:preauthorize:action")
        .status
        == "authorized"
    )
    # ...but the operator answered for it: no orphan, exit status 0.
    report = consistency_report()
    assert report.orphan_authorizations == [] and report.ok, report.as_dict()
    call_command("check_consistency", "--json")
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_without_a_word_about_the_provider_the_live_hold_is_still_an_orphan(void_parked):
    resolve(void_parked)
    assert not ProviderResolution.objects.exists()
    assert consistency_report().orphan_authorizations == [void_parked.reference]
    with pytest.raises(CommandError):
        call_command("check_consistency")


def test_the_command_records_it_and_its_dry_run_says_what_is_pending(void_parked, capsys):
    ref = void_parked.reference
    call_command("resolve_booking", ref, "--outcome", "cancelled", "--dry-run")
    out = capsys.readouterr().out
    assert (
        f"payments {void_parked.authorization_ref} not voided" in out
        and "--done-at-provider" in out
    )
    call_command("resolve_booking", ref, "--outcome", "cancelled", "--reason", "guest called",
                 "--done-at-provider", DONE, "--actor", "cli:olga")  # fmt: skip
    assert "recorded at the providers" in capsys.readouterr().out
    record = ProviderResolution.objects.get(booking=void_parked)
    assert (record.note, record.recorded_by) == (DONE, "cli:olga")
    assert consistency_report().ok


def test_the_admin_form_asks_and_records_it(void_parked):
    from django.contrib.auth.models import Permission

    user = UserFactory(username="olga", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_booking", "resolve_booking"])
    )
    client = Client()
    client.force_login(user)
    url = reverse("admin:bookings_booking_operate", args=[void_parked.pk, "resolve_cancelled"])
    form = client.get(url).content.decode()
    assert 'name="done_at_provider"' in form and void_parked.authorization_ref in form
    client.post(url, {"reason": "guest called", "expected_state": "requires_attention",
                      "done_at_provider": DONE})  # fmt: skip
    assert reload(void_parked).state == "cancelled"
    assert ProviderResolution.objects.get(booking=void_parked).note == DONE


def test_resolving_as_completed_records_nothing_at_the_providers(void_parked):
    email_parked = book(ResourceFactory(code="garden", capacity=2), email="bounce@example.com")
    drive(email_parked.saga_id)
    services.booking_resolve(booking=reload(email_parked), outcome="completed", actor="olga",
                             reason="sent by hand", done_at_provider=DONE)  # fmt: skip
    assert not ProviderResolution.objects.exists()


def test_check_consistency_asks_the_configured_gateway_not_sandbox_tables(settings, stripe_server):
    """With Stripe as the gateway, a hold cancelled at Stripe behind the product's back shows
    up as a completed booking without its hold: the check asked Stripe."""
    settings.BOOKING_PROVIDERS = {
        **settings.BOOKING_PROVIDERS,
        "payments": "bookings.providers.stripe_payments.StripePaymentGateway",
    }
    providers.reset_cache()
    booking = book(ResourceFactory(code="garden", capacity=2), token="pm_card_visa")
    drive(booking.saga_id)
    booking = reload(booking)
    assert booking.state == "completed" and booking.authorization_ref.startswith("pi_")
    assert consistency_report().ok
    stripe_server.intents[booking.authorization_ref]["status"] = "canceled"
    assert consistency_report().disagreements == [
        f"{booking.reference}: completed without its hold and room"
    ]
