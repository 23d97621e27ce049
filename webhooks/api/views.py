"""The client's webhook endpoints and its events feed. Views only read input, pick the caller's
own rows (another client's are not found) and call webhooks.services."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from .. import selectors, services
from ..models import Endpoint
from .serializers import (
    EndpointSerializer,
    EndpointWithSecretSerializer,
    EventPageSerializer,
    EventSerializer,
    RotateSecretSerializer,
)

# Every error of the API has one body, `{code, message, fields}` (the API's exception handler);
# its component is declared once, by the bookings API.
ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ERROR, description=description)


FEED_PAGE = 50
UNAUTHENTICATED = _error("No or invalid credentials (Token or session).")
NOT_FOUND = _error("No such endpoint among the caller's (another client's is not found either).")
THROTTLED = _error("Too many requests; retry after `Retry-After` seconds.")
FORBIDDEN = _error("Session request without a valid CSRF token.")
INVALID = _error("Invalid input: a message per field (a forbidden URL, an unknown event type).")


def _invalid(exc: services.WebhookError) -> ValidationError:
    return ValidationError(exc.fields or {"non_field_errors": [exc.message]})


class OwnEndpointsMixin(generics.GenericAPIView):
    def get_queryset(self) -> QuerySet[Endpoint]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Endpoint.objects.none()
        return selectors.endpoints_of(self.request.user)

    def get_object(self) -> Endpoint:
        try:
            pk = uuid.UUID(self.kwargs["pk"])
        except ValueError:
            raise Http404
        return generics.get_object_or_404(self.get_queryset(), pk=pk)


class EndpointListCreateView(OwnEndpointsMixin, generics.ListAPIView):
    serializer_class = EndpointSerializer

    @extend_schema(
        summary="List webhook endpoints",
        description="The caller's endpoints, oldest first.",
        responses={
            200: EndpointSerializer(many=True),
            400: _error("The page or the page size is not a positive whole number."),
            401: UNAUTHENTICATED,
            404: _error("The page does not exist."),
            429: THROTTLED,
        },
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create a webhook endpoint",
        description="Events of the chosen types are POSTed to the URL, signed per the Standard "
        "Webhooks specification with the `secret` of the answer, which is shown only now. "
        "See docs/webhooks.md.",
        request=EndpointSerializer,
        responses={
            201: EndpointWithSecretSerializer,
            400: INVALID,
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            415: _error("The body is not JSON."),
            429: THROTTLED,
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = EndpointSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            endpoint = services.endpoint_create(
                owner=request.user,
                url=data["url"],
                event_types=data.get("event_types", []),
                description=data.get("description", ""),
            )
        except services.WebhookError as exc:
            raise _invalid(exc)
        if data.get("enabled") is False:
            endpoint = services.endpoint_update(endpoint=endpoint, enabled=False)
        return Response(EndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointDetailView(OwnEndpointsMixin, generics.RetrieveUpdateDestroyAPIView):
    serializer_class = EndpointSerializer
    http_method_names = ["get", "patch", "delete", "head", "options"]

    @extend_schema(
        summary="One webhook endpoint",
        responses={200: EndpointSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND, 429: THROTTLED},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Change a webhook endpoint",
        description="Change its URL, event types or description; `enabled: false` disables it, "
        "`enabled: true` enables it again (and clears its failure record).",
        request=EndpointSerializer,
        responses={
            200: EndpointSerializer,
            400: INVALID,
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            404: NOT_FOUND,
            415: _error("The body is not JSON."),
            429: THROTTLED,
        },
    )
    def patch(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        endpoint = self.get_object()
        serializer = EndpointSerializer(endpoint, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            endpoint = services.endpoint_update(endpoint=endpoint, **serializer.validated_data)
        except services.WebhookError as exc:
            raise _invalid(exc)
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(
        summary="Delete a webhook endpoint",
        description="Nothing more is sent to it; its events stay in the events feed.",
        responses={
            204: None,
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            404: NOT_FOUND,
            429: THROTTLED,
        },
    )
    def delete(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.endpoint_delete(endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointRotateSecretView(OwnEndpointsMixin, generics.GenericAPIView):
    serializer_class = RotateSecretSerializer

    @extend_schema(
        summary="Rotate an endpoint's secret",
        description="A new secret, shown only now. For `overlap_seconds` (default a day) every "
        "message carries two signatures, one per secret, so receivers can switch over without "
        "losing a message.",
        request=RotateSecretSerializer,
        responses={
            200: EndpointWithSecretSerializer,
            400: INVALID,
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            404: NOT_FOUND,
            415: _error("The body is not JSON."),
            429: THROTTLED,
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        endpoint = self.get_object()
        serializer = RotateSecretSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = services.endpoint_rotate_secret(
            endpoint=endpoint, overlap_seconds=serializer.validated_data["overlap_seconds"]
        )
        return Response(EndpointWithSecretSerializer(endpoint).data)


class EventFeedView(generics.GenericAPIView):
    serializer_class = EventSerializer
    pagination_class = None

    @extend_schema(
        summary="Events feed",
        description="The caller's events, oldest first: every event its webhooks carry (whether "
        "or not an endpoint is set up), so a client that was down can catch up. Read on from "
        "`next` (or pass the last id seen as `after`); when `next` is null there is nothing "
        "more yet. Events appear a few seconds after they happen.",
        parameters=[
            OpenApiParameter(
                "after",
                OpenApiTypes.UUID,
                description="The id of the last event already read; left out: from the start.",
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 100},
                description=f"Events per page, 1 to 100 (default {FEED_PAGE}).",
            ),
        ],
        responses={
            200: EventPageSerializer,
            400: _error("`after` is not an event id, or `limit` is out of range."),
            401: UNAUTHENTICATED,
            429: THROTTLED,
        },
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        after, limit = self._cursor(request)
        events = list(selectors.feed(request.user, after=after)[: limit + 1])
        more = len(events) > limit
        events = events[:limit]
        body: dict[str, Any] = {"results": [services.represent(e) for e in events], "next": None}
        if more:
            body["next"] = request.build_absolute_uri(
                f"{request.path}?after={events[-1].id}&limit={limit}"
            )
        return Response(body)

    @staticmethod
    def _cursor(request: Request) -> tuple[uuid.UUID | None, int]:
        errors: dict[str, list[str]] = {}
        after = None
        for name, values in request.query_params.lists():
            if len(values) > 1:
                errors[name] = ["Given more than once."]
        raw_after = request.query_params.get("after")
        if raw_after is not None:
            try:
                after = uuid.UUID(raw_after)
            except ValueError:
                errors["after"] = ["Give the id of an event (a UUID)."]
        raw_limit = request.query_params.get("limit", str(FEED_PAGE))
        if not (raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit[:4]) <= 100):
            errors["limit"] = ["Give a whole number from 1 to 100."]
        if errors:
            raise ValidationError(errors)
        return after, int(raw_limit)
