"""Read-only admin for sagas, their attempts and their audit trail. The engine is generic, so
the application that owns a saga type links its sagas to their target (a booking) through
register_target(): sagas never imports the application."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from .models import Saga, SagaEvent, SagaStep


@dataclass(frozen=True)
class Target:
    url: Callable[[str], str]  # target id -> admin URL of the target
    search: Callable[[str], Iterable[str]]  # search term -> target ids it matches


TARGETS: dict[str, Target] = {}


def register_target(
    saga_type: str, *, url: Callable[[str], str], search: Callable[[str], Iterable[str]]
) -> None:
    """Let the saga admin link sagas of `saga_type` to their target, and find them by it."""
    TARGETS[saga_type] = Target(url=url, search=search)


def target_link(saga_type: str, target_id: str, label: str | None = None) -> str:
    target = TARGETS.get(saga_type)
    if target is None:
        return target_id
    return format_html('<a href="{}">{}</a>', target.url(target_id), label or target_id)


if TYPE_CHECKING:
    _SearchBase = admin.ModelAdmin
else:  # a mixin at run time; typed as what it is mixed into
    _SearchBase = object


class _TargetSearch(_SearchBase):
    """Search also by whatever identifies a target (a booking reference)."""

    target_path = "target_id"
    type_path = "saga_type"

    def get_search_results(self, request, queryset, search_term):
        queryset, distinct = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            for saga_type, target in TARGETS.items():
                ids = list(target.search(term))
                if ids:
                    queryset |= self.model.objects.filter(
                        **{self.type_path: saga_type, f"{self.target_path}__in": ids}
                    )
        return queryset, distinct


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class SagaStepInline(ReadOnlyInline):
    model = SagaStep
    fields = (
        "name",
        "direction",
        "round",
        "attempt",
        "status",
        "error_code",
        "error",
        "scheduled_for",
        "started_at",
        "finished_at",
        "dispatch_count",
        "idempotency_key",
        "task_id",
        "worker",
    )
    readonly_fields = fields


class SagaEventInline(ReadOnlyInline):
    model = SagaEvent
    fields = ("created_at", "kind", "actor", "reason", "data")
    readonly_fields = fields
    show_change_link = False


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Saga)
class SagaAdmin(_TargetSearch, ReadOnlyAdmin):
    list_display = ("id", "target", "saga_type", "status", "current_step", "updated_at")
    list_filter = ("status", "saga_type")
    search_fields = ("=id", "=target_id")
    search_help_text = "Saga id, target id or booking reference."
    readonly_fields = (
        "id",
        "target",
        "saga_type",
        "status",
        "direction",
        "current_step",
        "reason",
        "last_error",
        "cancel_requested_at",
        "cancel_reason",
        "payload",
        "results",
        "created_at",
        "updated_at",
        "finished_at",
    )
    fields = readonly_fields
    inlines = (SagaStepInline, SagaEventInline)

    @admin.display(description="target")
    def target(self, obj: Saga) -> str:
        return target_link(obj.saga_type, obj.target_id, f"{obj.saga_type} {obj.target_id}")


@admin.register(SagaStep)
class SagaStepAdmin(_TargetSearch, ReadOnlyAdmin):
    list_display = (
        "id",
        "saga_link",
        "target",
        "name",
        "direction",
        "round",
        "attempt",
        "status",
        "error_code",
        "dispatch_count",
        "scheduled_for",
        "finished_at",
    )
    list_filter = ("status", "direction", "name")
    list_select_related = ("saga",)
    search_fields = ("=idempotency_key", "=task_id", "=saga__id", "error_code")
    search_help_text = "Idempotency key, task id, saga id, error code or booking reference."
    target_path = "saga__target_id"
    type_path = "saga__saga_type"
    readonly_fields = (
        "id",
        "saga_link",
        "target",
        "name",
        "index",
        "direction",
        "round",
        "attempt",
        "status",
        "idempotency_key",
        "request",
        "response",
        "error_code",
        "error",
        "scheduled_for",
        "lease_expires_at",
        "dispatch_count",
        "started_at",
        "finished_at",
        "task_id",
        "worker",
        "created_at",
    )
    fields = readonly_fields

    @admin.display(description="saga")
    def saga_link(self, obj: SagaStep) -> str:
        url = reverse("admin:sagas_saga_change", args=[obj.saga_id])
        return format_html('<a href="{}">{}</a>', url, obj.saga_id)

    @admin.display(description="target")
    def target(self, obj: SagaStep) -> str:
        return target_link(obj.saga.saga_type, obj.saga.target_id, obj.saga.saga_type)
