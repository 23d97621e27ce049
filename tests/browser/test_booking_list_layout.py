"""The admin's booking list is readable at 1280 px (issue 18): every column, up to check-in,
the guest's e-mail and the creation time, fits without horizontal scrolling, and a long error
in the failing-step column is cut to one line, the whole text in its title attribute."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from bookings.models import Booking
from sagas import engine
from sagas.models import SagaStep

from ..factories import ResourceFactory
from ..faults.injection import messages_lost
from ..helpers import book, drive, reload, scheduled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDTH, HEIGHT = 1280, 800


@pytest.fixture
def bookings() -> list[Booking]:
    """Bookings as an operator meets them: completed, cancelled, parked with a long error (the
    confirmation e-mail bounced until retries ran out), and stuck (the widest state: two
    badges). Messages are dropped (no worker)."""
    room = ResourceFactory(code="garden-room", name="Garden room", capacity=10)
    sold_out = ResourceFactory(code="sold-out", name="Lighthouse loft", capacity=0)
    with messages_lost():
        made = [
            book(room, email="ada.lovelace@analytical-engine.example.com"),
            book(room, email="bounce@example.com"),
            book(sold_out, email="barbara@example.com"),
            book(room, email="x@fraud.test"),
        ]
        for booking in made:
            drive(booking.saga_id)
        stuck = book(room, email="margaret.hamilton@apollo-guidance.example.com")
        step = scheduled(stuck.saga_id)
        assert step is not None
        engine.execute(step.pk)  # the fraud check: the booking is now preauthorizing
    SagaStep.objects.filter(saga_id=stuck.saga_id, status="scheduled").update(
        lease_expires_at=timezone.now() - timedelta(minutes=2)
    )
    return [reload(b) for b in [*made, stuck]]


def test_the_booking_list_fits_1280_pixels_and_errors_stay_on_one_line(
    live_server, browser_page, bookings
):
    parked = next(b for b in bookings if b.guest_email == "bounce@example.com")
    assert parked.state == "requires_attention"
    assert bookings[-1].state == "preauthorizing"
    get_user_model().objects.create_superuser("operator", "op@example.com", "op-password")
    page = browser_page
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    page.goto(f"{live_server.url}/admin/login/?next=/admin/bookings/booking/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "op-password")
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")

    # The table scrolls inside its own box (#changelist .results): every header must be inside
    # that box's visible part, not only inside the window.
    results = page.locator("#changelist .results")
    visible = results.bounding_box()
    assert visible is not None and visible["x"] + visible["width"] <= WIDTH
    for column in (
        "reference",
        "state_display",
        "failing_step",
        "check_in",
        "guest",
        "created",
    ):
        box = page.locator(f"#result_list th.column-{column}").bounding_box()
        assert box is not None, column
        assert box["x"] >= visible["x"], (column, box, visible)
        assert box["x"] + box["width"] <= visible["x"] + visible["width"], (column, box, visible)
    assert results.evaluate("r => r.scrollWidth <= r.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH

    # The parked booking's failing step: one line however long its error, all of it in the title.
    row = page.locator("#result_list tbody tr", has_text=parked.reference)
    cell = row.locator("td.field-failing_step")
    title = cell.locator("[title]").get_attribute("title")
    assert title and len(title) > 60 and title[:40] in cell.inner_text()
    font = page.evaluate("c => parseFloat(getComputedStyle(c).fontSize)", cell.element_handle())
    other_row = page.locator("#result_list tbody tr", has_text="barbara@example.com")
    assert row.bounding_box()["height"] <= other_row.bounding_box()["height"] + 1
    assert cell.bounding_box()["height"] < 2.2 * font + 16  # one line, and the padding
