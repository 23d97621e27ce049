"""The consistency report finds each broken promise, and says nothing of a healthy system."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from bookings.consistency import consistency_report
from bookings.providers.models import InventoryReservation
from sandbox.models import PaymentAuthorization

from ..factories import ResourceFactory
from ..helpers import book, drive

pytestmark = pytest.mark.django_db


def test_a_healthy_system_reports_no_problem(resource, capsys):
    for token in ("tok_visa", "tok_declined"):
        drive(book(resource, token=token).saga_id)
    report = consistency_report()
    assert report.ok and report.bookings == 2
    assert report.states == {"completed": 1, "cancelled": 1}
    call_command("check_consistency", "--json")
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_each_broken_promise_is_found(resource):
    cancelled = book(ResourceFactory(code="sold-out", capacity=0))
    drive(cancelled.saga_id)
    stuck = book(resource)
    # An authorization left live on a cancelled booking, and a night sold twice.
    PaymentAuthorization.objects.filter(idempotency_key__startswith=str(cancelled.saga_id)).update(
        status="authorized"
    )
    other = ResourceFactory(code="tiny", capacity=1)
    for key in ("x1", "x2"):
        InventoryReservation.objects.create(
            idempotency_key=key,
            reference=key,
            resource=other,
            status="reserved",
            check_in=stuck.check_in,
            check_out=stuck.check_out,
        )
    report = consistency_report()
    assert report.orphan_authorizations == [cancelled.reference]
    assert report.stuck == [stuck.reference]
    assert len(report.overbooked_nights) == 2
    with pytest.raises(CommandError):
        call_command("check_consistency")
