"""Laptop and demo: SQLite and the filesystem broker unless DATABASE_URL / CELERY_BROKER_URL say
otherwise."""

from .base import *  # noqa: F403
from .base import env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)
ALLOWED_HOSTS = ["*"]
