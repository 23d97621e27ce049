"""/api/v1/: included from config/urls.py."""

from django.urls import path

from . import views

urlpatterns = [
    path("bookings/", views.BookingListCreateView.as_view(), name="api-bookings"),
    # <str:pk>, not <uuid:pk>: a malformed id must be the API's JSON 404, not Django's HTML one
    path("bookings/<str:pk>/", views.BookingDetailView.as_view(), name="api-booking"),
    path("bookings/<str:pk>/cancel/", views.BookingCancelView.as_view(), name="api-booking-cancel"),
    path("resources/", views.ResourceListView.as_view(), name="api-resources"),
    path("schema/", views.SchemaView.as_view(), name="api-schema"),
    path("docs/", views.SwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path(
        "redoc/",
        views.RedocView.as_view(url_name="api-schema", template_name="api/redoc.html"),
        name="api-redoc",
    ),
]
