"""Nesting depth is bounded by the parser, not by the interpreter's recursion limit: the same body
gets the same answer on Python 3.11, 3.12 and 3.13 (3.13's json module parses 5,000 levels)."""

from __future__ import annotations

import pytest

from bookings.api.parsers import MAX_DEPTH, depth_exceeds
from bookings.models import Booking

from .helpers import assert_error

pytestmark = pytest.mark.django_db

BOOKINGS = "/api/v1/bookings/"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500])
def test_a_body_deeper_than_the_bound_is_malformed_on_every_python(alice, garden, depth):
    body = "[" * depth + "]" * depth
    response = alice.post(BOOKINGS, body, content_type="application/json")
    error = assert_error(response, 400, "malformed_request")
    assert "nested too deeply" in error["message"]
    assert not Booking.objects.exists()


def test_depth_counts_lists_and_objects_alike():
    assert not depth_exceeds({"a": [1, {"b": "c"}]}, 3)
    assert depth_exceeds({"a": [1, {"b": ["c"]}]}, 3)
    assert not depth_exceeds("scalar", 0)
    assert depth_exceeds([[]], 1)
