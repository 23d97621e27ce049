from django.contrib import admin
from django.urls import include, path, re_path

from ops.health import WEB_CHECKS, HealthView
from ops.index import ApiRootView, api_fallback, home
from ops.metrics import metrics_view

# A database or cache that is down while a middleware reads it (the session) gives 503, not 500.
handler500 = "ops.unavailable.server_error"

urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
    path("api/v1/", ApiRootView.as_view(), name="api-root"),
    path("api/v1/", include("bookings.api.urls")),
    path("api/v1/", include("webhooks.api.urls")),
    # Any other /api/v1/ path: a JSON answer (308 to the path with its trailing slash, or 404).
    re_path(r"^api/v1(?:/[\s\S]*)?$", api_fallback),  # any character, a newline too
    # Probes and scraping: expose them on the internal network only (docs/production.md).
    path("health/", HealthView.as_view(), name="health"),
    path("health/web/", HealthView.as_view(checks=WEB_CHECKS), name="health-web"),
    path("metrics", metrics_view, name="metrics"),
]
