"""What the client API reads and writes. Input serializers check types and sizes only; the rules
of a booking (dates, nights, token shape, resource) are the service's, so the API, the admin and
the commands cannot disagree. The payment token is write-only: it never leaves the server."""

from __future__ import annotations

import copy
from functools import cache
from operator import attrgetter
from typing import Any, cast

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from bookings.models import Booking, Resource
from bookings.services import TOKEN_PATTERN
from sagas.models import SagaStep

# What a client may read about a failed attempt, by its error code. The stored message can carry
# provider details (a screening reason, an SMTP reply, an exception) that are ours to know.
# A refusal is final whatever the attempt's status:
REFUSALS = {
    "fraud_rejected": "The booking was rejected by fraud screening.",
    "payment_declined": "The payment was declined.",
    "unavailable": "No room is available on the requested nights.",
}
# An attempt that failed and will be tried again (status retrying), by cause:
RETRIED = {
    "timeout": "The step timed out; it is retried automatically.",
    "gateway": "The payment provider did not answer; it is retried automatically.",
    "email": "The e-mail could not be sent; it is retried automatically.",
}
RETRIED_OTHERWISE = "The step failed; it is retried automatically."
# An attempt not made yet because its provider is unavailable (still scheduled):
WAITING = "The provider is unavailable; the step runs again later."
# The last attempt of a step that gave up (status failed): what happens next depends on the
# booking, whose state says it (cancelled, or waiting for an operator).
GAVE_UP = (
    "The step gave up after its retries; the booking's state says what follows (cancelled and "
    "undone, or waiting for an operator)."
)
SKIPPED_STEP = "Skipped: the booking was cancelled before this step ran."


@cache
def _model_fields(serializer_class: type[serializers.ModelSerializer]) -> dict[str, Any]:
    """The fields a ModelSerializer class builds from its model and Meta, built once per class:
    the same for every instance (read here only; each instance gets copies)."""
    return dict(serializers.ModelSerializer.get_fields(serializer_class()))


@cache
def _readable(serializer_class: type[serializers.ModelSerializer]) -> list[tuple[str, Any, Any]]:
    """(name, field, how to read its value from an instance) for each field a representation
    shows, in order; SerializerMethodFields read nothing (None)."""
    out = []
    for name, field in _model_fields(serializer_class).items():
        if field.write_only:
            continue
        method = isinstance(field, serializers.SerializerMethodField)
        out.append((name, field, None if method else attrgetter(field.source or name)))
    return out


class FieldsBuiltOnce(serializers.ModelSerializer):
    """A ModelSerializer that builds its fields from the model once per class instead of once
    per instance (about 1 ms for a booking and its timeline), and renders an instance with
    those fields directly: DRF's Serializer.to_representation binds a fresh copy of every field
    to every instance first, which cost more than the rendering itself. The output is DRF's,
    value for value (tests/api/test_representation.py compares the two); a SerializerMethodField
    calls this instance's get_<name>, with this instance's context. The field objects are only
    read, so threads share them safely. Validation (`.fields`) gets copies, as a plain
    Serializer does with its declared fields."""

    def get_fields(self) -> dict[str, Any]:
        return copy.deepcopy(_model_fields(type(self)))

    def to_representation(self, instance: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, field, read in _readable(type(self)):
            if read is None:
                out[name] = getattr(self, field.method_name or f"get_{name}")(instance)
                continue
            value = read(instance)
            out[name] = None if value is None else field.to_representation(value)
        return out


class ResourceSerializer(FieldsBuiltOnce):
    class Meta:
        model = Resource
        fields = ["code", "name", "nightly_price", "currency", "timezone"]


class StepSerializer(FieldsBuiltOnce):
    """One attempt of one saga step (an action or its compensation)."""

    error = serializers.SerializerMethodField(
        help_text="Why the attempt failed, for a client; empty when it did not fail."
    )
    duration_ms = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Run time of the attempt."
    )

    class Meta:
        model = SagaStep
        fields = [
            "name",
            "direction",
            "status",
            "attempt",
            "scheduled_for",
            "started_at",
            "finished_at",
            "duration_ms",
            "error_code",
            "error",
        ]

    @extend_schema_field(serializers.CharField())
    def get_error(self, step: SagaStep) -> str:
        if step.status == SagaStep.Status.SKIPPED:
            return SKIPPED_STEP
        if not step.error and not step.error_code:
            return ""
        if step.error_code in REFUSALS:
            return REFUSALS[step.error_code]
        if step.status == SagaStep.Status.FAILED:
            return GAVE_UP
        if step.status == SagaStep.Status.SCHEDULED:
            return WAITING
        return RETRIED.get(step.error_code, RETRIED_OTHERWISE)


class BookingSerializer(FieldsBuiltOnce):
    """A booking as its client sees it, with the timeline of its saga's attempts."""

    resource: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="code", read_only=True
    )
    cancellation_reason = serializers.ChoiceField(
        choices=Booking.CancellationReason.choices,
        allow_blank=True,
        read_only=True,
        help_text="Why the booking was cancelled; empty unless it is cancelled or cancelling.",
    )
    cancel_requested_at = serializers.SerializerMethodField(
        help_text="When a cancellation was asked for while a step was in flight (it then takes "
        "effect at the next step boundary); null if none was."
    )
    timeline = serializers.SerializerMethodField(
        help_text="Every attempt of every step, oldest first."
    )

    class Meta:
        model = Booking
        fields = [
            "id",
            "reference",
            "state",
            "cancellation_reason",
            "cancel_requested_at",
            "resource",
            "check_in",
            "check_out",
            "guest_name",
            "guest_email",
            "amount",
            "currency",
            "payment_status",
            "created_at",
            "updated_at",
            "timeline",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_cancel_requested_at(self, booking: Booking) -> str | None:
        saga = booking.saga
        if saga is None or saga.cancel_requested_at is None:
            return None
        return serializers.DateTimeField().to_representation(saga.cancel_requested_at)

    @extend_schema_field(StepSerializer(many=True))
    def get_timeline(self, booking: Booking) -> list[dict]:
        if booking.saga is None:
            return []
        # Given by the caller that has them in hand (the engine, a create), else prefetched by
        # the selector (.all() keeps using that cache).
        given = self.context.get("attempts")
        steps = given if given is not None else sorted(booking.saga.steps.all(), key=lambda s: s.pk)
        return cast(list[dict], StepSerializer(steps, many=True).data)


class BookingCreateSerializer(serializers.Serializer):
    """The body of `POST /api/v1/bookings/`. The amount is computed on the server."""

    resource = serializers.CharField(max_length=32, help_text="A resource code, e.g. garden-room.")
    check_in = serializers.DateField(help_text="First night, today or later (YYYY-MM-DD).")
    check_out = serializers.DateField(help_text="Departure day, 1 to 30 nights after check_in.")
    guest_name = serializers.CharField(max_length=120)
    guest_email = serializers.EmailField(max_length=254)
    payment_token = serializers.RegexField(
        TOKEN_PATTERN,
        max_length=64,
        write_only=True,
        help_text="A provider token (sandbox tok_..., Stripe pm_...), never card data.",
        error_messages={
            "invalid": "A payment token looks like tok_... or pm_... (letters, digits, _)."
        },
    )


class BookingCancelSerializer(serializers.Serializer):
    """The optional body of a cancel."""

    reason = serializers.CharField(
        max_length=500, required=False, allow_blank=True, help_text="Kept in the audit trail."
    )


class ErrorSerializer(serializers.Serializer):
    """Every error the API returns has this shape."""

    code = serializers.CharField(help_text="Stable, machine-readable: invalid, not_found, ...")
    message = serializers.CharField(help_text="For a person to read.")
    # A declared field named "fields": DRF's metaclass takes it out of the class attributes,
    # so it does not shadow Serializer.fields at run time; mypy sees only the assignment.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages per input field (400 only; empty otherwise).",
    )
