"""A consistency report over bookings, their sagas and the providers' ledgers: the promises of
the product, counted. Used by `manage.py check_consistency` (on-call) and by `make chaos`."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sagas.models import Saga, SagaStep

from .models import Booking, Resource
from .providers.models import (
    EmailRecord,
    FraudScreeningRecord,
    InventoryReservation,
    PaymentAuthorization,
)
from .saga import STEP_NAMES
from .selectors import stuck_condition

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

    PROBLEMS = (
        "stuck",
        "duplicated_effects",
        "orphan_authorizations",
        "orphan_reservations",
        "overbooked_nights",
        "lost_records",
        "disagreements",
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
    with it, no effect happened twice, nothing cancelled still holds money or a room, every
    effect a ledger holds was recorded by an attempt, and no night is overbooked."""
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
    sagas = [str(b.saga_id) for b in rows]
    by_saga = {str(b.saga_id): b for b in rows}

    recorded: set[str] = set()
    succeeded: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for step_saga, key, name, direction, status in SagaStep.objects.filter(
        saga_id__in=sagas
    ).values_list("saga_id", "idempotency_key", "name", "direction", "status"):
        if status != SagaStep.Status.SCHEDULED:
            recorded.add(key)
        if status == SagaStep.Status.SUCCEEDED:
            succeeded[str(step_saga)].add((name, direction))

    def ledger(model: Any) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = defaultdict(list)
        for record in model.objects.filter(idempotency_key__regex=r"^[0-9a-f-]{36}:"):
            owner = record.idempotency_key.split(":", 1)[0]
            if owner in by_saga:
                found[owner].append(record)
        return found

    auths = ledger(PaymentAuthorization)
    reservations = ledger(InventoryReservation)
    emails = ledger(EmailRecord)
    screenings = ledger(FraudScreeningRecord)

    for booking in rows:
        saga_id = str(booking.saga_id)
        report.states[booking.state] += 1
        ref = booking.reference
        if booking.state not in Booking.TERMINAL:
            (report.stuck if booking.pk in stuck_ids else report.in_flight).append(ref)
            continue
        saga = booking.saga
        if saga is None or saga.status != SAGA_STATUS[booking.state]:
            status = saga.status if saga else "missing"
            report.disagreements.append(f"{ref}: {booking.state} but saga {status}")
        live_auths = [a for a in auths[saga_id] if a.status == "authorized"]
        held_rooms = [r for r in reservations[saga_id] if r.status == "reserved"]
        sent = Counter(e.template for e in emails[saga_id] if e.status == "sent")
        if len([a for a in auths[saga_id] if a.status != "declined"]) > 1:
            report.duplicated_effects.append(f"{ref}: {len(auths[saga_id])} authorizations")
        if len([r for r in reservations[saga_id] if r.status != "unavailable"]) > 1:
            report.duplicated_effects.append(f"{ref}: {len(reservations[saga_id])} reservations")
        if any(n > 1 for n in sent.values()):
            report.duplicated_effects.append(f"{ref}: e-mails {dict(sent)}")
        if booking.state == Booking.State.CANCELLED:
            if live_auths:
                report.orphan_authorizations.append(ref)
            if held_rooms:
                report.orphan_reservations.append(ref)
        if booking.state == Booking.State.COMPLETED:
            done = succeeded[saga_id]
            if not {(s, "action") for s in STEP_NAMES} <= done:
                report.disagreements.append(f"{ref}: completed but steps {sorted(done)}")
            if len(live_auths) != 1 or len(held_rooms) != 1:
                report.disagreements.append(f"{ref}: completed without its hold and room")
        for record in [*auths[saga_id], *reservations[saga_id], *emails[saga_id],
                       *screenings[saga_id]]:  # fmt: skip
            if record.idempotency_key not in recorded:
                report.lost_records.append(f"{ref}: {record.idempotency_key}")
    report.overbooked_nights = overbooked_nights()
    return report


def overbooked_nights() -> list[str]:
    """Every (resource, night) holding more reservations than the resource's capacity."""
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
