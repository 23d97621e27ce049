"""Laptop and demo: SQLite and the filesystem broker unless DATABASE_URL / CELERY_BROKER_URL say
otherwise."""

from .base import *  # noqa: F403
from .base import env, env_bool, logging_config

DEBUG = env_bool("DJANGO_DEBUG", True)
# People read these logs in a terminal: key=value lines unless LOG_FORMAT=json.
LOGGING = logging_config(env("LOG_LEVEL", "INFO"), json=env("LOG_FORMAT", "console") == "json")
ALLOWED_HOSTS = ["*"]
# The demo data of `make run` (a superuser with a generated password, an API client).
DEMO_DATA_ALLOWED = True
