"""The fraud rules in the admin: the deny list is managed here; the decisions (with the rule and
the reason of each) and the operators' records of what they did at a provider are read-only."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import FraudDenyEntry, FraudScreeningRecord, ProviderResolution


@admin.register(FraudDenyEntry)
class FraudDenyEntryAdmin(admin.ModelAdmin):
    list_display = ("value", "kind", "note", "created_at")
    list_filter = ("kind",)
    search_fields = ("value", "note")
    fields = ("kind", "value", "note")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the product only: visible, never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(FraudScreeningRecord)
class FraudScreeningRecordAdmin(ReadOnlyAdmin):
    list_display = ("reference", "email", "approved", "rule", "reason", "amount", "currency",
                    "created_at")  # fmt: skip
    list_filter = ("approved", "rule")
    search_fields = ("reference", "email", "idempotency_key")
    exclude = ("payment_method_digest",)
    date_hierarchy = "created_at"


@admin.register(ProviderResolution)
class ProviderResolutionAdmin(ReadOnlyAdmin):
    list_display = ("booking", "provider", "action", "reference", "note", "recorded_by",
                    "recorded_at")  # fmt: skip
    list_filter = ("provider", "action")
    search_fields = ("booking__reference", "reference", "note")
