"""`/` and `/api/v1/` answer indexes of links instead of 404 (issue 18)."""

import re
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import resolve

from bookings.models import Booking
from ops.index import HOME_LINKS

from ..factories import ResourceFactory
from .helpers import assert_error, booking_body


def test_the_front_page_links_the_admin_the_api_its_docs_health_and_metrics(db):
    page = Client().get("/")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    hrefs = re.findall(r'<a href="([^"]+)"', page.content.decode())
    assert {
        "/admin/",
        "/api/v1/",
        "/api/v1/docs/",
        "/api/v1/redoc/",
        "/api/v1/schema/",
        "/health/",
        "/metrics",
    } <= set(hrefs)
    assert len(hrefs) == len(HOME_LINKS)
    for href in hrefs:
        resolve(href)  # each one is a route of ours (Resolver404 otherwise)


def test_the_api_root_lists_the_endpoints_and_each_answers(alice):
    root = Client().get("/api/v1/")  # public, like the schema
    assert root.status_code == 200 and root["Content-Type"] == "application/json"
    links = root.json()
    assert set(links) >= {"bookings", "resources", "webhook-endpoints", "events", "docs"}
    assert links["bookings"] == "http://testserver/api/v1/bookings/"
    for key, url in links.items():
        answer = alice.get(urlsplit(url).path)
        assert answer.status_code == 200, (key, answer.status_code)


@pytest.mark.parametrize("debug", [False, True], ids=["production", "make run (DEBUG)"])
def test_a_write_without_its_trailing_slash_is_sent_on_with_its_method_and_body(
    alice, settings, debug
):
    """Django's APPEND_SLASH answers such a POST with a 301 (clients repeat it as a GET: no
    booking, a list instead) or, under DEBUG, with an error page. The API answers 308, which
    keeps the method and the body, in its JSON error shape."""
    settings.DEBUG = debug
    ResourceFactory(code="garden-room")
    moved = alice.post("/api/v1/bookings", booking_body(), format="json")
    assert_error(moved, 308, "trailing_slash")
    assert moved["Location"] == "/api/v1/bookings/" and not Booking.objects.exists()
    created = alice.post("/api/v1/bookings", booking_body(), format="json", follow=True)
    assert created.status_code == 201 and created.redirect_chain == [("/api/v1/bookings/", 308)]
    booking = Booking.objects.get()
    cancel = alice.post(f"/api/v1/bookings/{booking.pk}/cancel", follow=True)
    assert cancel.status_code == 202
    listed = alice.get("/api/v1/bookings?limit=1")
    assert listed.status_code == 308 and listed["Location"] == "/api/v1/bookings/?limit=1"


def test_the_slash_redirect_keeps_the_address_as_it_came_escaped(alice):
    moved = alice.post("/api/v1/bookings/%3F/cancel")  # an id "?", not a query
    assert_error(moved, 308, "trailing_slash")
    assert moved["Location"] == "/api/v1/bookings/%3F/cancel/"


@pytest.mark.parametrize(
    "path", ["/api/v1/nope/", "/api/v1/nope", "/api/v1/bookings/x/y/z/", "/api/v1/a%0Ab"]
)
def test_an_unknown_api_address_is_the_apis_json_404(alice, settings, path):
    for debug in (False, True):
        settings.DEBUG = debug
        for method in ("get", "post", "delete"):
            assert_error(getattr(alice, method)(path), 404, "not_found")
