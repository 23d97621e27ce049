"""The consistency report finds each broken promise, and says nothing of a healthy system."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from bookings.consistency import consistency_report
from bookings.models import Booking
from bookings.providers.models import InventoryReservation, PaymentAuthorization
from bookings.selectors import stuck_condition
from sagas import engine
from sagas.models import SagaStep

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
    stuck = book(resource)  # its message never reached a worker: its lease ran out
    SagaStep.objects.filter(saga_id=stuck.saga_id, status="scheduled").update(
        lease_expires_at=timezone.now() - timedelta(minutes=1)
    )
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


def test_a_booking_waiting_for_a_retry_is_in_flight_not_stuck_for_every_tool(resource):
    flaky = book(resource, token="tok_flaky")
    for _ in range(2):  # the fraud check, then a first authorization that fails (transient)
        engine.execute(SagaStep.objects.get(saga_id=flaky.saga_id, status="scheduled").pk)
    retry = SagaStep.objects.get(saga_id=flaky.saga_id, status="scheduled")
    assert retry.attempt == 2
    report = consistency_report()
    assert report.stuck == []
    assert report.in_flight == [flaky.reference]
    assert json.loads(call_command_output("find_stuck_sagas", "--json")) == []
    assert not Booking.objects.filter(stuck_condition()).exists()


def call_command_output(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()
