"""Create, list and read bookings; resources; authentication, errors, throttling and waiting."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from bookings.models import Booking
from sagas.models import SagaStep

from ..factories import ResourceFactory, UserFactory
from ..helpers import book, drive
from .helpers import assert_error, booking_body

pytestmark = pytest.mark.django_db

BOOKINGS = "/api/v1/bookings/"
BOOKING_FIELDS = {
    "id",
    "reference",
    "state",
    "cancellation_reason",
    "cancel_requested_at",
    "resource",
    "check_in",
    "check_out",
    "guest_name",
    "guest_email",
    "amount",
    "currency",
    "payment_status",
    "created_at",
    "updated_at",
    "timeline",
}


# --- create ---------------------------------------------------------------------------------


def test_create_answers_201_with_the_booking_its_location_and_a_server_computed_amount(
    alice, garden
):
    response = alice.post(BOOKINGS, booking_body(amount="0.01"), format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == BOOKING_FIELDS
    booking = Booking.objects.get()
    assert body["id"] == str(booking.pk) and booking.owner == alice.user
    assert response["Location"] == f"{BOOKINGS}{booking.pk}/"
    assert (body["amount"], body["currency"]) == ("200.00", "EUR")  # 2 nights x 100.00
    assert body["resource"] == "garden-room"
    assert body["state"] == "fraud_check" and body["payment_status"] == "none"
    assert "Preference-Applied" not in response


def test_the_payment_token_never_appears_in_a_response(alice, garden):
    created = alice.post(BOOKINGS, booking_body(payment_token="tok_secret_42"), format="json")
    detail = alice.get(f"{BOOKINGS}{created.json()['id']}/")
    listing = alice.get(BOOKINGS)
    for response in (created, detail, listing):
        assert b"tok_secret_42" not in response.content
        assert b"payment_token" not in response.content


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"resource": "no-such-room"}, "resource"),
        ({"check_in": "2001-01-01", "check_out": "2001-01-03"}, "check_in"),
        ({"check_out": "inverted"}, "check_out"),
        ({"guest_email": "not-an-email"}, "guest_email"),
        ({"guest_name": "x" * 121}, "guest_name"),
        ({"guest_name": "Grace\x00Hopper"}, "guest_name"),
        ({"guest_name": ""}, "guest_name"),
        ({"payment_token": "4111111111111111"}, "payment_token"),
        ({"payment_token": "tok_" + "a" * 100}, "payment_token"),
        ({"check_in": 20300101}, "check_in"),
        ({"check_in": "2030-02-30"}, "check_in"),
        ({"guest_email": ["a@example.com"]}, "guest_email"),
        ({"resource": {"code": "garden-room"}}, "resource"),
        ({"resource": "r" * 100_000}, "resource"),
        ({"guest_name": None}, "guest_name"),
    ],
)
def test_invalid_input_is_a_400_with_a_message_for_the_field(alice, garden, overrides, field):
    body = booking_body(**overrides)
    if body["check_out"] == "inverted":
        body["check_out"] = body["check_in"]
        body["check_in"] = (timezone.localdate() + timedelta(days=12)).isoformat()
    response = alice.post(BOOKINGS, body, format="json")
    error = assert_error(response, 400, "invalid")
    assert list(error["fields"]) == [field] and error["fields"][field]
    assert not Booking.objects.exists()


def test_zero_nights_and_stays_over_30_nights_are_refused_on_check_out(alice, garden):
    check_in = timezone.localdate() + timedelta(days=5)
    for nights in (0, 31):
        body = booking_body(
            check_in=check_in.isoformat(), check_out=(check_in + timedelta(nights)).isoformat()
        )
        error = assert_error(alice.post(BOOKINGS, body, format="json"), 400, "invalid")
        assert list(error["fields"]) == ["check_out"]


def test_missing_fields_are_each_reported(alice, garden):
    error = assert_error(alice.post(BOOKINGS, {}, format="json"), 400, "invalid")
    assert set(error["fields"]) == {
        "resource",
        "check_in",
        "check_out",
        "guest_name",
        "guest_email",
        "payment_token",
    }


@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"resource": "garden-room"', b"\xff\xfe\x00", b'{"a": "\\ud800"}']
)
def test_malformed_json_is_a_400(alice, garden, raw):
    response = alice.generic("POST", BOOKINGS, raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] in {"malformed_request", "invalid"}


@pytest.mark.parametrize("payload", [[1, 2], "a string", 42, None])
def test_a_body_that_is_not_an_object_is_a_400(alice, garden, payload):
    response = alice.post(BOOKINGS, payload, format="json")
    error = assert_error(response, 400, "invalid")
    assert error["fields"]


def test_a_body_that_is_not_json_is_a_415(alice, garden):
    response = alice.post(BOOKINGS, "resource=garden-room", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


def test_a_body_over_the_upload_limit_is_refused_without_a_server_error(alice, garden):
    huge = booking_body(guest_name="x" * 3_000_000)
    response = alice.post(BOOKINGS, huge, format="json")
    assert_error(response, 413, "request_too_large")


def test_an_unsupported_method_is_a_405_in_the_error_format(alice, garden):
    assert_error(alice.delete(BOOKINGS), 405, "method_not_allowed")


# --- Prefer: wait ---------------------------------------------------------------------------


def test_prefer_wait_is_cut_to_the_maximum_and_answers_with_the_booking_as_it_then_is(
    alice, garden, settings
):
    settings.API_PREFER_WAIT_MAX = 1
    started = time.monotonic()
    response = alice.post(BOOKINGS, booking_body(), format="json", HTTP_PREFER="wait=100")
    elapsed = time.monotonic() - started
    assert response.status_code == 201
    # No worker runs here, so the booking cannot settle: the wait ran to its (cut) end.
    assert 1 <= elapsed < 5
    assert response["Preference-Applied"] == "wait=1"
    assert response.json()["state"] not in Booking.TERMINAL


@pytest.mark.parametrize("header", ["respond-async", "wait=soon", "wait=-3", "wait", "wait=1e9"])
def test_a_prefer_header_without_a_usable_wait_is_ignored(alice, garden, header):
    response = alice.post(BOOKINGS, booking_body(), format="json", HTTP_PREFER=header)
    assert response.status_code == 201
    assert "Preference-Applied" not in response


def test_prefer_wait_among_other_preferences_is_honoured(alice, garden, settings):
    settings.API_PREFER_WAIT_MAX = 0
    response = alice.post(
        BOOKINGS, booking_body(), format="json", HTTP_PREFER='respond-async, wait="7"; x=y'
    )
    assert response["Preference-Applied"] == "wait=0"


# --- list -----------------------------------------------------------------------------------


def test_the_list_shows_only_the_callers_bookings_newest_first(alice, bob, garden):
    mine = [book(garden, owner=alice.user) for _ in range(3)]
    book(garden, owner=bob.user)
    book(garden)  # made by an operator command: nobody's
    body = alice.get(BOOKINGS).json()
    assert body["count"] == 3
    assert [b["id"] for b in body["results"]] == [str(b.pk) for b in reversed(mine)]


def test_staff_with_the_view_permission_see_every_booking(staff, alice, bob, garden):
    book(garden, owner=alice.user)
    book(garden, owner=bob.user)
    book(garden)
    assert staff.get(BOOKINGS).json()["count"] == 3


def test_staff_without_the_permission_see_only_their_own(client_for, alice, garden):
    staffer = client_for(username="plain-staff", is_staff=True)
    book(garden, owner=alice.user)
    assert staffer.get(BOOKINGS).json()["count"] == 0


def test_the_list_is_paginated(alice, garden):
    for _ in range(3):
        book(garden, owner=alice.user)
    first = alice.get(BOOKINGS, {"page_size": 2}).json()
    assert (first["count"], len(first["results"])) == (3, 2) and first["next"]
    second = alice.get(BOOKINGS, {"page_size": 2, "page": 2}).json()
    assert len(second["results"]) == 1 and second["next"] is None
    assert_error(alice.get(BOOKINGS, {"page": 9}), 404, "not_found")


def test_the_list_filters_by_state(alice, garden):
    done = book(garden, owner=alice.user)
    drive(done.saga_id)
    book(garden, owner=alice.user)
    body = alice.get(BOOKINGS, {"state": "completed"}).json()
    assert [b["id"] for b in body["results"]] == [str(done.pk)]
    error = assert_error(alice.get(BOOKINGS, {"state": "nonsense"}), 400, "invalid")
    assert list(error["fields"]) == ["state"]


def test_the_list_filters_by_creation_time(alice, garden):
    old = book(garden, owner=alice.user)
    Booking.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    new = book(garden, owner=alice.user)
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert [b["id"] for b in alice.get(BOOKINGS, {"created_after": since}).json()["results"]] == [
        str(new.pk)
    ]
    assert [b["id"] for b in alice.get(BOOKINGS, {"created_before": since}).json()["results"]] == [
        str(old.pk)
    ]
    error = assert_error(alice.get(BOOKINGS, {"created_after": "yesterday"}), 400, "invalid")
    assert list(error["fields"]) == ["created_after"]


# --- detail ---------------------------------------------------------------------------------


def test_detail_shows_the_booking_and_its_step_timeline(alice, garden):
    booking = book(garden, owner=alice.user)
    drive(booking.saga_id)
    body = alice.get(f"{BOOKINGS}{booking.pk}/").json()
    assert set(body) == BOOKING_FIELDS
    assert (body["state"], body["payment_status"], body["reference"]) == (
        "completed",
        "authorized",
        booking.reference,
    )
    assert [(s["name"], s["direction"], s["status"]) for s in body["timeline"]] == [
        ("fraud_check", "action", "succeeded"),
        ("preauthorize", "action", "succeeded"),
        ("confirm", "action", "succeeded"),
        ("send_email", "action", "succeeded"),
    ]
    step = body["timeline"][0]
    assert step["attempt"] == 1 and step["started_at"] and step["finished_at"]
    assert step["duration_ms"] >= 0 and step["error"] == ""


def test_the_timeline_explains_failures_without_internals(alice, garden):
    booking = book(garden, owner=alice.user, token="tok_declined", email="x@fraud.test")
    drive(booking.saga_id)
    body = alice.get(f"{BOOKINGS}{booking.pk}/").json()
    assert (body["state"], body["cancellation_reason"]) == ("cancelled", "fraud_rejected")
    [step] = body["timeline"]
    stored = SagaStep.objects.get(saga_id=booking.saga_id).error
    assert stored and stored not in step["error"]  # the screening's own reason stays inside
    assert step["error"] == "The booking was rejected by fraud screening."
    assert step["error_code"] == "fraud_rejected"


def test_the_timeline_never_promises_a_retry_for_an_attempt_that_gave_up(alice, garden):
    booking = book(garden, owner=alice.user, email="bounce@example.com")
    drive(booking.saga_id)
    body = alice.get(f"{BOOKINGS}{booking.pk}/").json()
    assert body["state"] == "requires_attention"
    emails = [s for s in body["timeline"] if s["name"] == "send_email"]
    assert [s["status"] for s in emails] == ["retrying", "retrying", "failed"]
    assert all("retried automatically" in s["error"] for s in emails[:-1])
    last = emails[-1]["error"]
    assert "retried automatically" not in last and "gave up" in last


def test_another_clients_booking_is_not_found(alice, bob, garden):
    theirs = book(garden, owner=bob.user)
    assert_error(alice.get(f"{BOOKINGS}{theirs.pk}/"), 404, "not_found")


def test_staff_with_the_view_permission_read_any_booking(staff, bob, garden):
    theirs = book(garden, owner=bob.user)
    assert staff.get(f"{BOOKINGS}{theirs.pk}/").json()["reference"] == theirs.reference


def test_a_client_reads_its_own_booking_in_three_queries(alice, garden, django_assert_num_queries):
    # The token, the booking with its resource and saga, the saga's steps: a client polling its
    # booking costs no permission lookup (only another client's booking needs one).
    booking = book(garden, owner=alice.user)
    with django_assert_num_queries(3):
        body = alice.get(f"{BOOKINGS}{booking.pk}/").json()
    assert (body["reference"], len(body["timeline"])) == (booking.reference, 1)


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "%00"])
def test_an_unknown_or_malformed_id_is_a_json_404(alice, bad_id):
    assert_error(alice.get(f"{BOOKINGS}{bad_id}/"), 404, "not_found")


# --- resources ------------------------------------------------------------------------------


def test_resources_lists_the_active_ones(alice):
    ResourceFactory(code="garden-room")
    ResourceFactory(code="closed", active=False)
    assert alice.get("/api/v1/resources/").json() == [
        {
            "code": "garden-room",
            "name": "Garden Room",
            "nightly_price": "100.00",
            "currency": "EUR",
            "timezone": "UTC",  # BOOKING_DEFAULT_TIMEZONE: the test settings' TIME_ZONE
        }
    ]


# --- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", BOOKINGS),
        ("post", BOOKINGS),
        ("get", f"{BOOKINGS}00000000-0000-0000-0000-000000000000/"),
        ("post", f"{BOOKINGS}00000000-0000-0000-0000-000000000000/cancel/"),
        ("get", "/api/v1/resources/"),
    ],
)
def test_anonymous_requests_are_401(db, method, path):
    response = getattr(APIClient(), method)(path)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


def test_a_wrong_token_is_401(db):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token nope")
    assert_error(api.get(BOOKINGS), 401, "not_authenticated")


@pytest.mark.parametrize("key", ["abc\x00def", "x" * 41, "naïve", "a;b", "%00"])
def test_a_token_that_cannot_be_a_key_is_401_without_a_query(db, key, settings):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    with CaptureQueriesContext(connection) as queries:
        assert_error(api.get(BOOKINGS), 401, "not_authenticated")
    assert len(queries) == 0


def test_a_deactivated_clients_token_is_401_and_its_bookings_stay_hidden(alice, garden):
    assert alice.post(BOOKINGS, booking_body(), format="json").status_code == 201
    alice.user.is_active = False
    alice.user.save(update_fields=["is_active"])
    body = assert_error(alice.get(BOOKINGS), 401, "not_authenticated")
    assert "inactive" in body["message"]
    alice.user.is_active = True
    alice.user.save(update_fields=["is_active"])
    assert alice.get(BOOKINGS).json()["count"] == 1


def test_session_clients_must_send_the_csrf_token(db, garden):
    user = UserFactory(username="browser")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.get(BOOKINGS).status_code == 200
    refused = browser.post(BOOKINGS, booking_body(), content_type="application/json")
    assert_error(refused, 403, "permission_denied")
    secret = _get_new_csrf_string()
    browser.cookies["csrftoken"] = secret
    accepted = browser.post(
        BOOKINGS, booking_body(), content_type="application/json", HTTP_X_CSRFTOKEN=secret
    )
    assert accepted.status_code == 201
    assert Booking.objects.get().owner == user


def test_the_schema_and_the_docs_are_public(db):
    schema = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/v1/bookings/{id}/cancel/" in schema.json()["paths"]
    docs = Client().get("/api/v1/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


# --- throttling -----------------------------------------------------------------------------


def test_a_client_over_its_rate_gets_429_with_retry_after_and_others_are_not_affected(
    alice, bob, settings
):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"client": "3/minute", "anonymous": "2/minute"},
    }
    for _ in range(3):
        assert alice.get("/api/v1/resources/").status_code == 200
    response = alice.get("/api/v1/resources/")
    assert_error(response, 429, "throttled")
    assert 0 < int(response["Retry-After"]) <= 60
    assert bob.get("/api/v1/resources/").status_code == 200


def test_anonymous_addresses_are_throttled_on_the_public_endpoints(db, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"client": "3/minute", "anonymous": "2/minute"},
    }
    json = {"HTTP_ACCEPT": "application/vnd.oai.openapi+json"}
    anonymous = APIClient(REMOTE_ADDR="10.0.0.7")
    for _ in range(2):
        assert anonymous.get("/api/v1/schema/", **json).status_code == 200
    assert_error(anonymous.get("/api/v1/schema/", **json), 429, "throttled")
    assert APIClient(REMOTE_ADDR="10.0.0.8").get("/api/v1/schema/", **json).status_code == 200


@pytest.mark.parametrize(
    "value",
    ["0040-07-18T16:16:25+17:04", "0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"],
)
def test_creation_filters_accept_any_iso_8601_offset_and_the_calendars_edges(alice, garden, value):
    book(garden, owner=alice.user)
    assert alice.get(BOOKINGS, {"created_after": value}).status_code == 200
    assert alice.get(BOOKINGS, {"created_before": value}).status_code == 200


def test_a_filter_or_page_given_twice_or_empty_is_a_400(alice, garden):
    assert_error(alice.get(f"{BOOKINGS}?state=completed&state=cancelled"), 400, "invalid")
    assert_error(alice.get(f"{BOOKINGS}?created_after="), 400, "invalid")
    assert_error(alice.get(f"{BOOKINGS}?page=1&page=2"), 400, "invalid")
    assert_error(alice.get(BOOKINGS, {"page_size": "0"}), 400, "invalid")
    assert_error(alice.get(BOOKINGS, {"page": "9" * 5000}), 404, "not_found")
