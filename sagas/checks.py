"""System checks: the deployment's per-step settings name steps the saga definitions have, so
that a typo in SAGA_STEP_SETTINGS fails at start instead of being silently ignored."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from .definition import COMPENSATION, RetryPolicy, get_definition

SETTING_FIELDS = {*RetryPolicy.__dataclass_fields__, "timeout"}


@register()
def check_step_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    for key, fields in getattr(settings, "SAGA_STEP_SETTINGS", {}).items():
        saga_type, _, rest = key.partition(".")
        step_name, _, direction = rest.partition(".")
        where = f"SAGA_STEP_SETTINGS[{key!r}]"
        try:
            step = get_definition(saga_type).step(step_name)
        except (LookupError, KeyError):
            errors.append(Error(f"{where}: no saga {saga_type!r} with a step {step_name!r}"))
            continue
        if direction not in ("", COMPENSATION):
            errors.append(Error(f"{where}: after the step comes nothing or '.{COMPENSATION}'"))
        elif direction == COMPENSATION and not step.compensatable:
            errors.append(Error(f"{where}: step {step_name!r} has no compensation"))
        unknown = set(fields) - SETTING_FIELDS
        if unknown:
            errors.append(Error(f"{where}: unknown fields {sorted(unknown)}"))
    return errors
