"""Production: everything from the environment; a missing required value fails at start.

Required: DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS, DATABASE_URL (PostgreSQL), CELERY_BROKER_URL
(Redis or RabbitMQ), CACHE_URL (Redis) unless the broker is Redis, whose URL is then used, and
STRIPE_API_KEY with the default payment gateway.
`manage.py check --deploy` passes with these settings and no warning.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import (
    BASE_DIR,
    BOOKING_PROVIDERS,
    INSTALLED_APPS,
    LOCAL_CACHE,
    REDIS_SCHEMES,
    cache_from_env,
    database_from_env,
    env,
    env_bool,
    env_int,
)

# These settings are also what a process started without DJANGO_SETTINGS_MODULE runs (manage.py,
# wsgi, asgi, celery fail closed), so the message says how to ask for the laptop settings.
_settings_hint = (
    " (production settings, also used when DJANGO_SETTINGS_MODULE is not set; on a laptop or "
    "for the demo: export DJANGO_SETTINGS_MODULE=config.settings.local)"
)


def required(name: str) -> str:
    """An environment variable that must be set and not empty."""
    value = os.environ.get(name)
    if value is None:
        raise ImproperlyConfigured(f"The environment variable {name} is required{_settings_hint}.")
    if not value.strip():
        raise ImproperlyConfigured(f"The environment variable {name} is required (it is empty).")
    return value


SECRET_KEY = required("DJANGO_SECRET_KEY")
if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 random characters.")
DEBUG = False
ALLOWED_HOSTS = [h.strip() for h in required("DJANGO_ALLOWED_HOSTS").split(",") if h.strip()]
if "*" in ALLOWED_HOSTS:
    # Any Host header accepted: password-reset links and absolute URLs could name an attacker's
    # host. Name the hosts this deployment answers for.
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS='*' is refused in production: list the hosts.")
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in env("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

required("DATABASE_URL")
if required("DATABASE_URL").startswith("sqlite"):
    raise ImproperlyConfigured("DATABASE_URL: production runs on PostgreSQL, not SQLite.")
DATABASES = {"default": database_from_env(BASE_DIR / "unused.sqlite3")}
CELERY_BROKER_URL = required("CELERY_BROKER_URL")
if CELERY_BROKER_URL.startswith("filesystem"):
    raise ImproperlyConfigured("CELERY_BROKER_URL: use Redis or RabbitMQ in production.")

# The cache is shared by every process (API throttling, circuit breakers, rate limits): Redis.
# CACHE_URL defaults to the broker when that is Redis; with RabbitMQ it must be set.
_cache_url = env(
    "CACHE_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(REDIS_SCHEMES) else ""
)
if not _cache_url.startswith(REDIS_SCHEMES):
    raise ImproperlyConfigured("CACHE_URL: production needs a Redis cache shared by all processes.")
_coordination_url = env("COORDINATION_CACHE_URL", _cache_url)
if not _coordination_url.startswith(REDIS_SCHEMES):
    raise ImproperlyConfigured("COORDINATION_CACHE_URL must be a Redis URL.")
CACHES = {
    "default": cache_from_env(_cache_url),
    "coordination": {**cache_from_env(_coordination_url), "KEY_PREFIX": "coordination"},
    "local": LOCAL_CACHE,
}

# Providers: Stripe, the product's own inventory and fraud rules, SMTP (settings/base.py). A
# sandbox is refused unless this is a staging deployment that says so; then it is installed, and
# every admin page says that payments are not real.
BOOKING_ALLOW_SANDBOX = env_bool("BOOKING_ALLOW_SANDBOX", False)
_sandboxes = {kind: path for kind, path in BOOKING_PROVIDERS.items() if path.startswith("sandbox.")}
if _sandboxes and not BOOKING_ALLOW_SANDBOX:
    _named = ", ".join(f"{kind}: {path}" for kind, path in _sandboxes.items())
    raise ImproperlyConfigured(
        f"BOOKING_PROVIDERS names sandbox providers ({_named}): bookings would not be charged "
        "or screened for real. Configure real providers (docs/providers.md), or set "
        "BOOKING_ALLOW_SANDBOX=1 for a staging deployment."
    )
if _sandboxes:
    INSTALLED_APPS = ["sandbox", *INSTALLED_APPS]
if BOOKING_PROVIDERS["payments"].endswith(".StripePaymentGateway"):
    required("STRIPE_API_KEY")

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)

# HTTPS behind a proxy or load balancer that sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
# Probes come from inside the network, in plain HTTP, to the node's address.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Static files: collected at deploy (`collectstatic`), served by whitenoise from each web node
# with far-future cache headers (hashed names).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
STATIC_ROOT = Path(env("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
