"""`/` and `/api/v1/`: indexes of links, so a newcomer who opens the bare address finds the
admin, the API, its docs and the probes instead of a 404."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse as api_reverse
from rest_framework.views import APIView

# (label, URL name, what it is), in the order a newcomer needs them.
HOME_LINKS = [
    ("Admin", "admin:index", "the operator console: bookings, their sagas, transitions"),
    ("Operations dashboard", "admin:bookings_booking_dashboard", "bookings per state, stuck ones"),
    ("Client API", "api-root", "the API's endpoints (JSON)"),
    ("API docs (Swagger UI)", "api-docs", "try the API in the browser"),
    ("API docs (Redoc)", "api-redoc", "the same reference, one page"),
    ("OpenAPI schema", "api-schema", "for client generators"),
    ("Health", "health", "database, caches, broker, workers, circuit breakers"),
    ("Health of this web node", "health-web", "what a load balancer probes"),
    ("Metrics", "metrics", "Prometheus text format"),
]

# The API root's entries: key, URL name. Collections only; detail URLs follow from their ids.
API_LINKS = [
    ("bookings", "api-bookings"),
    ("resources", "api-resources"),
    ("webhook-endpoints", "api-webhook-endpoints"),
    ("events", "api-events"),
    ("schema", "api-schema"),
    ("docs", "api-docs"),
    ("redoc", "api-redoc"),
]


def home(request: HttpRequest) -> HttpResponse:
    """The site's front page: links only, nothing that needs a login or a database."""
    links = [(label, reverse(name), what) for label, name, what in HOME_LINKS]
    return render(request, "index.html", {"links": links})


class ApiRootView(APIView):
    """GET /api/v1/: the API's endpoints by name, absolute URLs like DRF's browsable root. Public:
    it reveals nothing the schema does not, and each endpoint still asks for its token."""

    permission_classes = [AllowAny]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return Response({key: api_reverse(name, request=request) for key, name in API_LINKS})
