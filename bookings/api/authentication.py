"""Token authentication with failed attempts throttled per client address."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.translation import gettext as _
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled

from config import queries

from .throttling import FailedAuthenticationThrottle

# What a key can be (DRF's are 40 hex digits, its column at most 40 characters).
KEY = re.compile(r"[A-Za-z0-9]{1,40}")


def _user_of_token(token_model: Any) -> str:
    """The WHERE of the user lookup by token key, from the models' metadata (the user model's
    primary key and the token table), for queries.select()."""
    user, token = get_user_model()._meta, token_model._meta
    quote = connection.ops.quote_name
    assert token.pk is not None and user.pk is not None
    return (
        f"{{{user.pk.name}}} = (SELECT {quote(token.get_field('user').column)}"  # noqa: S608  # nosec B608
        f" FROM {quote(token.db_table)} WHERE {quote(token.pk.column)} = %s)"
    )


class ThrottledTokenAuthentication(TokenAuthentication):
    """DRF's TokenAuthentication, except that an address whose token checks failed too often
    (the "failed_authentication" rate) gets 429 with Retry-After before its token is looked up.
    A request without a `Token` header is not concerned.

    The token's user is read by one SELECT written from the models' metadata
    (config/queries.py) rather than DRF's `Token.objects.select_related("user").get(key=key)`,
    whose compiling cost 0.25 ms of the 0.45 ms lookup (docs/performance.md); `request.auth` is
    then the token's key."""

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

    def authenticate_credentials(self, key: str) -> tuple[Any, str]:
        if not KEY.fullmatch(key):  # never a key (a NUL byte would fail in PostgreSQL: a 500)
            raise AuthenticationFailed(_("Invalid token."))
        where = _user_of_token(self.get_model())
        user = next(iter(queries.select(get_user_model(), where, [key])), None)
        if user is None:
            raise AuthenticationFailed(_("Invalid token."))
        if not user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        return user, key
