"""API clients (users with tokens) for the webhooks API tests, as in tests/api/."""

from ..api.conftest import _fresh_throttle_counts, alice, bob, client_for  # noqa: F401
