"""A resource's "today" is its local date (issue 18): "check-in cannot be in the past" and the
booking horizon are judged in the resource's timezone, not in UTC.

The clock is Django's (django.utils.timezone.now), set to a fixed instant for each test so
that the local dates and the UTC date really differ; nothing of ours is replaced."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from bookings.errors import ApplicationError
from bookings.models import Booking, Resource
from bookings.services import booking_create

from ..factories import ResourceFactory

pytestmark = pytest.mark.django_db


def create(code: str, check_in: date) -> Booking:
    return booking_create(
        resource_code=code,
        check_in=check_in,
        check_out=check_in + timedelta(days=1),
        guest_name="Ada",
        guest_email="ada@example.com",
        payment_token="tok_visa",
    )


def at(monkeypatch: pytest.MonkeyPatch, instant: datetime) -> None:
    monkeypatch.setattr(timezone, "now", lambda: instant)


def test_a_hotel_west_of_utc_takes_a_same_day_booking_in_its_evening(monkeypatch):
    # 04:30 UTC on 10 March is 21:30 on 9 March in Los Angeles (PDT, UTC-7).
    at(monkeypatch, datetime(2026, 3, 10, 4, 30, tzinfo=UTC))
    ResourceFactory(code="venice-beach", timezone="America/Los_Angeles")
    ResourceFactory(code="london-bridge", timezone="UTC")

    tonight = create("venice-beach", date(2026, 3, 9))
    assert tonight.check_in == date(2026, 3, 9) and tonight.state == "fraud_check"
    # The same night in a hotel on UTC has already passed.
    with pytest.raises(ApplicationError) as err:
        create("london-bridge", date(2026, 3, 9))
    assert err.value.extra == {"check_in": ["Check-in cannot be in the past."]}
    with pytest.raises(ApplicationError):
        create("venice-beach", date(2026, 3, 8))
    assert Booking.objects.count() == 1


def test_a_hotel_east_of_utc_refuses_a_check_in_that_is_already_yesterday_there(
    monkeypatch, settings
):
    # 20:00 UTC on 9 March is 05:00 on 10 March in Tokyo (UTC+9).
    at(monkeypatch, datetime(2026, 3, 9, 20, 0, tzinfo=UTC))
    settings.BOOKING_MAX_DAYS_AHEAD = 30
    ResourceFactory(code="shinjuku", timezone="Asia/Tokyo")
    ResourceFactory(code="london-bridge", timezone="UTC")

    with pytest.raises(ApplicationError) as err:
        create("shinjuku", date(2026, 3, 9))
    assert err.value.extra == {"check_in": ["Check-in cannot be in the past."]}
    assert create("london-bridge", date(2026, 3, 9)).state == "fraud_check"
    # The horizon counts from Tokyo's today (10 March) too: 9 April is the last day there,
    # a day after London's last day.
    assert create("shinjuku", date(2026, 4, 9)).check_in == date(2026, 4, 9)
    with pytest.raises(ApplicationError) as err:
        create("london-bridge", date(2026, 4, 9))
    assert "on or before 2026-04-08" in err.value.extra["check_in"][0]
    with pytest.raises(ApplicationError) as err:
        create("shinjuku", date(2026, 4, 10))
    assert "on or before 2026-04-09" in err.value.extra["check_in"][0]


def test_a_new_resource_takes_the_default_timezone_and_an_unknown_name_is_refused(settings):
    settings.BOOKING_DEFAULT_TIMEZONE = "Europe/Paris"
    assert Resource(code="x", name="X", capacity=1, nightly_price=1).timezone == "Europe/Paris"
    resource = ResourceFactory(code="nowhere")
    for name in ("Mars/Olympus_Mons", "../etc/passwd", ""):
        resource.timezone = name
        with pytest.raises(ValidationError) as err:
            resource.full_clean()
        assert "timezone" in err.value.message_dict
