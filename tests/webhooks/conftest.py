"""API clients (users with tokens) for the webhooks API tests, as in tests/api/ (the run's
webhooks queue is deleted at the end by tests/conftest.py, with the sagas' queue)."""

from ..api.conftest import _fresh_throttle_counts, alice, bob, client_for  # noqa: F401
