"""The booking horizon (issue 15, item 5): a check-in further ahead than BOOKING_MAX_DAYS_AHEAD
or a stay longer than BOOKING_MAX_NIGHTS is refused by booking_create, per field, and nothing
is created (no saga, so no payment hold)."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from bookings.errors import ApplicationError
from bookings.models import Booking
from bookings.services import booking_create
from sagas.models import Saga

from ..factories import ResourceFactory

pytestmark = pytest.mark.django_db


def create(check_in: date, nights: int = 2) -> Booking:
    return booking_create(
        resource_code="garden-room",
        check_in=check_in,
        check_out=check_in + timedelta(days=nights),
        guest_name="Ada",
        guest_email="ada@example.com",
        payment_token="tok_visa",
    )


@pytest.fixture(autouse=True)
def _room():
    ResourceFactory(code="garden-room")


def test_a_check_in_in_year_9999_is_refused_and_nothing_is_created():
    with pytest.raises(ApplicationError) as err:
        create(date(9999, 12, 1))
    assert err.value.status == 400 and list(err.value.extra) == ["check_in"]
    assert "at most 730 days ahead" in err.value.extra["check_in"][0]
    assert not Booking.objects.exists() and not Saga.objects.exists()


def test_the_furthest_check_in_is_a_setting_and_its_last_day_is_accepted(settings):
    settings.BOOKING_MAX_DAYS_AHEAD = 30
    today = timezone.localdate()
    assert create(today + timedelta(days=30)).state == "fraud_check"
    with pytest.raises(ApplicationError) as err:
        create(today + timedelta(days=31))
    assert "at most 30 days ahead" in err.value.extra["check_in"][0]
    assert Booking.objects.count() == 1


def test_the_longest_stay_is_a_setting(settings):
    settings.BOOKING_MAX_NIGHTS = 3
    check_in = timezone.localdate() + timedelta(days=5)
    assert create(check_in, nights=3).nights == 3
    with pytest.raises(ApplicationError) as err:
        create(check_in, nights=4)
    assert err.value.extra == {"check_out": ["A stay is at most 3 nights."]}
