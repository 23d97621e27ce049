"""A consistency report over bookings, their sagas and the providers: the promises of the
product, counted. Used by `manage.py check_consistency` (on-call) and by `make chaos`.

The providers are asked through their contract's lookups (by the idempotency key each step
sent), so the same check runs against the sandbox, Stripe or any other implementation. What an
operator recorded doing at a provider by hand (ProviderResolution) is honoured: a booking
resolved as cancelled whose authorization was voided in the gateway's dashboard is not an orphan,
even while the gateway's lookup still shows the hold."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sagas.errors import StepError
from sagas.models import Saga, SagaStep

from .models import Booking, Resource
from .providers.models import InventoryReservation, ProviderResolution
from .saga import BOOKING_SAGA, STEP_NAMES
from .selectors import provider_effect, stuck_condition

SAGA_STATUS = {
    Booking.State.COMPLETED: Saga.Status.COMPLETED,
    Booking.State.CANCELLED: Saga.Status.COMPENSATED,
    Booking.State.REQUIRES_ATTENTION: Saga.Status.REQUIRES_ATTENTION,
}


@dataclass
class ConsistencyReport:
    bookings: int = 0
    states: Counter[str] = field(default_factory=Counter)
    stuck: list[str] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)
    duplicated_effects: list[str] = field(default_factory=list)
    orphan_authorizations: list[str] = field(default_factory=list)
    orphan_reservations: list[str] = field(default_factory=list)
    overbooked_nights: list[str] = field(default_factory=list)
    lost_records: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    # Bookings whose providers could not be asked (down, rate limited): not verified.
    unverified: list[str] = field(default_factory=list)

    PROBLEMS = (
        "stuck",
        "duplicated_effects",
        "orphan_authorizations",
        "orphan_reservations",
        "overbooked_nights",
        "lost_records",
        "disagreements",
        "unverified",
    )

    @property
    def ok(self) -> bool:
        return not any(getattr(self, name) for name in self.PROBLEMS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bookings": self.bookings,
            "states": dict(self.states),
            "in_flight": self.in_flight,
            **{name: getattr(self, name) for name in self.PROBLEMS},
            "ok": self.ok,
        }


def consistency_report(*, booking_ids: list[Any] | None = None) -> ConsistencyReport:
    """Check every booking (or the given ones): it ended (or is still moving), its saga agrees
    with it and with what the providers hold under its keys, nothing cancelled still holds
    money or a room (unless an operator answered for it), every effect a provider holds was
    recorded by an attempt, and no night of the product's own inventory is overbooked. Costs
    one provider lookup per step of each settled booking."""
    report = ConsistencyReport()
    bookings = Booking.objects.select_related("saga")
    if booking_ids is not None:
        bookings = bookings.filter(pk__in=booking_ids)
    rows = list(bookings)
    report.bookings = len(rows)
    # The one definition of stuck (sagas.recovery): a booking waiting for a retry is in flight,
    # not stuck.
    stuck_ids = set(
        Booking.objects.filter(pk__in=[b.pk for b in rows])
        .filter(stuck_condition())
        .values_list("pk", flat=True)
    )

    recorded: set[str] = set()
    succeeded: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for step_saga, key, name, direction, status in SagaStep.objects.filter(
        saga_id__in=[b.saga_id for b in rows]
    ).values_list("saga_id", "idempotency_key", "name", "direction", "status"):
        if status != SagaStep.Status.SCHEDULED:
            recorded.add(key)
        if status == SagaStep.Status.SUCCEEDED:
            succeeded[str(step_saga)].add((name, direction))
    answered: dict[Any, set[str]] = defaultdict(set)
    for booking_id, provider in ProviderResolution.objects.filter(
        booking__in=[b.pk for b in rows]
    ).values_list("booking_id", "provider"):
        answered[booking_id].add(provider)

    for booking in rows:
        report.states[booking.state] += 1
        ref = booking.reference
        if booking.state not in Booking.TERMINAL:
            (report.stuck if booking.pk in stuck_ids else report.in_flight).append(ref)
            continue
        saga = booking.saga
        if saga is None or saga.status != SAGA_STATUS[booking.state]:
            status = saga.status if saga else "missing"
            report.disagreements.append(f"{ref}: {booking.state} but saga {status}")
        try:
            effects = provider_effects(str(booking.saga_id))
        except StepError as exc:
            report.unverified.append(f"{ref}: {exc.message}")
            continue
        auth, room = effects["preauthorize:action"], effects["confirm:action"]
        live_auth = auth is not None and auth.status == "authorized"
        held_room = room is not None and room.status == "reserved"
        results = saga.results if saga else {}
        for step in ("preauthorize", "confirm"):
            found = effects[f"{step}:action"]
            mine = (results or {}).get(step, {}).get(BOOKING_SAGA.step(step).meta["reference"])
            if found is not None and mine and found.reference != mine:
                report.duplicated_effects.append(
                    f"{ref}: {step} recorded {mine} but the provider holds {found.reference}"
                )
        if booking.state == Booking.State.CANCELLED:
            if live_auth and "payments" not in answered[booking.pk]:
                report.orphan_authorizations.append(ref)
            if held_room and "inventory" not in answered[booking.pk]:
                report.orphan_reservations.append(ref)
        if booking.state == Booking.State.COMPLETED:
            done = succeeded[str(booking.saga_id)]
            if not {(s, "action") for s in STEP_NAMES} <= done:
                report.disagreements.append(f"{ref}: completed but steps {sorted(done)}")
            if not (live_auth and held_room):
                report.disagreements.append(f"{ref}: completed without its hold and room")
        for key, effect in effects.items():
            full_key = f"{booking.saga_id}:{key}"
            if effect is not None and full_key not in recorded:
                report.lost_records.append(f"{ref}: {full_key}")
    report.overbooked_nights = overbooked_nights()
    return report


# The effects looked up per booking: each step's action, and the cancellation e-mail (the only
# compensation that makes an effect of its own under its own key).
LOOKED_UP = (
    ("fraud_check", SagaStep.Direction.ACTION),
    ("preauthorize", SagaStep.Direction.ACTION),
    ("confirm", SagaStep.Direction.ACTION),
    ("send_email", SagaStep.Direction.ACTION),
    ("send_email", SagaStep.Direction.COMPENSATION),
)


def provider_effects(saga_id: str) -> dict[str, Any]:
    """What the providers hold under each of the saga's keys, keyed "<step>:<direction>"."""
    return {
        f"{step}:{direction}": provider_effect(step, f"{saga_id}:{step}:{direction}")
        for step, direction in LOOKED_UP
    }


def overbooked_nights() -> list[str]:
    """Every (resource, night) of the product's own inventory holding more reservations than the
    resource's capacity."""
    per_night: Counter[tuple[int, date]] = Counter()
    for resource_id, check_in, check_out in InventoryReservation.objects.filter(
        status=InventoryReservation.Status.RESERVED
    ).values_list("resource_id", "check_in", "check_out"):
        for n in range((check_out - check_in).days):
            per_night[(resource_id, check_in + timedelta(days=n))] += 1
    capacity = dict(Resource.objects.values_list("id", "capacity"))
    return [
        f"resource {rid} on {night}: {count} > {capacity[rid]}"
        for (rid, night), count in sorted(per_night.items())
        if count > capacity[rid]
    ]
