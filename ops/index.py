"""`/` and `/api/v1/`: indexes of links, so a newcomer who opens the bare address finds the
admin, the API, its docs and the probes instead of a 404."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve, reverse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse as api_reverse
from rest_framework.views import APIView

from bookings.api.exceptions import error_body

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


@csrf_exempt  # it changes nothing, and a client's POST must get its JSON answer, not a CSRF page
def api_fallback(request: HttpRequest) -> HttpResponse:
    """Any /api/v1/ path that no endpoint matched. Missing its trailing slash (`/bookings`):
    308 to the same path with it, which a client repeats with the same method and body (Django's
    APPEND_SLASH would answer a POST with a 301, which clients follow as a GET, or, under DEBUG,
    with an error page). Else the API's JSON 404."""
    if not request.path_info.endswith("/") and _an_endpoint(f"{request.path_info}/", request):
        location = request.get_full_path(force_append_slash=True)  # escaped as it came
        message = f"This address ends with a slash: {location}"
        body = json.dumps(error_body("trailing_slash", message))
        # 308: the client repeats the request there with the same method and body.
        return HttpResponsePermanentRedirect(
            location, preserve_request=True, content=body, content_type="application/json"
        )
    return JsonResponse(error_body("not_found", "No API endpoint at this address."), status=404)


def _an_endpoint(path: str, request: HttpRequest) -> bool:
    try:
        return resolve(path, getattr(request, "urlconf", None)).func is not api_fallback
    except Resolver404:
        return False
