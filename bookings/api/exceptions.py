"""One error format for the whole API: `{"code": ..., "message": ..., "fields": {...}}`.

DRF's own exceptions (validation, authentication, throttling, parsing...) keep their status and
headers (`WWW-Authenticate`, `Retry-After`); the application's ApplicationError keeps the status
its service chose; a database, cache or broker that is down or saturated gives 503 with
`Retry-After` (ops/unavailable.py); anything else becomes a 500 with the same shape and no
traceback."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from bookings.errors import ApplicationError
from ops.unavailable import is_unavailable, retry_after

log = logging.getLogger(__name__)

# DRF's default codes, renamed where the default says less than it could.
CODES = {
    "not_found": "not_found",
    "authentication_failed": "not_authenticated",
    "not_authenticated": "not_authenticated",
    "permission_denied": "permission_denied",
    "throttled": "throttled",
    "parse_error": "malformed_request",
    "method_not_allowed": "method_not_allowed",
    "not_acceptable": "not_acceptable",
    "unsupported_media_type": "unsupported_media_type",
    "invalid": "invalid",
}


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "fields": fields or {}}


def _flatten(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _flatten(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in _flatten(value)]
    return [str(detail)]


def _fields(detail: Any) -> dict[str, list[str]]:
    """A serializer's errors as {field: [messages]}; nested errors are flattened into their
    top-level field, non-field errors (a body that is not an object) go under `non_field_errors`."""
    if isinstance(detail, dict):
        return {str(name): _flatten(value) for name, value in detail.items()}
    return {"non_field_errors": _flatten(detail)}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """The REST_FRAMEWORK EXCEPTION_HANDLER: every error the API answers goes through here."""
    if isinstance(exc, ApplicationError):
        fields = {k: _flatten(v) for k, v in exc.extra.items()}
        return Response(error_body(exc.code, exc.message, fields), status=exc.status)
    if is_unavailable(exc):
        # Temporary, and nothing was half done (each write is one transaction): come back later.
        log.warning("service unavailable in %s: %r", type(context.get("view")).__name__, exc)
        return Response(
            error_body(
                "service_unavailable",
                "The service is temporarily unavailable; retry after the time in Retry-After.",
            ),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": retry_after()},
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("request_too_large", "The request body is too large."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, SuspiciousOperation):
        return Response(
            error_body("malformed_request", "The request was rejected as malformed."),
            status=status.HTTP_400_BAD_REQUEST,
        )

    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        # A bug of ours, never the client's input: log it for us, tell the client nothing more.
        log.exception("unhandled error in %s", type(context.get("view")).__name__, exc_info=exc)
        return Response(
            error_body("server_error", "Something went wrong on our side; try again later."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body("invalid", "Invalid input.", _fields(exc.detail))
        return response
    codes = exc.get_codes()
    code = CODES.get(codes, "error") if isinstance(codes, str) else "error"
    response.data = error_body(code, " ".join(_flatten(exc.detail)))
    return response
