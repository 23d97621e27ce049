"""Who sees what in the operator console, in a real browser (issue 15, item 3): a staff user
with no permission, a viewer, and an operator who may compensate, each logged in through the
admin's login page, open the same booking and its transition page."""

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import Page

from bookings.models import Booking
from sagas.models import SagaEvent

from ..factories import ResourceFactory, UserFactory
from ..faults.injection import messages_lost
from ..helpers import book, drive, reload

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-browser-password"


def user(username: str, *codenames: str) -> None:
    account = UserFactory(username=username, is_staff=True)
    account.set_password(PASSWORD)
    account.save()
    account.user_permissions.set(
        Permission.objects.filter(content_type__app_label="bookings", codename__in=codenames)
    )


@pytest.fixture
def parked() -> Iterator[Booking]:
    """A booking whose confirmation e-mail bounced until retries ran out: requires attention,
    with an authorization and a reservation a compensation would undo. Step messages are
    dropped (the test runs no worker) until the test ends."""
    with messages_lost():
        booking = book(ResourceFactory(code="garden-room"), email="bounce@example.com")
        drive(booking.saga_id)
        booking = reload(booking)
        assert booking.state == "requires_attention" and booking.authorization_ref
        yield booking


def log_in(page: Page, base: str, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#content")


def test_only_an_operator_with_view_and_compensate_permissions_reaches_the_plan(
    live_server, browser_page, parked
):
    user("nobody")
    user("viewer", "view_booking")
    user("compensator", "compensate_booking")
    user("operator", "view_booking", "compensate_booking")
    page = browser_page
    base = live_server.url
    booking_page = f"{base}/admin/bookings/booking/{parked.pk}/change/"
    transition_page = f"{base}/admin/bookings/booking/{parked.pk}/transition/begin_compensation/"

    for username in ("nobody", "compensator"):
        log_in(page, base, username)
        response = page.goto(transition_page)
        assert response is not None and response.status == 403, username
        body = page.content()
        assert parked.authorization_ref not in body and parked.reservation_ref not in body
        assert page.goto(booking_page).status == 403

    log_in(page, base, "viewer")
    assert page.goto(booking_page).status == 200
    page.wait_for_selector("#saga-timeline")
    assert page.locator("#transition-begin_compensation").count() == 0
    response = page.goto(transition_page)
    assert response is not None and response.status == 403
    assert parked.authorization_ref not in page.content()

    log_in(page, base, "operator")
    page.goto(booking_page)
    page.click("#transition-begin_compensation")
    page.wait_for_selector("#compensation-plan")
    plan = page.inner_text("#compensation-plan")
    assert parked.authorization_ref in plan and parked.reservation_ref in plan
    page.fill("#id_reason", "guest called to cancel")
    page.click("#operate-form input[type=submit]")
    assert "compensation started" in page.inner_text(".messagelist")
    assert reload(parked).state == "compensating"
    event = SagaEvent.objects.get(saga_id=parked.saga_id, kind="cancel")
    assert (event.actor, event.reason) == ("operator", "guest called to cancel")

    for name in ("save", "made_up_name", "require_attention"):
        unknown = f"{base}/admin/bookings/booking/{parked.pk}/transition/{name}/"
        response = page.goto(unknown)
        assert response is not None and response.status == 404, name
