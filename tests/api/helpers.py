"""Request bodies and the error shape every API error must have."""

from __future__ import annotations

from typing import Any

from ..factories import stay


def booking_body(resource: str = "garden-room", **overrides: Any) -> dict[str, Any]:
    check_in, check_out = stay(10, 2)
    return {
        "resource": resource,
        "check_in": check_in.isoformat(),
        "check_out": check_out.isoformat(),
        "guest_name": "Grace Hopper",
        "guest_email": "grace@example.com",
        "payment_token": "tok_visa",
        **overrides,
    }


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is an error of the API's one format, with this status and code."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"code", "message", "fields"}, body
    assert body["code"] == code, body
    assert body["message"] and "Traceback" not in body["message"]
    return body
