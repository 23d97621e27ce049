"""Engine plug-ins: hooks a deployment or a test suite installs (settings.SAGA_ENGINE_PLUGINS,
dotted paths of EnginePlugin subclasses). None are installed by default; the fault suite
installs its fault injection (tests/faults/injection.py) this way, so no fault code sits in the
modules production imports."""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from .definition import StepContext


class EnginePlugin:
    """The hooks, each doing nothing unless overridden."""

    def before_action(self, ctx: StepContext) -> None:
        """Called just before a step's side effect runs (outside any transaction)."""

    def after_action(self, ctx: StepContext) -> None:
        """Called between a step's side effect and the commit of its outcome."""

    def copies(self, step_id: int, copies: int) -> int:
        """How many copies of an attempt's message to send (0: none), given what the plug-ins
        before this one said."""
        return copies


def installed() -> tuple[EnginePlugin, ...]:
    """One instance of each plug-in in settings.SAGA_ENGINE_PLUGINS, in order."""
    return tuple(import_string(path)() for path in settings.SAGA_ENGINE_PLUGINS)
