"""Clients of the API: each one a user with a token, as a website or an app would be."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from ..factories import ResourceFactory, UserFactory


@pytest.fixture(autouse=True)
def _fresh_throttle_counts() -> Iterator[None]:
    # Throttle counters live in the cache, which outlives a test's database transaction.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def client_for(db) -> Callable[..., APIClient]:
    def make(user: Any = None, **user_fields: Any) -> APIClient:
        user = user or UserFactory(**user_fields)
        token, _ = Token.objects.get_or_create(user=user)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        api.user = user
        return api

    return make


@pytest.fixture
def alice(client_for) -> APIClient:
    return client_for(username="alice")


@pytest.fixture
def bob(client_for) -> APIClient:
    return client_for(username="bob")


@pytest.fixture
def staff(client_for) -> APIClient:
    user = UserFactory(username="operator", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_booking"))
    return client_for(user)


@pytest.fixture
def garden(db) -> Any:
    return ResourceFactory(code="garden-room", capacity=3)
