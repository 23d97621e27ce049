"""Operators' view of webhooks: endpoints (failing ones first), events, deliveries with every
attempt, and redelivery of one or many deliveries (its own permission, a reason, recorded in a
Notice and in Django's admin log). Secrets are never shown."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils.safestring import SafeString

from . import selectors, services
from .models import Attempt, Delivery, Endpoint, Event, Notice


def events_table(subject_id: str) -> SafeString:
    """A subject's events and their deliveries, for the subject's own admin page."""
    return render_to_string(
        "admin/webhooks/events_table.html", {"events": selectors.events_of_subject(subject_id)}
    )


class FailingFilter(admin.SimpleListFilter):
    title = "health"
    parameter_name = "failing"

    def lookups(self, request, model_admin):
        return [("yes", "Failing"), ("disabled", "Disabled")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(failing_since__isnull=False)
        if self.value() == "disabled":
            return queryset.filter(enabled=False)
        return queryset


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = (
        "url",
        "owner",
        "enabled",
        "failing_since",
        "consecutive_failures",
        "circuit_open_until",
        "created_at",
    )
    list_filter = (FailingFilter, "enabled")
    search_fields = ("url", "owner__username", "=id")
    ordering = ("failing_since", "-created_at")
    exclude = ("secret", "previous_secret")
    readonly_fields = (
        "owner",
        "failing_since",
        "consecutive_failures",
        "circuit_open_until",
        "disabled_at",
        "previous_secret_expires_at",
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a client creates its endpoints (and gets its secret) through the API


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    fields = (
        "number",
        "status",
        "started_at",
        "duration_ms",
        "response_status",
        "response_body",
        "error",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RedeliverForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        max_length=500,
        help_text="Why: kept with your name in the webhooks notices and the admin log.",
    )


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "event_type",
        "subject",
        "endpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "last_response_status",
        "last_error",
    )
    list_filter = ("status", ("endpoint", admin.RelatedOnlyFieldListFilter), "event__type")
    search_fields = ("=event__subject_id", "=event__id")
    search_help_text = "The booking's id (the event's subject) or the event's id."
    list_select_related = ("event", "endpoint")
    inlines = [AttemptInline]
    actions = ["redeliver_selected"]
    readonly_fields = [f.name for f in Delivery._meta.fields]
    show_full_result_count = False

    @admin.display(description="type", ordering="event__type")
    def event_type(self, obj: Delivery) -> str:
        return obj.event.type

    @admin.display(description="subject")
    def subject(self, obj: Delivery) -> str:
        return obj.event.subject_id

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("webhooks.redeliver_delivery")

    @admin.action(description="Redeliver now (same webhook-id)", permissions=["redeliver"])
    def redeliver_selected(
        self, request: HttpRequest, queryset: QuerySet[Delivery]
    ) -> HttpResponse | None:
        """Ask for a reason on a page that lists the deliveries; then send them again."""
        deliveries = list(queryset.select_related("event", "endpoint").order_by("id"))
        form = RedeliverForm(request.POST if request.POST.get("post") else None)
        if request.POST.get("post") and form.is_valid():
            reason = form.cleaned_data["reason"]
            actor = request.user.get_username()
            count = services.redeliver(deliveries=deliveries, actor=actor, reason=reason)
            for delivery in deliveries:
                self.log_change(request, delivery, f"Redelivered. Reason: {reason}")
            self.message_user(request, f"{count} deliveries sent again.", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Redeliver {len(deliveries)} deliveries",
            "deliveries": deliveries,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/webhooks/redeliver.html", context)


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ("endpoint", "status", "attempts", "next_attempt_at", "last_response_status")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("id", "type", "subject_id", "sequence", "owner", "created_at")
    list_filter = ("type",)
    search_fields = ("=subject_id", "=id")
    readonly_fields = [f.name for f in Event._meta.fields]
    inlines = [DeliveryInline]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Notice)
class NoticeAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "endpoint", "actor", "message")
    list_filter = ("kind",)
    readonly_fields = [f.name for f in Notice._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
