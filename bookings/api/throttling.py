"""Per-client and per-address throttles, and failed authentications per address, counted in the
default cache (Redis in production, so every web process shares the counts). Rates come from
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] at request time rather than at import, so a deployment
(or a test) can change them."""

from __future__ import annotations

from typing import cast

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle


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


class FailedAuthenticationThrottle(SimpleRateThrottle):
    """Failed authentications per client address (REST_FRAMEWORK["NUM_PROXIES"] says which
    address). Authentication runs before DRF's throttles, so a flood of invalid tokens would
    otherwise cost a database lookup each and never be refused; ThrottledTokenAuthentication
    asks this throttle first and counts each failure here."""

    scope = "failed_authentication"

    def get_rate(self) -> str | None:
        return cast(str | None, api_settings.DEFAULT_THROTTLE_RATES.get(self.scope))

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def exhausted(self, request) -> bool:
        """Whether this address has failed as often as the rate allows within its window; counts
        nothing. Without a rate for the scope, never."""
        num_requests, duration = self.parse_rate(self.rate)
        if num_requests is None or duration is None:
            return False
        self.key = self.get_cache_key(request, None)
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - duration:
            self.history.pop()
        return len(self.history) >= num_requests

    def record_failure(self, request) -> None:
        """Count one failed authentication from this address."""
        if self.rate is None:
            return
        self.exhausted(request)  # loads this address's recent failures
        self.throttle_success()  # DRF's name for "record this request in the window"
