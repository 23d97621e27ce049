"""Hostile input and hostile clients against the API (issue 15): deeply nested JSON (item 4), a
check-in beyond the horizon (item 5), a spoofed X-Forwarded-For (item 6) and floods of invalid
tokens (item 7). Each answer is a 4xx in the API's one error format, never a 500."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from bookings.models import Booking
from sagas.models import Saga, SagaEvent

from ..helpers import book
from .helpers import assert_error, booking_body

pytestmark = pytest.mark.django_db

BOOKINGS = "/api/v1/bookings/"
SCHEMA = {"HTTP_ACCEPT": "application/vnd.oai.openapi+json"}


def rates(settings, **rates: str) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            **rates,
        },
    }


# --- the schema and its documentation pages -----------------------------------------------------

PAGES = [
    ("/api/v1/schema/", "application/vnd.oai.openapi"),  # YAML, unless JSON is asked for
    ("/api/v1/docs/", "text/html"),
    ("/api/v1/redoc/", "text/html"),
]


@pytest.mark.parametrize(("path", "page_type"), PAGES)
def test_the_schema_and_docs_pages_answer_their_errors_in_the_api_json_format(
    settings, path, page_type
):
    """A newcomer's script that fetches the schema too often, or with the wrong Accept or
    method, gets the API's JSON error (code, message), not YAML or an HTML fragment."""
    rates(settings, anonymous="1/minute")
    anonymous = APIClient(REMOTE_ADDR="10.0.0.21")
    page = anonymous.get(path)
    assert page.status_code == 200
    assert page["Content-Type"].startswith(page_type)
    throttled = anonymous.get(path)
    assert_error(throttled, 429, "throttled")
    assert throttled["Content-Type"] == "application/json"
    assert 0 < int(throttled["Retry-After"]) <= 60

    rates(settings, anonymous="100/minute")
    other = APIClient(REMOTE_ADDR="10.0.0.22")
    assert_error(other.post(path), 405, "method_not_allowed")
    assert_error(other.get(path, HTTP_ACCEPT="application/xml"), 406, "not_acceptable")
    assert other.get(path, HTTP_ACCEPT="*/*")["Content-Type"].startswith(page_type)


# --- item 4: nested JSON ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [50_000, 5_000])
def test_deeply_nested_json_on_create_is_a_400(alice, garden, depth):
    body = "[" * depth + "]" * depth
    response = alice.post(BOOKINGS, body, content_type="application/json")
    error = assert_error(response, 400, "malformed_request")
    assert "nested too deeply" in error["message"]
    assert not Booking.objects.exists()


def test_deeply_nested_json_inside_a_field_is_a_400(alice, garden):
    body = '{"guest_name": ' + "[" * 50_000 + "]" * 50_000 + "}"
    response = alice.post(BOOKINGS, body, content_type="application/json")
    assert_error(response, 400, "malformed_request")


def test_deeply_nested_json_on_cancel_is_a_400_and_cancels_nothing(alice, garden):
    booking = book(garden, owner=alice.user)
    body = '{"reason": ' + "[" * 50_000 + "]" * 50_000 + "}"
    response = alice.post(f"{BOOKINGS}{booking.pk}/cancel/", body, content_type="application/json")
    assert_error(response, 400, "malformed_request")
    assert not SagaEvent.objects.filter(saga_id=booking.saga_id, kind="cancel").exists()


# --- item 5: horizon ----------------------------------------------------------------------------


def test_a_check_in_in_year_9999_is_a_400_on_the_check_in_field(alice, garden):
    body = booking_body(check_in="9999-12-01", check_out="9999-12-03")
    error = assert_error(alice.post(BOOKINGS, body, format="json"), 400, "invalid")
    assert list(error["fields"]) == ["check_in"]
    assert not Booking.objects.exists() and not Saga.objects.exists()


# --- item 6: X-Forwarded-For --------------------------------------------------------------------


def test_a_spoofed_forwarded_for_does_not_dodge_the_anonymous_throttle(db, settings):
    rates(settings, anonymous="2/minute")
    anonymous = APIClient(REMOTE_ADDR="10.0.0.7")
    for n in range(2):
        spoofed = {"HTTP_X_FORWARDED_FOR": f"198.51.100.{n}"}
        assert anonymous.get("/api/v1/schema/", **SCHEMA, **spoofed).status_code == 200
    spoofed = {"HTTP_X_FORWARDED_FOR": "198.51.100.99"}
    assert_error(anonymous.get("/api/v1/schema/", **SCHEMA, **spoofed), 429, "throttled")


def test_behind_one_proxy_the_address_it_appended_is_counted(db, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    rates(settings, anonymous="2/minute")
    balancer = APIClient(REMOTE_ADDR="10.0.0.1")  # every request arrives from the balancer

    def through_balancer(client_address: str, spoofed: str = "203.0.113.66") -> int:
        # The client wrote the first address; the balancer appended the one it saw.
        header = {"HTTP_X_FORWARDED_FOR": f"{spoofed}, {client_address}"}
        return balancer.get("/api/v1/schema/", **SCHEMA, **header).status_code

    assert through_balancer("192.0.2.10", spoofed="1.1.1.1") == 200
    assert through_balancer("192.0.2.10", spoofed="2.2.2.2") == 200
    assert through_balancer("192.0.2.10", spoofed="3.3.3.3") == 429
    assert through_balancer("192.0.2.11") == 200  # another client behind the same balancer


# --- item 7: invalid tokens ---------------------------------------------------------------------


def test_a_flood_of_invalid_tokens_is_refused_with_429_per_address(alice, settings):
    rates(settings, failed_authentication="5/minute")
    attacker = APIClient(REMOTE_ADDR="10.0.0.66")
    for n in range(5):
        attacker.credentials(HTTP_AUTHORIZATION=f"Token {'0' * 39}{n}")
        assert_error(attacker.get(BOOKINGS), 401, "not_authenticated")
    attacker.credentials(HTTP_AUTHORIZATION=f"Token {'1' * 40}")
    with CaptureQueriesContext(connection) as queries:
        response = attacker.get(BOOKINGS)
    assert_error(response, 429, "throttled")
    assert 0 < int(response["Retry-After"]) <= 60
    assert len(queries) == 0  # refused before the token is looked up
    # Spoofing X-Forwarded-For does not reset the count.
    spoofed = attacker.get(BOOKINGS, HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert_error(spoofed, 429, "throttled")
    # Other addresses, and valid tokens from them, are not affected.
    alice.defaults["REMOTE_ADDR"] = "10.0.0.8"
    assert alice.get(BOOKINGS).status_code == 200


def test_valid_tokens_are_not_counted_as_failures(alice, settings):
    rates(settings, failed_authentication="2/minute", client="100/minute")
    for _ in range(5):
        assert alice.get(BOOKINGS).status_code == 200
