"""A view-only operator in a real browser reads every admin page about a booking's saga (the
booking, its saga, each attempt) and never sees the payment token."""

import pytest
from django.contrib.auth.models import Permission

from sagas.models import SagaStep

from ..factories import ResourceFactory, UserFactory
from ..helpers import book, drive

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TOKEN = "tok_flaky"  # fails twice: its attempts carry errors too


def test_view_only_staff_sees_no_payment_token_on_saga_and_attempt_pages(live_server, browser_page):
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.set_password("viewer-password")
    viewer.save()
    viewer.user_permissions.set(
        Permission.objects.filter(codename__in=["view_booking", "view_saga", "view_sagastep"])
    )
    booking = book(ResourceFactory(code="garden-room", capacity=3), token=TOKEN)
    drive(booking.saga_id)
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "viewer")
    page.fill("#id_password", "viewer-password")
    page.click("input[type=submit]")

    urls = [
        f"/admin/bookings/booking/{booking.pk}/change/",
        f"/admin/sagas/saga/{booking.saga_id}/change/",
        *(
            f"/admin/sagas/sagastep/{pk}/change/"
            for pk in SagaStep.objects.filter(saga_id=booking.saga_id).values_list("pk", flat=True)
        ),
    ]
    assert len(urls) >= 7  # the booking, its saga, and at least five attempts
    for url in urls:
        page.goto(f"{live_server.url}{url}")
        page.wait_for_selector("#content")
        text = page.content()
        assert "Payload" in text or "booking" in text.lower()
        assert TOKEN not in text, url
        assert "tok_" not in text, url
