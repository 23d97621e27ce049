"""Filters of the booking list: `?state=completed&created_after=...&created_before=...`."""

from __future__ import annotations

from datetime import UTC, datetime

import django_filters

from bookings.models import Booking


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time, compared in UTC. PostgreSQL refuses offsets past 15:59 that ISO
    8601 allows (+17:04), and a date-time at the edge of the calendar may have no UTC
    equivalent, so it stands for the calendar's start or end."""

    def filter(self, qs, value):
        if value is not None:
            try:
                value = value.astimezone(UTC)
            except OverflowError:
                value = (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)
        return super().filter(qs, value)


class BookingFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=Booking.State.choices)
    created_after = UTCDateTimeFilter(
        field_name="created_at", lookup_expr="gte", label="Created at or after (ISO 8601)."
    )
    created_before = UTCDateTimeFilter(
        field_name="created_at", lookup_expr="lt", label="Created before (ISO 8601)."
    )

    class Meta:
        model = Booking
        fields = ["state", "created_after", "created_before"]
