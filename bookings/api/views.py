"""The client API's views. They only validate input, pick the bookings the caller may see, and
call the booking services (the same the admin and the commands call)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework import generics, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from bookings import services
from bookings.models import Booking, Resource
from ops.unavailable import is_unavailable
from sagas.models import SagaStep

from . import idempotency, prefer
from .filters import BookingFilter
from .serializers import (
    BookingCancelSerializer,
    BookingCreateSerializer,
    BookingSerializer,
    ErrorSerializer,
    ResourceSerializer,
)

SEE_ALL_PERMISSION = "bookings.view_booking"


def represented_bookings() -> QuerySet[Booking]:
    """Bookings with what their representation needs, fetched in two queries."""
    return Booking.objects.select_related("resource", "saga").prefetch_related(
        Prefetch("saga__steps", queryset=SagaStep.objects.order_by("id"))
    )


def visible_bookings(user: Any) -> QuerySet[Booking]:
    """The bookings `user` may see: its own, or all of them with bookings.view_booking. Newest
    first, with what the representation needs fetched in two queries (and the permission's)."""
    qs = represented_bookings()
    if not user.has_perm(SEE_ALL_PERMISSION):
        qs = qs.filter(owner=user)
    return qs.order_by("-created_at", "-id")


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


UNAUTHENTICATED = _error("No or invalid credentials (Token or session).")
FORBIDDEN = _error("Session request without a valid CSRF token, or not allowed.")
NOT_FOUND = _error("No such booking among the caller's (another client's is not found either).")
THROTTLED = OpenApiResponse(
    ErrorSerializer,
    description="Too many requests; retry after `Retry-After` seconds.",
)
PREFER = OpenApiParameter(
    "Prefer",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="RFC 7240. `wait=<seconds>` (at most 20): answer when the booking is completed, "
    "cancelled or requires_attention, or when the time is up, whichever comes first. The "
    "answer then carries `Preference-Applied: wait=<seconds>`. When too many requests of the "
    "server are waiting already, the preference is ignored: the answer comes at once, without "
    "`Preference-Applied`.",
)


def _response_header(name: str, codes: list[int], description: str) -> OpenApiParameter:
    return OpenApiParameter(
        name, OpenApiTypes.STR, OpenApiParameter.HEADER, description=description, response=codes
    )


RETRY_AFTER = _response_header("Retry-After", [429], "Seconds to wait before trying again.")
WWW_AUTHENTICATE = _response_header("WWW-Authenticate", [401], "`Token`: how to authenticate.")
PREFERENCE_APPLIED = _response_header(
    "Preference-Applied", [201, 202], "`wait=<seconds>` when a `Prefer: wait` was honoured."
)
COMMON_HEADERS = [RETRY_AFTER, WWW_AUTHENTICATE]


def _with_wait(request: Request, booking_id: Any) -> dict[str, str]:
    """Honour `Prefer: wait` (outside any transaction) when a wait slot of this process is free;
    the response headers it calls for (none when the preference was not applied)."""
    seconds = prefer.requested_wait(request.headers.get("Prefer"))
    if seconds is None:
        return {}
    with prefer.wait_slot() as granted:
        if not granted or not prefer.wait_until_settled(booking_id, seconds):
            return {}
    return {"Preference-Applied": f"wait={seconds}"}


class VisibleBookingsMixin(generics.GenericAPIView):
    def get_queryset(self) -> QuerySet[Booking]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Booking.objects.none()
        return visible_bookings(self.request.user)

    def get_object(self) -> Booking:
        """The booking the URL names, if the caller may see it. The caller's own is looked up
        first, with no permission to read (two queries fewer for a client following its own
        booking); another client's is found only with bookings.view_booking."""
        lookup = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        own = represented_bookings().filter(owner_id=self.request.user.pk)
        try:
            booking = generics.get_object_or_404(own, **{self.lookup_field: lookup})
        except Http404:
            return super().get_object()
        self.check_object_permissions(self.request, booking)
        return booking


class BookingListCreateView(VisibleBookingsMixin, generics.ListAPIView):
    serializer_class = BookingSerializer
    filterset_class = BookingFilter

    @extend_schema(
        summary="List bookings",
        description="The caller's bookings (all of them with the `bookings.view_booking` "
        "permission), newest first.",
        parameters=COMMON_HEADERS,
        responses={
            200: BookingSerializer(many=True),
            400: _error("A filter value is invalid."),
            401: UNAUTHENTICATED,
            404: _error("The page does not exist."),
            429: THROTTLED,
        },
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The visible bookings, filtered and paginated."""
        # django-filter would silently use the last of repeated values and ignore empty ones;
        # a client that sends either has made a mistake it should hear about.
        errors = {}
        for name, values in request.query_params.lists():
            if len(values) > 1:
                errors[name] = ["Given more than once."]
            elif name in BookingFilter.base_filters and not values[0]:
                errors[name] = ["Give a value or leave the parameter out."]
        if errors:
            raise ValidationError(errors)
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create a booking",
        description="Creates the booking and starts its saga, then answers at once (poll the "
        "booking) or, with `Prefer: wait`, when it settles. With an `Idempotency-Key`, a retry "
        "with the same body returns the first answer (header `Idempotent-Replayed: true`) and "
        "creates nothing; a body that fails validation is not stored.",
        request=BookingCreateSerializer,
        parameters=[
            OpenApiParameter(
                idempotency.HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Any unique string of 1 to 255 visible ASCII characters (a UUID). "
                "Kept for 24 hours per client.",
                pattern=r"^[\x21-\x7e]{1,255}$",
            ),
            PREFER,
            PREFERENCE_APPLIED,
            _response_header("Location", [201], "The booking's URL."),
            _response_header(
                "Idempotent-Replayed", [201], "`true` when this is a stored first answer."
            ),
            *COMMON_HEADERS,
        ],
        responses={
            201: OpenApiResponse(BookingSerializer, description="Created (or replayed)."),
            400: _error("Invalid input: a message per field, or malformed JSON."),
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            413: _error("The body is too large."),
            415: _error("The body is not JSON."),
            422: _error("The Idempotency-Key was used with a different body."),
            429: THROTTLED,
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create a booking through booking_create, at most once per Idempotency-Key."""
        key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
        serializer = BookingCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        def create(
            also: Callable[[Booking, dict[str, Any]], list[Any]] | None = None,
        ) -> tuple[int, dict[str, Any], Booking]:
            answer: dict[str, Any] = {}

            def shown(booking: Booking, represented: dict[str, Any]) -> list[Any]:
                # The booking as it is written (its booking.created event's data): the answer,
                # with no read-back and no second rendering.
                answer.update(represented)
                return also(booking, represented) if also else []

            booking = services.booking_create(
                resource_code=data["resource"],
                check_in=data["check_in"],
                check_out=data["check_out"],
                guest_name=data["guest_name"],
                guest_email=data["guest_email"],
                payment_token=data["payment_token"],
                owner=request.user,
                also=shown,
            )
            return status.HTTP_201_CREATED, answer, booking

        if key is None:
            code, body, booking = create()
            result = idempotency.Result(code, body, booking.pk, replayed=False)
        else:
            result = idempotency.create_once(
                owner=request.user,
                key=key,
                request_fingerprint=idempotency.fingerprint(request.data),
                create=create,
                represent=self._represent,
            )
        headers = {"Location": f"{request.path}{result.booking_id}/"}
        if result.replayed:
            headers["Idempotent-Replayed"] = "true"
            return Response(result.body, status=result.status, headers=headers)
        body = result.body
        waited = _with_wait(request, result.booking_id)
        if waited:
            try:
                body = self._represent(result.booking_id)
                if key is not None:
                    idempotency.update_response(owner=request.user, key=key, body=body)
            except Exception as exc:
                # The booking is committed: a 503 now would invite a retry that, without an
                # Idempotency-Key, books twice. Answer with it as it was created.
                if not is_unavailable(exc):
                    raise
            else:
                headers.update(waited)
        return Response(body, status=result.status, headers=headers)

    def _represent(self, booking_id: Any) -> dict[str, Any]:
        # The caller's own booking, just created by it: visible to it, no permission to look up.
        return BookingSerializer(represented_bookings().get(pk=booking_id)).data


class BookingDetailView(VisibleBookingsMixin, generics.RetrieveAPIView):
    serializer_class = BookingSerializer

    @extend_schema(
        summary="One booking",
        description="State, payment status and the timeline of its saga's attempts.",
        parameters=COMMON_HEADERS,
        responses={200: BookingSerializer, 401: UNAUTHENTICATED, 404: NOT_FOUND, 429: THROTTLED},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class BookingCancelView(VisibleBookingsMixin, generics.GenericAPIView):
    serializer_class = BookingCancelSerializer

    @extend_schema(
        summary="Cancel a booking",
        description="Accepted (202) when the booking can be cancelled: a saga in flight turns "
        "back at the next step boundary (`cancel_requested_at` is set), a completed booking is "
        "undone at once (`state` is `compensating`). Either way it ends `cancelled` with "
        "`customer_cancelled`. With `Prefer: wait` the answer comes when it has settled.",
        request=BookingCancelSerializer,
        parameters=[PREFER, PREFERENCE_APPLIED, *COMMON_HEADERS],
        responses={
            202: OpenApiResponse(BookingSerializer, description="Cancellation accepted."),
            400: _error("Invalid body."),
            401: UNAUTHENTICATED,
            403: _error(
                "Not the booking's owner (staff see all bookings but cancel in the "
                "admin), or a session request without a CSRF token."
            ),
            404: NOT_FOUND,
            409: _error(
                "Nothing is left to cancel: the booking is cancelled already, its cancellation "
                "is under way, or it is being undone and waits for an operator."
            ),
            415: _error("The body is not JSON."),
            429: THROTTLED,
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Ask booking_cancel to turn the booking's saga back (a customer cancellation)."""
        booking = self.get_object()
        if booking.owner_id != request.user.pk:
            # Staff may read every booking here, but a cancel through the client API is the
            # customer's own; operators compensate in the admin, with a reason.
            raise PermissionDenied("Only the booking's owner can cancel it through this API.")
        serializer = BookingCancelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.booking_cancel(
            booking=booking,
            actor=f"api:{request.user.get_username()}",
            reason=serializer.validated_data.get("reason", ""),
        )
        headers = _with_wait(request, booking.pk)
        fresh = self.get_queryset().get(pk=booking.pk)
        return Response(
            BookingSerializer(fresh).data, status=status.HTTP_202_ACCEPTED, headers=headers
        )


class ResourceListView(generics.ListAPIView):
    serializer_class = ResourceSerializer
    queryset = Resource.objects.filter(active=True).order_by("code")
    pagination_class = None
    filter_backends: list = []

    @extend_schema(
        summary="Bookable resources",
        parameters=COMMON_HEADERS,
        responses={200: ResourceSerializer(many=True), 401: UNAUTHENTICATED, 429: THROTTLED},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class JsonErrors:
    """For the views whose pages are not JSON (the schema's YAML, the docs' HTML): their errors
    (throttled, not acceptable, method not allowed) answer in the API's JSON error format, like
    every other endpoint's, not rendered by the page's own renderer. DRF renders a response with
    `request.accepted_renderer`, as its own handler of uncaught errors sets it."""

    def handle_exception(self, exc: Exception) -> Response:
        response: Response = super().handle_exception(exc)  # type: ignore[misc]
        request = self.request  # type: ignore[attr-defined]
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type
        return response


class SchemaView(JsonErrors, SpectacularAPIView):
    pass


class SwaggerView(JsonErrors, SpectacularSwaggerView):
    pass


class RedocView(JsonErrors, SpectacularRedocView):
    pass
