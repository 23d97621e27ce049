"""/api/v1/ webhook endpoints and the events feed: included from config/urls.py."""

from django.urls import path

from . import views

urlpatterns = [
    path(
        "webhook-endpoints/", views.EndpointListCreateView.as_view(), name="api-webhook-endpoints"
    ),
    # <str:pk>: a malformed id is the API's JSON 404, not Django's HTML one
    path(
        "webhook-endpoints/<str:pk>/",
        views.EndpointDetailView.as_view(),
        name="api-webhook-endpoint",
    ),
    path(
        "webhook-endpoints/<str:pk>/rotate-secret/",
        views.EndpointRotateSecretView.as_view(),
        name="api-webhook-endpoint-rotate",
    ),
    path("events/", views.EventFeedView.as_view(), name="api-events"),
]
