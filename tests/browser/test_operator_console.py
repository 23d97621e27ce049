"""An operator in a real browser: logs in, filters the stuck bookings, opens the one whose
worker died mid-step, retries it and sees it complete (a real Celery worker finishes it).
Saves the screenshots the README shows (docs/screenshots/)."""

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from bookings.models import Booking
from sagas.models import SagaEvent, SagaStep
from sandbox.models import PaymentAuthorization
from tests.faults.injection import messages_lost

from ..factories import ResourceFactory
from ..helpers import book, drive, wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _history(room, sold_out) -> None:
    """A few bookings that went every way, run in this process (their messages dropped so that
    no worker races the synchronous run)."""
    with messages_lost():
        made = [
            book(room, email="ada@example.com"),
            book(room, email="grace@example.com", token="tok_flaky"),
            book(room, email="bounce@example.com"),
            book(sold_out, email="linus@example.com", token="tok_void_fails"),
            book(sold_out, email="barbara@example.com"),
            book(room, email="x@fraud.test"),
        ]
    for booking in made:
        drive(booking.saga_id)


def _stuck_booking(start_worker, room) -> Booking:
    """A worker dies between the payment authorization and the commit of its outcome."""
    doomed = start_worker(
        "doomed", concurrency=1, faults={"pause_after_action": {"preauthorize.action": 60}}
    )
    booking = book(room, email="margaret@example.com")
    wait_for(
        lambda: (
            PaymentAuthorization.objects.filter(token="tok_visa", status="authorized")
            .exclude(
                idempotency_key__in=SagaStep.objects.exclude(status="scheduled").values(
                    "idempotency_key"
                )
            )
            .exists()
        ),
        timeout=30,
        what="the authorization",
    )
    doomed.kill()
    wait_for(
        lambda: SagaStep.objects.filter(
            saga_id=booking.saga_id, status="scheduled", lease_expires_at__lt=timezone.now()
        ).exists(),
        timeout=30,
        what="the lease to run out",
    )
    return booking


def test_operator_finds_a_stuck_booking_retries_it_and_sees_it_complete(
    live_server, start_worker, browser_page
):
    get_user_model().objects.create_superuser("operator", "op@example.com", "op-password")
    room = ResourceFactory(code="garden-room", name="Garden room", capacity=10)
    sold_out = ResourceFactory(code="sold-out", name="Lighthouse loft", capacity=0)
    _history(room, sold_out)
    stuck = _stuck_booking(start_worker, room)
    start_worker("rescuer")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser_page
    # The README's screenshots at the width the console is made for (issue 18: 1280 px).
    page.set_viewport_size({"width": 1280, "height": 800})

    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "op-password")
    page.click("input[type=submit]")
    page.click("#operations-dashboard-link >> text=Operations dashboard")
    page.wait_for_selector("#state-diagram svg")
    page.click("text=Bookings")  # the breadcrumb to the list
    page.wait_for_selector("#result_list")
    page.screenshot(path=str(SCREENSHOTS / "bookings-list.png"), full_page=True)

    page.click("text=Stuck (lease ran out or nothing scheduled)")
    page.wait_for_url("**stuck=yes**")
    page.wait_for_load_state("load")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1, timeout=15_000)  # retries until the filtered page is there
    expect(rows.first).to_contain_text("preauthorizing")
    page.click(f"text={stuck.reference}")
    page.wait_for_selector("#saga-timeline")
    assert "lease ran out" in page.inner_text("#saga-timeline")

    page.click("#action-retry")
    page.fill("#id_reason", "worker died mid-step; sending it again")
    page.click("#operate-form input[type=submit]")
    assert "sent preauthorize (action) again" in page.inner_text(".messagelist")

    def completed_on_page() -> bool:
        page.reload()
        return "state-completed" in page.inner_html("fieldset")

    wait_for(completed_on_page, timeout=60, what="the booking page to show completed")
    assert "worker died mid-step; sending it again" in page.inner_text("#saga-events")
    page.screenshot(path=str(SCREENSHOTS / "booking-page.png"), full_page=True)

    event = SagaEvent.objects.get(saga_id=stuck.saga_id, kind="retry")
    assert event.actor == "operator"
    assert (
        PaymentAuthorization.objects.get(idempotency_key__startswith=str(stuck.saga_id)).attempts
        == 1
    )

    page.goto(f"{live_server.url}/admin/bookings/booking/dashboard/")
    page.wait_for_selector("#state-diagram svg")
    assert "Bookings per state (7 in all)" in page.inner_text("#content-main")
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
