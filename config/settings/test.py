"""The test suite: PostgreSQL and Redis when DATABASE_URL and CELERY_BROKER_URL point at them,
SQLite and the filesystem broker otherwise. Retry delays are short so failure paths finish fast."""

import os
from pathlib import Path

from .base import *  # noqa: F403
from .base import BASE_DIR, CELERY_BROKER_URL, broker_transport_options, env, sqlite_database

SECRET_KEY = "test-secret-key"
DEBUG = False
ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
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
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"kombu.connection": {"level": "ERROR"}},
}
# Tests keep their own SQLite file and filesystem queue, apart from a running `make run`.
TEST_DATA_DIR = Path(env("DATA_DIR", str(BASE_DIR / "var"))) / "test"
TEST_DATA_DIR.mkdir(parents=True, exist_ok=True)
if not os.environ.get("DATABASE_URL"):
    DATABASES = {"default": sqlite_database(TEST_DATA_DIR / "db.sqlite3")}
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL, TEST_DATA_DIR)
