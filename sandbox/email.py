"""The sandbox e-mail sender: the product's own sender (its ledger, Django's e-mail backend),
except that every send to an address starting with bounce@ fails transiently, and the outage
switch."""

from __future__ import annotations

from typing import Any

from bookings.providers.base import ProviderUnavailable
from bookings.providers.email import DjangoEmailSender

from . import outage


class SandboxEmailSender(DjangoEmailSender):
    def deliver(
        self, to: str, subject: str, template: str, context: dict[str, Any], message_id: str
    ) -> None:
        """Bounce every address starting with bounce@; deliver the rest."""
        outage.raise_if_down("email")
        if to.lower().startswith("bounce@"):
            raise ProviderUnavailable("mailbox unavailable (sandbox bounce@)", code="email")
        super().deliver(to, subject, template, context, message_id)
