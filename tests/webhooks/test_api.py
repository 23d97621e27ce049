"""/api/v1/webhook-endpoints/ and /api/v1/events/: a client manages its own endpoints, sees its
secret once, reads its own events in order; another client's are not found."""

from __future__ import annotations

import json
import uuid

import pytest

from webhooks.models import Endpoint, Event

from ..helpers import book

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:8599/hook"
LIST = "/api/v1/webhook-endpoints/"


def create(api, **body) -> dict:
    response = api.post(LIST, {"url": URL, **body}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_client_creates_an_endpoint_and_sees_its_secret_once(alice):
    body = create(alice, event_types=["booking.completed"], description="orders")
    assert body["secret"].startswith("whsec_")
    assert body["event_types"] == ["booking.completed"] and body["enabled"] is True
    endpoint = Endpoint.objects.get()
    assert endpoint.owner == alice.user and endpoint.secret == body["secret"]
    listed = alice.get(LIST).json()["results"]
    assert [e["id"] for e in listed] == [body["id"]] and "secret" not in listed[0]
    assert "secret" not in alice.get(f"{LIST}{body['id']}/").json()


def test_an_endpoint_is_updated_disabled_enabled_and_deleted(alice):
    body = create(alice)
    url = f"{LIST}{body['id']}/"
    changed = alice.patch(url, {"enabled": False, "description": "paused"}, format="json")
    assert changed.status_code == 200
    assert changed.json()["enabled"] is False
    assert changed.json()["disabled_reason"] == "disabled by its owner"
    again = alice.patch(url, {"enabled": True, "event_types": []}, format="json").json()
    assert again["enabled"] is True and again["disabled_reason"] == ""
    assert alice.delete(url).status_code == 204
    assert not Endpoint.objects.exists()
    assert alice.get(url).status_code == 404


@pytest.mark.parametrize(
    "body,field",
    [
        ({"url": "http://10.0.0.1/hook"}, "url"),
        ({"url": "http://169.254.169.254/latest"}, "url"),
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": URL, "event_types": ["booking.exploded"]}, "event_types"),
        ({"url": URL, "event_types": "booking.created"}, "event_types"),
    ],
)
def test_invalid_endpoints_are_refused_with_a_message_per_field(alice, settings, body, field):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    response = alice.post(LIST, body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid" and field in response.json()["fields"]
    assert not Endpoint.objects.exists()


def test_a_patch_to_a_forbidden_url_is_refused_and_changes_nothing(alice):
    body = create(alice)
    response = alice.patch(f"{LIST}{body['id']}/", {"url": "http://192.168.0.1/x"}, format="json")
    assert response.status_code == 400 and "private" in response.json()["fields"]["url"][0]
    assert Endpoint.objects.get().url == URL


def test_rotating_the_secret_shows_the_new_one_once_and_keeps_the_old_for_the_overlap(alice):
    body = create(alice)
    rotated = alice.post(
        f"{LIST}{body['id']}/rotate-secret/", {"overlap_seconds": 600}, format="json"
    )
    assert rotated.status_code == 200
    endpoint = Endpoint.objects.get()
    assert rotated.json()["secret"] == endpoint.secret != body["secret"]
    assert endpoint.previous_secret == body["secret"]
    bad = alice.post(f"{LIST}{body['id']}/rotate-secret/", {"overlap_seconds": -1}, format="json")
    assert bad.status_code == 400 and "overlap_seconds" in bad.json()["fields"]


def test_another_clients_endpoints_and_events_are_invisible(alice, bob, resource):
    body = create(alice)
    url = f"{LIST}{body['id']}/"
    assert bob.get(LIST).json()["results"] == []
    assert bob.get(url).status_code == 404
    assert bob.patch(url, {"description": "mine"}, format="json").status_code == 404
    assert bob.post(f"{url}rotate-secret/", {}, format="json").status_code == 404
    assert bob.delete(url).status_code == 404
    assert bob.get(f"{LIST}not-a-uuid/").status_code == 404
    endpoint = Endpoint.objects.get()
    assert endpoint.description == "" and endpoint.secret == body["secret"]

    book(resource, owner=alice.user)
    assert bob.get("/api/v1/events/").json() == {"results": [], "next": None}
    assert len(alice.get("/api/v1/events/").json()["results"]) == 1


def test_the_events_feed_pages_through_the_callers_events_in_order(alice, resource):
    bookings = [book(resource, owner=alice.user, email=f"g{i}@example.com") for i in range(5)]
    ids = list(Event.objects.order_by("id").values_list("id", flat=True))
    first = alice.get("/api/v1/events/?limit=2").json()
    assert [e["id"] for e in first["results"]] == [str(i) for i in ids[:2]]
    assert first["results"][0]["type"] == "booking.created"
    assert first["results"][0]["subject"] == str(bookings[0].pk)
    assert first["results"][0]["data"]["reference"] == bookings[0].reference
    second = alice.get(first["next"]).json()
    assert [e["id"] for e in second["results"]] == [str(i) for i in ids[2:4]]
    last = alice.get(second["next"]).json()
    assert [e["id"] for e in last["results"]] == [str(ids[4])] and last["next"] is None
    assert alice.get(f"/api/v1/events/?after={ids[4]}").json()["results"] == []


def test_the_feed_holds_back_events_younger_than_the_settle_time(alice, resource, settings):
    settings.WEBHOOK_FEED_SETTLE = 60
    book(resource, owner=alice.user)
    assert alice.get("/api/v1/events/").json()["results"] == []


@pytest.mark.parametrize(
    "query",
    ["after=nope", "limit=0", "limit=101", "limit=x", "limit=1&limit=2", f"after={'9' * 5000}"],
)
def test_a_bad_feed_query_is_a_400(alice, query):
    response = alice.get(f"/api/v1/events/?{query}")
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_the_feed_after_an_unknown_id_is_empty_not_an_error(alice):
    assert alice.get(f"/api/v1/events/?after={uuid.uuid4()}").status_code == 200


@pytest.mark.parametrize("value", [0.0, 1, "yes", "false", None])
def test_enabled_must_be_a_json_boolean_and_nothing_is_created_otherwise(alice, value):
    answer = alice.post(LIST, {"url": "https://hooks.example.com/in", "enabled": value},
                        format="json")  # fmt: skip
    assert answer.status_code == 400, answer.content
    assert "enabled" in json.dumps(answer.json())
    assert not Endpoint.objects.exists()
