"""Per-client and per-address throttles, counted in the default cache (Redis in production, so
every web process shares the counts). Rates come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
at request time rather than at import, so a deployment (or a test) can change them."""

from __future__ import annotations

from typing import cast

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class ClientRateThrottle(UserRateThrottle):
    """Requests per authenticated client (user id); anonymous requests are left to the next."""

    scope = "client"

    def get_rate(self) -> str | None:
        return cast(str | None, api_settings.DEFAULT_THROTTLE_RATES.get(self.scope))

    def get_cache_key(self, request, view) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class AnonymousRateThrottle(AnonRateThrottle):
    """Requests per anonymous client address (the schema and the docs are public)."""

    scope = "anonymous"

    def get_rate(self) -> str | None:
        return cast(str | None, api_settings.DEFAULT_THROTTLE_RATES.get(self.scope))
