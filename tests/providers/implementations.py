"""Every provider implementation the product ships, per kind, with what the contract suite needs
to drive it: a way to build it, inputs it approves or declines, and (where it speaks over a
network) a way to lose a response or take the provider down.

Adding an implementation means adding a harness to IMPLEMENTATIONS; test_every_shipped_
implementation_is_in_the_contract_suite fails until it is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core import mail

from bookings.providers.email import DjangoEmailSender
from bookings.providers.fraud import RulesFraudScreening
from bookings.providers.inventory import OwnInventory
from sandbox import outage
from sandbox.email import SandboxEmailSender
from sandbox.fraud import SandboxFraudScreening
from sandbox.inventory import SandboxInventory
from sandbox.payments import SandboxPaymentGateway


@dataclass
class Harness:
    """One implementation under test, built for one test."""

    provider: Any
    # Payments: a token the gateway authorizes, and one it declines.
    approved_token: str = ""
    declined_token: str = ""
    # Makes the provider unavailable for the following calls (an outage, a 503).
    take_down: Callable[[], None] | None = None
    # Makes the provider act on the next call and its response never reach the caller.
    lose_next_response: Callable[[], None] | None = None
    # E-mail: how many messages were delivered (to whom, subject), in order.
    delivered: Callable[[], list[tuple[str, str]]] = field(default=lambda: [])


@dataclass(frozen=True)
class Implementation:
    """A shipped implementation: its dotted path (as in BOOKING_PROVIDERS) and its harness."""

    path: str
    build: Callable[[pytest.FixtureRequest], Harness]
    variant: str = ""  # the same class configured another way (Django's SMTP backend)

    @property
    def id(self) -> str:
        return self.path.rsplit(".", 1)[1] + (f"-{self.variant}" if self.variant else "")


def _sandbox_down(kind: str) -> Callable[[], None]:
    return lambda: outage.take_down(kind, 30) and None


def _outbox() -> list[tuple[str, str]]:
    return [(m.to[0], m.subject) for m in mail.outbox]


def _stripe(request: pytest.FixtureRequest) -> Harness:
    from .stripe_server import stripe_harness

    return stripe_harness(request)


def _smtp(request: pytest.FixtureRequest) -> Harness:
    from .smtp_server import smtp_harness

    return smtp_harness(request)


IMPLEMENTATIONS: dict[str, list[Implementation]] = {
    "fraud": [
        Implementation(
            "bookings.providers.fraud.RulesFraudScreening",
            lambda request: Harness(RulesFraudScreening()),
        ),
        Implementation(
            "sandbox.fraud.SandboxFraudScreening",
            lambda request: Harness(SandboxFraudScreening(), take_down=_sandbox_down("fraud")),
        ),
    ],
    "payments": [
        Implementation(
            "sandbox.payments.SandboxPaymentGateway",
            lambda request: Harness(
                SandboxPaymentGateway(),
                approved_token="tok_visa",
                declined_token="tok_declined",
                take_down=_sandbox_down("payments"),
            ),
        ),
        Implementation("bookings.providers.stripe_payments.StripePaymentGateway", _stripe),
    ],
    "inventory": [
        Implementation(
            "bookings.providers.inventory.OwnInventory", lambda request: Harness(OwnInventory())
        ),
        Implementation(
            "sandbox.inventory.SandboxInventory",
            lambda request: Harness(SandboxInventory(), take_down=_sandbox_down("inventory")),
        ),
    ],
    "email": [
        Implementation(
            "bookings.providers.email.DjangoEmailSender",
            lambda request: Harness(DjangoEmailSender(), delivered=_outbox),
        ),
        Implementation("bookings.providers.email.DjangoEmailSender", _smtp, variant="smtp"),
        Implementation(
            "sandbox.email.SandboxEmailSender",
            lambda request: Harness(
                SandboxEmailSender(), delivered=_outbox, take_down=_sandbox_down("email")
            ),
        ),
    ],
}


def implementations(kind: str) -> Any:
    """pytest parameters: one per implementation of `kind`, named after its class."""
    return pytest.mark.parametrize(
        "implementation", IMPLEMENTATIONS[kind], ids=[i.id for i in IMPLEMENTATIONS[kind]]
    )
