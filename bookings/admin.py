from django.contrib import admin

from sagas.admin import SagaEventInline, SagaStepInline  # noqa: F401  (re-used by the console)

from .models import Booking, Resource


@admin.register(Resource)
class ResourceAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "capacity", "nightly_price", "currency", "active")


@admin.register(Booking)
class BookingAdmin(admin.ModelAdmin):
    list_display = (
        "reference",
        "state",
        "cancellation_reason",
        "resource",
        "check_in",
        "check_out",
        "guest_email",
        "payment_status",
        "created_at",
    )
    list_filter = ("state", "cancellation_reason", "resource", "created_at")
    search_fields = ("reference", "guest_email", "authorization_ref", "reservation_ref")
    list_select_related = ("resource",)
    readonly_fields = [f.name for f in Booking._meta.fields]
    exclude = ("payment_token",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
