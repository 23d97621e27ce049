"""Laptop and demo: SQLite and the filesystem broker unless DATABASE_URL / CELERY_BROKER_URL say
otherwise."""

from .base import *  # noqa: F403
from .base import (
    INSTALLED_APPS,
    SANDBOX_PROVIDERS,
    booking_providers,
    env,
    env_bool,
    logging_config,
)

DEBUG = env_bool("DJANGO_DEBUG", True)
# People read these logs in a terminal: key=value lines unless LOG_FORMAT=json.
LOGGING = logging_config(env("LOG_LEVEL", "INFO"), json=env("LOG_FORMAT", "console") == "json")
ALLOWED_HOSTS = ["*"]
# The sandbox providers and their magic values (README, docs/providers.md): first, so that its
# admin banner template wins over the admin's own.
INSTALLED_APPS = ["sandbox", *INSTALLED_APPS]
BOOKING_PROVIDERS = booking_providers(SANDBOX_PROVIDERS)
# The demo data of `make run` (a superuser with a generated password, an API client).
DEMO_DATA_ALLOWED = True
# The demo's webhook receiver (`make run`) listens on http://127.0.0.1.
WEBHOOK_REQUIRE_HTTPS = env_bool("WEBHOOK_REQUIRE_HTTPS", False)
WEBHOOK_ALLOWED_NETWORKS = [
    n for n in env("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32").split(",") if n
]
