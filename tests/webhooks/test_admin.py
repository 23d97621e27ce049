"""The operators' side: endpoints and deliveries listed and filtered, a booking's page shows its
events and deliveries, the dashboard shows failing endpoints, and redelivery needs its
permission and a reason, and is recorded."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from webhooks import services
from webhooks.models import Delivery, Endpoint, Notice

from ..factories import UserFactory
from ..helpers import book, drive

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/webhooks/delivery/"


def operator(*codenames: str) -> Client:
    user = UserFactory(username=f"op-{'-'.join(codenames) or 'viewer'}", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            codename__in=[
                "view_booking",
                "view_delivery",
                "view_endpoint",
                "view_event",
                *codenames,
            ]
        )
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def delivered(resource):
    owner = UserFactory(username="acme")
    endpoint = services.endpoint_create(
        owner=owner, url="http://127.0.0.1:9/acme-hook", event_types=[]
    )
    booking = book(resource, owner=owner)
    drive(booking.saga_id)
    return booking, endpoint


def test_the_booking_page_shows_its_events_and_their_deliveries(delivered):
    booking, _endpoint = delivered
    page = operator().get(f"/admin/bookings/booking/{booking.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "booking.created" in html and "booking.completed" in html
    assert "http://127.0.0.1:9/acme-hook" in html and "pending, 0 attempts" in html


def test_deliveries_are_filtered_by_status_endpoint_and_booking(delivered, resource):
    booking, endpoint = delivered
    other = book(resource, owner=booking.owner, email="other@example.com")
    client = operator()
    assert client.get(f"{CHANGELIST}?status__exact=pending").status_code == 200
    by_endpoint = client.get(f"{CHANGELIST}?endpoint__id__exact={endpoint.pk}")
    assert by_endpoint.status_code == 200
    by_booking = client.get(f"{CHANGELIST}?q={booking.pk}").content.decode()
    assert str(booking.pk) in by_booking and str(other.pk) not in by_booking
    assert client.get("/admin/webhooks/endpoint/?failing=yes").status_code == 200


def test_the_dashboard_shows_failing_endpoints(delivered):
    _booking, endpoint = delivered
    Endpoint.objects.filter(pk=endpoint.pk).update(
        failing_since=timezone.now(), consecutive_failures=7
    )
    page = operator().get("/admin/bookings/booking/dashboard/").content.decode()
    assert "Failing webhook endpoints" in page and endpoint.url in page


def test_redelivery_needs_its_permission_and_a_reason_and_is_recorded(delivered):
    ids = [str(pk) for pk in Delivery.objects.values_list("pk", flat=True)]
    action = {"action": "redeliver_selected", "_selected_action": ids}
    viewer = operator()
    refused = viewer.post(CHANGELIST, {**action, "post": "yes", "reason": "x"})
    assert refused.status_code in (200, 302) and not Notice.objects.exists()

    client = operator("redeliver_delivery")
    page = client.post(CHANGELIST, action)
    assert page.status_code == 200 and b"Redeliver 2 deliveries" in page.content
    blank = client.post(CHANGELIST, {**action, "post": "yes", "reason": " "})
    assert blank.status_code == 200 and not Notice.objects.exists()
    Delivery.objects.update(status="failed", attempts=9)
    done = client.post(CHANGELIST, {**action, "post": "yes", "reason": "client restored"})
    assert done.status_code == 302
    assert set(Delivery.objects.values_list("status", "attempts")) == {("pending", 0)}
    notice = Notice.objects.get()
    assert notice.actor == "op-redeliver_delivery" and "client restored" in notice.message
    assert LogEntry.objects.filter(change_message__contains="client restored").count() == 2


def test_secrets_never_appear_in_the_admin(delivered):
    _booking, endpoint = delivered
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(superuser)
    page = client.get(f"/admin/webhooks/endpoint/{endpoint.pk}/change/").content.decode()
    assert page and endpoint.secret not in page
