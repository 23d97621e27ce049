"""The operator console: bookings list, booking page with its saga timeline, operator actions
(per booking and in bulk), FSM transition buttons and the operations dashboard.

Every change an operator makes goes through bookings.services (the same code the API and the
commands call), which takes the saga and booking locks, re-checks the state the operator saw
(`expected_state`) and writes the SagaEvent audit row; this module adds Django's admin LogEntry.
Booking fields are never edited by hand here.

Every page that shows or changes one booking asks for the booking's view permission and the
action's own permission; an action or transition name the console does not offer is a 404.
django-fsm-2's FSMAdminMixin is not used: its transition view checks no admin permission, and
its hooks for filtering the buttons and routing a transition through a service are private."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from sagas import admin as sagas_admin
from webhooks import admin as webhooks_admin

from . import selectors, services, state_diagram
from .errors import ApplicationError
from .models import Booking, Resource

State = Booking.State


@admin.register(Resource)
class ResourceAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "capacity", "nightly_price", "currency", "timezone", "active")


# --- operator actions --------------------------------------------------------------------------


def _available(booking: Booking) -> set[str]:
    """Names of the FSM transitions whose source and conditions match the booking now."""
    return {t.name for t in booking.get_available_state_transitions()}


@dataclass(frozen=True)
class OperatorAction:
    """One thing an operator can do to a booking: which permission it needs, when the FSM
    allows it, what it will do, and the service that does it."""

    name: str
    label: str
    permission: str  # codename in Booking.Meta.permissions
    explanation: str
    applies: Callable[[Booking], bool]
    run: Callable[..., Any]

    @property
    def perm(self) -> str:
        return f"bookings.{self.permission}"


def _retry(booking: Booking, **kwargs: Any) -> str:
    return services.booking_retry(booking=booking, **kwargs)


def _compensate(booking: Booking, **kwargs: Any) -> str:
    outcome = services.booking_compensate(booking=booking, **kwargs)
    if outcome == "requested":
        return "compensation requested: it starts when the step in flight finishes"
    return "compensation started: completed steps are being undone, latest first"


def _resolve(outcome: str) -> Callable[..., str]:
    def run(booking: Booking, **kwargs: Any) -> str:
        services.booking_resolve(booking=booking, outcome=outcome, **kwargs)
        return f"resolved by hand as {outcome}"

    return run


OPERATOR_ACTIONS: dict[str, OperatorAction] = {
    action.name: action
    for action in (
        OperatorAction(
            name="retry",
            label="Retry step",
            permission="retry_booking",
            explanation=(
                "The failed step (or compensation) runs again with a fresh retry budget; a "
                "stuck step's message is sent again now. Its idempotency key does not change, "
                "so a provider call that was already made is replayed, not repeated."
            ),
            applies=lambda b: (
                b.state in Booking.IN_FLIGHT
                or bool(_available(b) & {"resume", "resume_compensation"})
            ),
            run=_retry,
        ),
        OperatorAction(
            name="compensate",
            label="Compensate now",
            permission="compensate_booking",
            explanation=(
                "Every completed step is undone, latest first (cancellation e-mail, room "
                "release, payment void). A step in flight finishes first and is undone too. "
                "The booking ends cancelled (operator_cancelled)."
            ),
            # A booking parked while compensating is already going backwards: retry it instead.
            applies=lambda b: (
                "begin_compensation" in _available(b)
                and not (b.state == State.REQUIRES_ATTENTION and b.cancellation_reason)
            ),
            run=_compensate,
        ),
        OperatorAction(
            name="resolve_completed",
            label="Resolve as completed",
            permission="resolve_booking",
            explanation=(
                "Marks the booking completed by hand, calling no provider: for when you fixed "
                "things outside the system (for example sent the confirmation yourself)."
            ),
            applies=lambda b: "resolve_completed" in _available(b),
            run=_resolve("completed"),
        ),
        OperatorAction(
            name="resolve_cancelled",
            label="Resolve as cancelled",
            permission="resolve_booking",
            explanation=(
                "Marks the booking cancelled by hand, calling no provider: for when you voided "
                "the hold and released the room yourself."
            ),
            applies=lambda b: "resolve_cancelled" in _available(b),
            run=_resolve("cancelled"),
        ),
    )
}

# FSM transitions offered as transition buttons on the booking page, and the operator action
# each one runs (through its service, never the bare transition). The other transitions belong
# to the saga engine: fired by hand they would move the booking without its saga (no
# compensation scheduled, no step run), so they are neither shown nor reachable.
FSM_ROUTES = {"begin_compensation": "compensate"}


class OperatorActionForm(forms.ModelForm):
    """The reason an operator must give, and the state the operator saw (sent back so that the
    service can refuse if the booking moved meanwhile). A ModelForm for the booking it is about
    (the compensation plan is read from it); it saves no field."""

    action_name = ""
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        help_text="Required. Recorded in the saga history and the admin log with your name.",
    )
    expected_state = forms.CharField(widget=forms.HiddenInput)

    class Meta:
        model = Booking
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["expected_state"].initial = self.instance.state
        self.action = OPERATOR_ACTIONS[self.action_name]
        # What the compensation would undo, shown before the operator confirms.
        self.plan = (
            selectors.compensation_plan(self.instance)
            if self.action.name == "compensate" and self.instance.saga_id
            else []
        )
        if self.action.name == "resolve_cancelled" and self.instance.saga_id:
            pending = services.provider_undos_pending(self.instance)
            self.fields["done_at_provider"] = forms.CharField(
                required=False,
                max_length=500,
                label="Done at the provider",
                help_text=(
                    "Not undone by the system: "
                    + ("; ".join(f"{u['provider']} {u['reference']}" for u in pending) or "none")
                    + ". Say what you did there (e.g. voided by hand in the gateway's dashboard, "
                    "ref ...): recorded with your name, honoured by check_consistency."
                ),
            )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Give a reason.")
        return reason


FORMS = {
    name: type(f"{name.title().replace('_', '')}Form", (OperatorActionForm,), {"action_name": name})
    for name in OPERATOR_ACTIONS
}


class BulkReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        help_text="Required. Recorded for each booking with your name.",
    )


# --- list filters --------------------------------------------------------------------------


class StuckFilter(admin.SimpleListFilter):
    title = "stuck"
    parameter_name = "stuck"

    def lookups(self, request, model_admin):
        return (("yes", "Stuck (lease ran out or nothing scheduled)"), ("no", "Not stuck"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(selectors.stuck_condition())
        if self.value() == "no":
            return queryset.exclude(selectors.stuck_condition())
        return queryset


class AttentionFilter(admin.SimpleListFilter):
    title = "requires attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return (("yes", "Requires attention"), ("no", "Does not"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(state=State.REQUIRES_ATTENTION)
        if self.value() == "no":
            return queryset.exclude(state=State.REQUIRES_ATTENTION)
        return queryset


def state_badge(state: str, stuck: bool = False) -> str:
    badge = format_html('<span class="state-badge state-{}">{}</span>', state, state)
    if stuck:
        badge += format_html(' <span class="state-badge state-stuck">{}</span>', "stuck")
    return mark_safe(badge)  # noqa: S308  (both parts built by format_html)


# --- the booking admin ---------------------------------------------------------------------


@admin.register(Booking)
class BookingAdmin(admin.ModelAdmin):
    change_form_template = "admin/bookings/booking/change_form.html"
    operate_template = "admin/bookings/booking/operate.html"

    list_display = (
        "reference",
        "state_display",
        "time_in_state",
        "failing_step",
        "resource_code",
        "check_in",
        "guest",
        "created",
    )
    list_display_links = ("reference",)
    list_filter = (
        "state",
        StuckFilter,
        AttentionFilter,
        ("created_at", admin.DateFieldListFilter),
        "resource",
    )
    search_fields = ("^reference", "guest_email", "=authorization_ref", "=reservation_ref")
    search_help_text = "Reference (start), guest e-mail, authorization or reservation reference."
    list_per_page = 100
    # The admin's second count (of all rows, to show "N total") is skipped: one query less on
    # a table of any size.
    show_full_result_count = False
    actions = (
        "retry_selected",
        "compensate_selected",
        "resolve_completed_selected",
        "resolve_cancelled_selected",
    )
    fieldsets = (
        (
            "Booking",
            {
                "fields": (
                    "reference",
                    "state_display",
                    "time_in_state",
                    "cancellation_reason",
                    "attention_reason",
                    "resource",
                    ("check_in", "check_out"),
                    ("guest_name", "guest_email"),
                    ("amount", "currency"),
                    "owner",
                )
            },
        ),
        (
            "Saga and providers",
            {
                "fields": (
                    "saga_link",
                    "fraud_decision",
                    ("payment_status", "authorization_ref"),
                    ("room_status", "reservation_ref"),
                    ("confirmation_sent_at", "cancellation_sent_at"),
                )
            },
        ),
        ("Times", {"fields": ("state_changed_at", "created_at", "updated_at")}),
        ("Webhook events", {"fields": ("webhook_events",)}),
    )
    readonly_fields = (
        *[f.name for f in Booking._meta.fields if f.name != "payment_token"],
        "state_display",
        "time_in_state",
        "saga_link",
        "webhook_events",
    )

    def get_queryset(self, request: HttpRequest):
        return selectors.booking_list()

    @admin.display(description="Events and their deliveries")
    def webhook_events(self, obj: Booking) -> str:
        return webhooks_admin.events_table(str(obj.pk))

    # Bookings change only through the services (actions below); never by saving the form,
    # which would also overwrite what a worker wrote meanwhile.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("bookings.retry_booking")

    def has_compensate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("bookings.compensate_booking")

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("bookings.resolve_booking")

    # --- columns ---

    @admin.display(description="state", ordering="state")
    def state_display(self, obj: Booking) -> str:
        return state_badge(obj.state, getattr(obj, "is_stuck", False))

    @admin.display(description="in state for", ordering="state_changed_at")
    def time_in_state(self, obj: Booking) -> str:
        # The largest unit only ("2 hours", not "2 hours, 13 minutes"): one short line.
        return timesince(obj.state_changed_at, timezone.now(), depth=1)

    @admin.display(description="failing step")
    def failing_step(self, obj: Booking) -> str:
        # A completed booking may have needed retries on its way; they are history, not a fault.
        name = getattr(obj, "failing_step", None)
        if not name or obj.state == State.COMPLETED:
            return "-"
        where = name if obj.failing_direction == "action" else f"{name} (undo)"
        text = f"{where}: {obj.failing_error or ''}"
        # One line in the list (the style sheet cuts it with an ellipsis); all of it on hover.
        return format_html('<span class="failing-step" title="{}">{}</span>', text, text)

    # Short columns keep the list readable at 1280 px (one line per booking); the long text
    # stays one hover away, in the title.
    @admin.display(description="resource", ordering="resource__code")
    def resource_code(self, obj: Booking) -> str:
        return format_html(
            '<span class="resource-code" title="{}">{}</span>', obj.resource.name, obj.resource.code
        )

    @admin.display(description="guest e-mail", ordering="guest_email")
    def guest(self, obj: Booking) -> str:
        return format_html(
            '<span class="guest-email" title="{}">{}</span>', obj.guest_email, obj.guest_email
        )

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Booking) -> str:
        # The list's short form of the admin's one format (config/formats): no seconds.
        return formats.date_format(timezone.localtime(obj.created_at), "SHORT_DATETIME_FORMAT")

    @admin.display(description="saga")
    def saga_link(self, obj: Booking) -> str:
        if not obj.saga_id:
            return "-"
        url = reverse("admin:sagas_saga_change", args=[obj.saga_id])
        return format_html('<a href="{}">{}</a>', url, obj.saga_id)

    # --- transition buttons ---

    def transition_buttons(self, request: HttpRequest, booking: Booking) -> list[dict[str, str]]:
        """The FSM transitions this operator may fire on this booking now: those the FSM allows
        from its state, under its conditions, for this user (django-fsm-2's public
        get_available_user_<field>_transitions), that the console routes to an operator action
        the operator holds the permission for and that applies to the booking."""
        buttons = []
        for transition in booking.get_available_user_state_transitions(request.user):
            action_name = FSM_ROUTES.get(transition.name)
            if action_name is None:
                continue
            action = OPERATOR_ACTIONS[action_name]
            if self._offered(request, booking, action):
                buttons.append(
                    {
                        "name": transition.name,
                        "label": action.label,
                        "help": action.explanation,
                        "url": reverse(
                            "admin:bookings_booking_transition", args=[booking.pk, transition.name]
                        ),
                    }
                )
        return buttons

    # --- running an action ---

    def _offered(self, request: HttpRequest, booking: Booking, action: OperatorAction) -> bool:
        return request.user.has_perm(action.perm) and action.applies(booking)

    def _perform(
        self,
        request: HttpRequest,
        booking: Booking,
        action: OperatorAction,
        reason: str,
        expected_state: str,
        **details: str,
    ) -> bool:
        """Run one action on one booking through its service; message the operator and write
        the admin log. Returns whether it was done."""
        if not request.user.has_perm(action.perm):
            raise PermissionDenied(f"You may not {action.label.lower()}.")
        actor = request.user.get_username()
        try:
            outcome = action.run(
                booking, actor=actor, reason=reason, expected_state=expected_state, **details
            )
        except ApplicationError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
            return False
        self.log_change(
            request,
            booking,
            f"{action.label} by {actor} (was {expected_state}): {outcome}. Reason: {reason}",
        )
        self.message_user(request, f"{booking.reference}: {outcome}.", level=messages.SUCCESS)
        return True

    def operate_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        """One booking, one action: a page that says what will happen (for a compensation, the
        plan: keys and provider references) and asks for a reason. It needs the booking's view
        permission and the action's own; an unknown action or booking is a 404."""
        operator_action = OPERATOR_ACTIONS.get(action)
        if operator_action is None:
            raise Http404(f"No operator action {action!r}.")
        booking = self.get_object(request, object_id)
        if booking is None:
            raise Http404("No such booking.")
        if not self.has_view_permission(request, booking):
            raise PermissionDenied
        if not request.user.has_perm(operator_action.perm):
            raise PermissionDenied
        form = FORMS[action](request.POST or None, instance=booking)
        if request.method == "POST" and form.is_valid():
            self._perform(
                request,
                booking,
                operator_action,
                form.cleaned_data["reason"],
                form.cleaned_data["expected_state"],
                **{k: v for k, v in form.cleaned_data.items() if k == "done_at_provider" and v},
            )
            return HttpResponseRedirect(reverse("admin:bookings_booking_change", args=[booking.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": booking,
            "transition": {
                "label": operator_action.label,
                "help_text": operator_action.explanation,
            },
            "transition_form": form,
            "title": f"{operator_action.label}: {booking.reference}",
        }
        return TemplateResponse(request, self.operate_template, context)

    def transition_view(
        self, request: HttpRequest, object_id: str, transition_name: str
    ) -> HttpResponse:
        """A transition button: the operator action the transition is routed to, with the same
        permissions. A transition the console does not offer (the engine's own, or a name that
        is no transition at all) is a 404."""
        action = FSM_ROUTES.get(transition_name)
        if action is None:
            raise Http404(f"No transition {transition_name!r} is fired from the admin.")
        return self.operate_view(request, object_id, action)

    # --- bulk actions ---

    def _bulk(self, request: HttpRequest, queryset, action_name: str) -> HttpResponse | None:
        """Ask for a reason on a page that says how many bookings and what will happen; then
        run the action on each, passing the state each booking had on that page."""
        action = OPERATOR_ACTIONS[action_name]
        bookings = list(queryset.order_by("created_at"))
        form = BulkReasonForm(request.POST if request.POST.get("post") else None)
        if request.POST.get("post") and form.is_valid():
            done = refused = 0
            for booking in bookings:
                expected = request.POST.get(f"expected_state_{booking.pk}", booking.state)
                if self._perform(request, booking, action, form.cleaned_data["reason"], expected):
                    done += 1
                else:
                    refused += 1
            level = messages.SUCCESS if not refused else messages.WARNING
            self.message_user(
                request, f"{action.label}: {done} done, {refused} refused.", level=level
            )
            return None
        rows = [
            {
                "booking": b,
                "applies": action.applies(b),
                "plan": selectors.compensation_plan(b) if action_name == "compensate" else [],
            }
            for b in bookings
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{action.label}: {len(bookings)} booking(s)",
            "action": action,
            "action_name": f"{action_name}_selected",
            "rows": rows,
            "count": len(bookings),
            "applicable": sum(1 for r in rows if r["applies"]),
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/bookings/booking/operate_bulk.html", context)

    @admin.action(description="Retry the failed or stuck step", permissions=["retry"])
    def retry_selected(self, request, queryset):
        return self._bulk(request, queryset, "retry")

    @admin.action(
        description="Compensate now (undo every completed step)", permissions=["compensate"]
    )
    def compensate_selected(self, request, queryset):
        return self._bulk(request, queryset, "compensate")

    @admin.action(description="Resolve by hand as completed", permissions=["resolve"])
    def resolve_completed_selected(self, request, queryset):
        return self._bulk(request, queryset, "resolve_completed")

    @admin.action(description="Resolve by hand as cancelled", permissions=["resolve"])
    def resolve_cancelled_selected(self, request, queryset):
        return self._bulk(request, queryset, "resolve_cancelled")

    # --- pages ---

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("dashboard/", wrap(self.dashboard_view), name="bookings_booking_dashboard"),
            path(
                "<path:object_id>/operate/<str:action>/",
                wrap(self.operate_view),
                name="bookings_booking_operate",
            ),
            path(
                "<path:object_id>/transition/<str:transition_name>/",
                wrap(self.transition_view),
                name="bookings_booking_transition",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        booking = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if booking is not None:
            extra.update(
                timeline=selectors.booking_timeline(booking),
                events=selectors.booking_events(booking),
                admin_log=selectors.booking_admin_log(booking),
                operator_actions=[
                    {
                        "label": action.label,
                        "name": name,
                        "help": action.explanation,
                        "url": reverse("admin:bookings_booking_operate", args=[booking.pk, name]),
                    }
                    for name, action in OPERATOR_ACTIONS.items()
                    if name not in FSM_ROUTES.values() and self._offered(request, booking, action)
                ],
                transition_buttons=self.transition_buttons(request, booking),
            )
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """Counts per state, the state diagram with those counts, the oldest stuck bookings,
        the bookings waiting for an operator and the recent failures by step and error."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        counts = selectors.state_counts()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Operations dashboard",
            "counts": [
                {"state": state, "count": n, "badge": state_badge(state)}
                for state, n in counts.items()
            ],
            "total": sum(counts.values()),
            "diagram": mark_safe(state_diagram.to_svg(counts)),  # noqa: S308  (escaped inside)
            "stuck": selectors.oldest_stuck(10),
            "attention": selectors.needing_attention(20),
            "failures": selectors.recent_failures(),
        }
        return TemplateResponse(request, "admin/bookings/booking/dashboard.html", context)


# The saga admin is generic; it links a booking saga to its booking through this hook.
sagas_admin.register_target(
    "booking",
    url=lambda target_id: reverse("admin:bookings_booking_change", args=[target_id]),
    search=lambda term: [
        str(pk)
        for pk in Booking.objects.filter(reference__iexact=term).values_list("pk", flat=True)
    ],
)
