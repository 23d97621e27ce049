"""The test suite: PostgreSQL and Redis when DATABASE_URL and CELERY_BROKER_URL point at them,
SQLite and the filesystem broker otherwise. Retry delays are short so failure paths finish fast."""

import os
from pathlib import Path

from .base import *  # noqa: F403
from .base import (
    BASE_DIR,
    BOOKING_QUEUES,
    CACHES,
    CELERY_BROKER_URL,
    INSTALLED_APPS,
    SANDBOX_PROVIDERS,
    booking_providers,
    broker_transport_options,
    celery_queues,
    env,
    env_json,
    logging_config,
    sqlite_database,
)

SECRET_KEY = "test-secret-key"
DEBUG = False
ALLOWED_HOSTS = ["*"]
# The sandbox providers drive the scenarios (tests/providers/ runs the real ones too).
INSTALLED_APPS = ["sandbox", *INSTALLED_APPS]
BOOKING_PROVIDERS = booking_providers(SANDBOX_PROVIDERS)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# In memory, unless a test's workers send through a real SMTP server (tests/providers/).
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", f"sagas-test-{os.getpid()}")

_fast = {"initial_delay": 0.05, "backoff": 2.0, "max_delay": 0.4, "jitter": 0.1}
SAGA_STEP_SETTINGS = {
    "booking.fraud_check": {**_fast, "max_attempts": 3, "timeout": 5},
    "booking.preauthorize": {**_fast, "max_attempts": 4, "timeout": 5},
    "booking.preauthorize.compensation": {**_fast, "max_attempts": 3, "timeout": 5},
    "booking.confirm": {**_fast, "max_attempts": 3, "timeout": 5},
    "booking.confirm.compensation": {**_fast, "max_attempts": 3, "timeout": 5},
    "booking.send_email": {**_fast, "max_attempts": 3, "timeout": 5},
    "booking.send_email.compensation": {**_fast, "max_attempts": 3, "timeout": 5},
}
# A test may change a step's policy in its worker processes too: SAGA_STEP_SETTINGS_OVERRIDES
# (JSON, same keys) is merged over the fields above.
for _key, _fields in env_json("SAGA_STEP_SETTINGS_OVERRIDES", {}).items():
    SAGA_STEP_SETTINGS[_key] = {**SAGA_STEP_SETTINGS.get(_key, {}), **_fields}
# The fault suite's injection (tests/faults/injection.py), driven by SAGA_FAULTS (JSON), which
# the tests set in the environment of the workers they start.
SAGA_ENGINE_PLUGINS = ["tests.faults.injection.FaultInjection"]
SAGA_FAULTS = env_json("SAGA_FAULTS", {})
# Readable lines unless a test asks for the production format (LOG_FORMAT=json).
LOGGING = logging_config(env("LOG_LEVEL", "WARNING"), json=env("LOG_FORMAT", "console") == "json")
# Every provider's steps on this run's queue, so a worker started on it runs whole sagas; a test
# that splits them over queues sets BOOKING_QUEUE_* in its workers' environment.
BOOKING_QUEUES = {
    kind: env(f"BOOKING_QUEUE_{kind.upper()}", CELERY_TASK_DEFAULT_QUEUE) for kind in BOOKING_QUEUES
}
# Webhook deliveries on a queue of this run's own; receivers are local, retries seconds apart.
WEBHOOK_QUEUE = env("WEBHOOK_QUEUE", f"{CELERY_TASK_DEFAULT_QUEUE}-webhooks")
CELERY_TASK_QUEUES = celery_queues(
    CELERY_TASK_DEFAULT_QUEUE, {**BOOKING_QUEUES, "webhooks": WEBHOOK_QUEUE}
)
WEBHOOK_RETRY_SCHEDULE = env_json("WEBHOOK_RETRY_SCHEDULE", [1, 2, 3, 3])
WEBHOOK_REQUIRE_HTTPS = False
WEBHOOK_ALLOWED_NETWORKS = [
    n for n in env("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32").split(",") if n
]
WEBHOOK_TIMEOUT = float(env("WEBHOOK_TIMEOUT", "2"))
WEBHOOK_CONNECT_TIMEOUT = 1.0
WEBHOOK_DEFER = 0.2
WEBHOOK_LEASE_MARGIN = float(env("WEBHOOK_LEASE_MARGIN", "2"))
WEBHOOK_REDISPATCH_AFTER = float(env("WEBHOOK_REDISPATCH_AFTER", "5"))
WEBHOOK_FEED_SETTLE = 0.0
# Tests keep their own SQLite file and filesystem queue, apart from a running `make run`.
TEST_DATA_DIR = Path(env("DATA_DIR", str(BASE_DIR / "var"))) / "test"
TEST_DATA_DIR.mkdir(parents=True, exist_ok=True)
if not os.environ.get("DATABASE_URL"):
    DATABASES = {"default": sqlite_database(TEST_DATA_DIR / "db.sqlite3")}
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL, TEST_DATA_DIR)
# The suite's scenarios make providers fail on purpose, one booking after another; a circuit
# opened by one test must not defer the next test's steps. Tests of the breaker itself
# (tests/production/) set BOOKING_CIRCUIT_BREAKERS for their provider, in-process and in workers.
BOOKING_CIRCUIT_BREAKER_DEFAULTS = {"failure_threshold": 1_000_000, "window": 60, "cool_down": 15}
BOOKING_CIRCUIT_BREAKERS = env_json("BOOKING_CIRCUIT_BREAKERS", {})
# Circuit states, rate-limit counters and outage flags of this run only (its workers inherit
# CELERY_QUEUE, so they share the prefix); the file cache, if used, lives with the test data.
CACHES = {
    **CACHES,
    "coordination": {
        **CACHES["coordination"],
        "KEY_PREFIX": CELERY_TASK_DEFAULT_QUEUE,
        **(
            {"LOCATION": str(TEST_DATA_DIR / "coordination-cache")}
            if CACHES["coordination"]["BACKEND"].endswith("FileBasedCache")
            else {}
        ),
    },
}
