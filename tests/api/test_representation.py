"""The API's representations (FieldsBuiltOnce.to_representation, which renders with fields built
once per class) are DRF's own (Serializer.to_representation, which binds fresh fields to every
instance), value for value and in the same order, for bookings in every kind of state."""

from __future__ import annotations

import json

import pytest
from rest_framework import serializers

from bookings.api.serializers import BookingSerializer, ResourceSerializer, StepSerializer
from bookings.api.views import represented_bookings
from bookings.models import Booking
from bookings.services import booking_cancel
from sagas import engine
from sagas.models import SagaStep

from ..helpers import book, drive


def drf(serializer: serializers.ModelSerializer, instance: object) -> dict:
    """What DRF itself renders for `serializer` (its generic path, over bound field copies)."""
    return serializers.ModelSerializer.to_representation(serializer, instance)


def same(ours: dict, theirs: dict) -> None:
    assert list(ours) == list(theirs)  # same fields, same order
    assert ours == theirs
    assert json.dumps(ours, default=str) == json.dumps(theirs, default=str)  # same types


@pytest.mark.django_db
def test_bookings_in_every_state_are_rendered_as_drf_renders_them(resource):
    book(resource)  # new: its first attempt scheduled
    completed = book(resource)
    drive(completed.saga_id)
    declined = book(resource, token="tok_declined")  # a refusal, compensated: cancelled
    drive(declined.saga_id)
    parked = book(resource, email="bounce@example.com")  # gave up after the pivot
    drive(parked.saga_id)
    flaky = book(resource, token="tok_flaky")  # a retried attempt with an error, scheduled
    engine.execute(SagaStep.objects.get(saga_id=flaky.saga_id, name="fraud_check").pk)
    engine.execute(SagaStep.objects.get(saga_id=flaky.saga_id, name="preauthorize").pk)
    cancelling = book(resource)  # a cancel asked for while its saga is in flight
    booking_cancel(booking=cancelling, actor="client")

    bookings = list(represented_bookings().order_by("created_at"))
    states = {b.state for b in bookings}
    assert states >= {"fraud_check", "completed", "cancelled", "requires_attention"}
    assert Booking.objects.exclude(pk__in=[b.pk for b in bookings]).count() == 0
    for booking in bookings:
        shown = BookingSerializer(booking)
        same(shown.to_representation(booking), drf(shown, booking))
        for step in booking.saga.steps.all():
            one = StepSerializer(step)
            same(one.to_representation(step), drf(one, step))
    resource_shown = ResourceSerializer(resource)
    same(resource_shown.to_representation(resource), drf(resource_shown, resource))
    # A list is the same rendering, item by item.
    many = BookingSerializer(bookings, many=True).data
    assert [dict(x) for x in many] == [drf(BookingSerializer(b), b) for b in bookings]


@pytest.mark.django_db
def test_a_new_booking_shown_from_the_objects_in_hand_is_drf_s_rendering(resource):
    booking = book(resource)
    attempts = list(SagaStep.objects.filter(saga_id=booking.saga_id))
    shown = BookingSerializer(booking, context={"attempts": attempts})
    same(shown.to_representation(booking), drf(shown, booking))
