"""What the admin's sandbox banner says: which providers of this deployment are sandboxes."""

from django import template

from bookings.providers.base import sandbox_kinds as configured_sandboxes

register = template.Library()


@register.simple_tag
def sandbox_kinds() -> list[str]:
    """The provider kinds that run on a sandbox here (empty: none, and no banner)."""
    return configured_sandboxes()
