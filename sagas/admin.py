from django.contrib import admin

from .models import Saga, SagaEvent, SagaStep


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

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


@admin.register(Saga)
class SagaAdmin(admin.ModelAdmin):
    list_display = ("id", "saga_type", "target_id", "status", "current_step", "updated_at")
    list_filter = ("status", "saga_type")
    search_fields = ("id", "target_id")
    inlines = (SagaStepInline, SagaEventInline)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
