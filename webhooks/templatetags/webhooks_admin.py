"""`{% failing_webhook_endpoints %}`: a dashboard panel, usable from any admin template."""

from typing import Any

from django import template
from django.utils import timezone

from .. import selectors

register = template.Library()


@register.inclusion_tag("admin/webhooks/failing_endpoints.html")
def failing_webhook_endpoints(limit: int = 20) -> dict[str, Any]:
    return {"endpoints": selectors.failing_endpoints(limit), "now": timezone.now()}
