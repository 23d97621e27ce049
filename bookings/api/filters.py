"""Filters of the booking list: `?state=completed&created_after=...&created_before=...`."""

import django_filters

from bookings.models import Booking


class BookingFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=Booking.State.choices)
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", label="Created at or after (ISO 8601)."
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", label="Created before (ISO 8601)."
    )

    class Meta:
        model = Booking
        fields = ["state", "created_after", "created_before"]
