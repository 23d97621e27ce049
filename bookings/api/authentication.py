"""Token authentication with failed attempts throttled per client address."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled

from .throttling import FailedAuthenticationThrottle


class ThrottledTokenAuthentication(TokenAuthentication):
    """DRF's TokenAuthentication, except that an address whose token checks failed too often
    (the "failed_authentication" rate) gets 429 with Retry-After before its token is looked up.
    A request without a `Token` header is not concerned."""

    def authenticate(self, request: Any) -> Any:
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != self.keyword.lower().encode():
            return None
        throttle = FailedAuthenticationThrottle()
        if throttle.exhausted(request):
            raise Throttled(wait=throttle.wait())
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            throttle.record_failure(request)
            raise
