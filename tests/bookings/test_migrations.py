"""A booking that already told its client of events before bookings 0008 (the per-booking event
counter) goes on numbering after its last event, not from 1 again."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from bookings.models import Booking

BEFORE = [("bookings", "0007_resource_timezone"), ("webhooks", "0001_initial")]


@pytest.mark.django_db(transaction=True)
def test_a_booking_with_events_continues_its_numbering_after_the_migration():
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    try:
        old = MigrationExecutor(connection).loader.project_state(BEFORE).apps
        resource = old.get_model("bookings", "Resource").objects.create(
            code="before-0008", name="Old", capacity=1, nightly_price="90.00"
        )
        told, untold = (
            old.get_model("bookings", "Booking").objects.create(
                id=uuid.uuid4(),
                reference=f"BK-OLD{n}",
                resource=resource,
                check_in=date.today() + timedelta(days=10),
                check_out=date.today() + timedelta(days=12),
                guest_name="Ada",
                guest_email="ada@example.com",
                payment_token="tok_visa",
                amount="180.00",
                currency="EUR",
            )
            for n in (1, 2)
        )
        Event = old.get_model("webhooks", "Event")
        for sequence, type in ((1, "booking.created"), (2, "booking.completed")):
            Event.objects.create(
                type=type,
                subject_id=str(told.pk),
                sequence=sequence,
                data={},
                created_at=timezone.now(),
            )
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(leaves)
    assert Booking.objects.get(pk=told.pk).events == 2
    assert Booking.objects.get(pk=untold.pk).events == 0
