"""Structured logs: one JSON object per line from web, workers and beat, through structlog.

Every stdlib logger (Django, Celery, our modules) goes through the same structlog formatter, so a
line from `logging.getLogger(__name__)` and one from `structlog.get_logger()` look alike and both
carry what is bound in the context: `request_id` (django-structlog's middleware binds it for a web
request; its Celery receiver carries it in the task headers into every task the request causes,
and from one step's task to the next), and `saga_id`, `step`, `direction`, `attempt` and the
booking `reference` while a worker runs a saga step (sagas.instrument binds them).

`redact` runs last before rendering: nothing that looks like a secret, a provider token or a
card number reaches a log line, whatever a caller put in the message or its fields.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

import structlog

# Field names whose value is never logged, whatever it is.
SECRET_FIELDS = re.compile(
    r"(pass(word)?|secret|token|authorization|cookie|session|card|cvc|cvv|pan|api_?key)",
    re.IGNORECASE,
)
# Values scrubbed wherever they appear in a message or field: sandbox/provider payment tokens,
# DRF tokens sent as "Token <key>", bearer tokens, and 13-19 digit card-like numbers.
SECRET_VALUES = [
    (re.compile(r"\btok_[A-Za-z0-9_]+"), "tok_[redacted]"),
    (re.compile(r"\b(Token|Bearer)\s+[A-Za-z0-9._\-]+", re.IGNORECASE), r"\1 [redacted]"),
    (re.compile(r"\b(?:\d[ -]?){12,18}\d\b"), "[redacted-number]"),
]
# Fields that hold identifiers we *want* in every line even though their names match the pattern.
ALLOWED_FIELDS = {"request_id", "task_id", "parent_task_id", "saga_id", "correlation_id"}
REDACTED = "[redacted]"


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for pattern, replacement in SECRET_VALUES:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, dict):
        return {k: _scrub_field(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _scrub_field(key: str, value: Any) -> Any:
    if key not in ALLOWED_FIELDS and SECRET_FIELDS.search(key):
        return REDACTED
    return _scrub(value)


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: drop secret fields and scrub secret-looking values."""
    return {key: _scrub_field(key, value) for key, value in event_dict.items()}


def _render_exception_then_redact(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> dict[str, Any]:
    # A traceback can quote a local variable or a request body: render it first, then scrub it.
    return redact(logger, method, structlog.processors.format_exc_info(logger, method, event_dict))


SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ExtraAdder(),
]


def configure_structlog() -> None:
    """Route structlog loggers into stdlib logging, where LOGGING's formatter renders JSON."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def logging_config(level: str = "INFO", *, json: bool = True) -> dict[str, Any]:
    """The LOGGING dict: JSON lines on stderr (or readable key=value lines when json=False)."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": SHARED_PROCESSORS,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    _render_exception_then_redact,
                    renderer,
                ],
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # The filesystem transport has no host; kombu warns about it on every connection.
            "kombu.connection": {"level": "ERROR"},
            # One access line per request comes from django-structlog; Django's is a duplicate.
            "django.server": {"level": "WARNING"},
            # One line per task comes from django-structlog (task_succeeded, with its duration,
            # or task_failed); Celery's own "received" and "succeeded in" lines repeat it.
            "celery.worker.strategy": {"level": "WARNING"},
            "celery.app.trace": {"level": "WARNING"},
            # django-health-check logs each failing check with its traceback at every probe (a
            # load balancer's, every few seconds), an expected warning too; the probe's answer
            # says which check failed and its request line the 503. Its unexpected errors stay.
            "health_check": {"level": "ERROR"},
        },
    }
