"""The bookings list: what each row shows, the filters, the search and its cost per page."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bench.seed_bulk import seed_bulk_bookings

from ..helpers import book
from .conftest import make_stuck

pytestmark = pytest.mark.django_db
URL = reverse("admin:bookings_booking_changelist")


def references(response) -> set[str]:
    return set(re.findall(r"BK-[A-Z0-9]{8}", response.content.decode()))


def test_list_shows_state_badge_time_in_state_and_failing_step(operator, void_parked, completed):
    page = operator.get(URL).content.decode()
    assert 'class="state-badge state-requires_attention"' in page
    assert 'class="state-badge state-completed"' in page
    # The void kept failing: the failing step is the undo of preauthorize, with its error.
    assert "preauthorize (undo)" in page and "void refused" in page
    assert "in state for" in page.lower()


def test_state_filter_keeps_only_that_state(operator, void_parked, completed):
    page = operator.get(URL, {"state__exact": "completed"})
    assert references(page) == {completed.reference}


def test_requires_attention_filter(operator, email_parked, completed):
    assert references(operator.get(URL, {"attention": "yes"})) == {email_parked.reference}
    assert references(operator.get(URL, {"attention": "no"})) == {completed.reference}


def test_stuck_filter_finds_in_flight_bookings_whose_lease_ran_out(operator, room, completed):
    stuck = make_stuck(room)
    moving = book(room, email="moving@example.com")  # just sent: its lease runs a while yet
    response = operator.get(URL, {"stuck": "yes"})
    assert references(response) == {stuck.reference}
    assert 'state-badge state-stuck">stuck' in response.content.decode()
    assert references(operator.get(URL, {"stuck": "no"})) == {moving.reference, completed.reference}


def test_created_and_resource_filters(operator, completed, void_parked):
    assert references(operator.get(URL, {"created_at__gte": "2000-01-01"})) == {
        completed.reference,
        void_parked.reference,
    }
    assert not references(operator.get(URL, {"created_at__lt": "2000-01-01"}))
    sold_out = void_parked.resource_id
    assert references(operator.get(URL, {"resource__id__exact": sold_out})) == {
        void_parked.reference
    }


@pytest.mark.parametrize(
    "field", ["reference", "guest_email", "authorization_ref", "reservation_ref"]
)
def test_search_finds_a_booking_by(field, operator, completed, email_parked):
    term = getattr(completed, field)
    assert term
    assert references(operator.get(URL, {"q": term})) == {completed.reference}


def _list_queries(client) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(URL)
    assert response.status_code == 200
    return len(ctx.captured_queries), len(references(response))


def test_list_page_costs_the_same_queries_with_50_and_500_bookings(operator):
    seed_bulk_bookings(count=50)
    queries_50, rows_50 = _list_queries(operator)
    seed_bulk_bookings(count=450, seed=2)
    queries_500, rows_500 = _list_queries(operator)
    assert (rows_50, rows_500) == (50, 100)  # a full page each time
    assert queries_50 == queries_500
    # The same holds with the stuck filter on.
    with CaptureQueriesContext(connection) as ctx:
        operator.get(URL, {"stuck": "yes"})
    assert len(ctx.captured_queries) == queries_500
