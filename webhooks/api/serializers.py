"""What the webhooks API reads and writes. The rules (allowed URLs, known event types) are the
service's; these check types and sizes."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from ..models import Endpoint


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean, true or false, and nothing else: not "yes", 1 or 0.0 (DRF's own field
    takes those for form data; this API reads JSON, and its schema says boolean)."""

    def to_internal_value(self, data: object) -> bool:
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)
        raise AssertionError("fail() raises")  # for the type checker


class EndpointSerializer(serializers.ModelSerializer):
    """A webhook endpoint as its client sees it (never its secret)."""

    url = serializers.URLField(
        max_length=2000,
        help_text="Where events are POSTed: https, on a public address.",
    )
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=settings.WEBHOOK_EVENT_TYPES),
        required=False,
        max_length=len(settings.WEBHOOK_EVENT_TYPES),
        help_text="The event types sent here; empty or left out: every type.",
    )
    description = serializers.CharField(max_length=255, required=False, allow_blank=True)
    enabled = StrictBooleanField(
        required=False,
        help_text="false: nothing is sent. Set it back to true once a disabled endpoint works "
        "again (it was disabled after failing for days: see disabled_reason).",
    )

    class Meta:
        model = Endpoint
        fields = [
            "id",
            "url",
            "event_types",
            "description",
            "enabled",
            "disabled_reason",
            "failing_since",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "disabled_reason", "failing_since", "created_at", "updated_at"]


class EndpointWithSecretSerializer(EndpointSerializer):
    """An endpoint just created or whose secret was just rotated: the only time the secret is
    shown."""

    secret = serializers.CharField(
        read_only=True,
        help_text="whsec_...: verifies the webhook-signature header. Shown once; keep it.",
    )

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "secret"]
        read_only_fields = [*EndpointSerializer.Meta.read_only_fields, "secret"]


class RotateSecretSerializer(serializers.Serializer):
    overlap_seconds = serializers.IntegerField(
        min_value=0,
        max_value=7 * 24 * 3600,
        default=24 * 3600,
        help_text="How long the current secret keeps signing too (both signatures are sent).",
    )


class EventSerializer(serializers.Serializer):
    """An event: the same JSON as the body of its webhook."""

    id = serializers.UUIDField(help_text="Also the webhook-id header of its deliveries.")
    type = serializers.ChoiceField(choices=settings.WEBHOOK_EVENT_TYPES)
    timestamp = serializers.DateTimeField()
    subject = serializers.CharField(help_text="The booking's id.")
    sequence = serializers.IntegerField(help_text="1, 2, 3... per booking, in order.")
    # A declared field named "data": DRF's metaclass takes it out of the class attributes, so it
    # does not shadow Serializer.data at run time; mypy sees only the assignment.
    data = serializers.DictField(  # type: ignore[assignment]
        help_text="The booking as GET /api/v1/bookings/{id}/ shows it, at the time of the "
        "event; booking.cancelled adds `reason`, booking.requires_attention `message`."
    )


class EventPageSerializer(serializers.Serializer):
    results = EventSerializer(many=True)
    next = serializers.CharField(
        allow_null=True, help_text="The URL of the next page; null when there is none yet."
    )
