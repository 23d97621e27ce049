"""Settings shared by every environment. Values come from the environment (12-factor);
local.py, test.py and production.py only override."""

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from config.logging import configure_structlog, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"The environment variable {name} is required.")
    return value


def env_rate(name: str, default: str) -> str:
    """A throttle rate, `<requests>/<second|minute|hour|day>`: refused at start-up otherwise
    (DRF would fail on it in every request)."""
    value = env(name, default).strip()
    if not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        raise ImproperlyConfigured(
            f"{name}={value!r}: give a rate as <requests>/<second|minute|hour|day>, "
            f"say {default!r}."
        )
    return value


def env_bool(name: str, default: bool) -> bool:
    return env(name, "1" if default else "0").lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(env(name, str(default)))


def env_json(name: str, default: Any) -> Any:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from exc


def sqlite_database(path: Path) -> dict:
    """SQLite tuned for several processes: WAL, IMMEDIATE transactions (a writer takes the lock
    at BEGIN, so two workers never deadlock upgrading a read lock) and a generous busy timeout.
    Its directory is created here: SQLite creates the file, never the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        "TEST": {"NAME": str(path.with_name(path.stem + "-test.sqlite3"))},
    }


def database_from_env(default_sqlite: Path, *, pool: bool | None = None) -> dict:
    """The default database from DATABASE_URL (SQLite at `default_sqlite` without it).

    PostgreSQL goes through psycopg's connection pool (Django's OPTIONS["pool"]), one pool per
    process, so that a process never holds more connections than it runs requests or tasks at
    once: the dev server starts a thread per request, and with persistent connections per
    thread 16 busy clients took all of PostgreSQL's 100. A request that finds every connection
    of its process busy waits up to DB_POOL_TIMEOUT seconds, then gets 503 (config/unavailable.py)
    instead of opening one more. `pool=False` (or DB_POOL=0, e.g. behind PgBouncer): one
    persistent connection per thread, kept DB_CONN_MAX_AGE seconds. docs/production.md
    ("Database connections") says how many connections each process needs.
    """
    url = os.environ.get("DATABASE_URL")
    if not url:
        return sqlite_database(default_sqlite)
    if url.startswith("sqlite"):
        return sqlite_database(Path(url.split("///", 1)[1]))
    config: dict[str, Any] = dict(
        dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
    )
    if config["ENGINE"].endswith("postgresql"):
        # Server-side parameters let psycopg prepare the statements a worker repeats (the
        # engine's handful), so PostgreSQL stops parsing and planning them each time. Turn it
        # off behind a transaction-mode pooler (PgBouncer < 1.21) that cannot keep them.
        config["OPTIONS"] = {
            **config.get("OPTIONS", {}),
            "server_side_binding": env_bool("DB_SERVER_SIDE_BINDING", True),
            "prepare_threshold": env_int("DB_PREPARE_THRESHOLD", 5),
        }
        if env_bool("DB_POOL", True) if pool is None else pool:
            # The pool keeps the connections; Django hands its connection back after each
            # request or task (CONN_MAX_AGE must be 0), and the pool checks a connection before
            # lending it again, so one broken by a database restart is replaced, not used:
            # config/postgresql (Django's backend with a check that costs no round trip unless
            # the server spoke meanwhile; CONN_HEALTH_CHECKS would send a query per lending).
            config["ENGINE"] = "config.postgresql"
            config["CONN_MAX_AGE"] = 0
            config["CONN_HEALTH_CHECKS"] = False
            config["OPTIONS"]["pool"] = {
                "min_size": env_int("DB_POOL_MIN_SIZE", 1),
                # gunicorn's config sets it to the worker's thread count (config/gunicorn.py).
                "max_size": env_int("DB_POOL_MAX_SIZE", 4),
                "timeout": float(env("DB_POOL_TIMEOUT", "5")),
                # psycopg_pool retries a failed connection with doubling delays until this runs
                # out, then the next request starts afresh: a database back after an outage is
                # used again within seconds, not after a delay as long as the outage.
                "reconnect_timeout": float(env("DB_POOL_RECONNECT_TIMEOUT", "10")),
            }
    return config


SECRET_KEY = env("DJANGO_SECRET_KEY", "insecure-local-key-change-me")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [h for h in env("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_fsm",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    # Swagger UI and Redoc served from our own static files: the docs work with no internet.
    "drf_spectacular_sidecar",
    "sagas",
    "webhooks",
    "bookings",
    "bookings.providers",
    # Production readiness: /health/, /metrics, structured request logs.
    "health_check",
    "django_prometheus",
    "django_structlog",
    "ops",
]

MIDDLEWARE = [
    # Outermost, so that request metrics time the whole stack (django-prometheus).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Binds request_id (from X-Request-ID, or a new one) and the user to every log line of the
    # request; the Celery receiver carries them in task headers into the saga's tasks.
    "django_structlog.middlewares.RequestMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Innermost: a view failing on a database or broker that is down answers 503.
    "ops.unavailable.UnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATA_DIR = Path(env("DATA_DIR", str(BASE_DIR / "var")))
DATABASES = {"default": database_from_env(DATA_DIR / "db.sqlite3")}
# Retry-After (seconds) of the 503 given while the database, cache or broker is unavailable.
RETRY_AFTER_UNAVAILABLE = env_int("RETRY_AFTER_UNAVAILABLE", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Dates and times shown as Y-m-d H:i:s everywhere in the admin (config/formats/en/formats.py).
FORMAT_MODULE_PATH = ["config.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
# The SMTP server of the e-mail provider (bookings/providers/email.py); a server that does not
# answer within EMAIL_TIMEOUT seconds is a transient failure, retried by the saga.
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_TIMEOUT = float(env("EMAIL_TIMEOUT", "30"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "bookings@example.com")

# Structured logs (config/logging.py): JSON lines by default; LOG_FORMAT=console for people.
configure_structlog()
LOGGING = logging_config(env("LOG_LEVEL", "INFO"), json=env("LOG_FORMAT", "json") == "json")
# django-structlog: request_id travels from the web request into every Celery task it causes.
DJANGO_STRUCTLOG_CELERY_ENABLED = True
DJANGO_STRUCTLOG_USER_ID_FIELD = "pk"
# The client's address in each request's lines is the one the throttles count (ops/request_log.py),
# not django-ipware's guess from headers any client can write.
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = False
# One line per request (request_finished: method, path, status, user, duration) and one per task
# outcome (task_succeeded / task_failed), at INFO; the lines announcing their start (and a task's
# sending, which "saga started" and the step lines already say) only at DEBUG. Each line costs
# its JSON rendering and redaction on the request's or the step's own path.
DJANGO_STRUCTLOG_STATUS_START_LOG_LEVEL = logging.DEBUG
DJANGO_STRUCTLOG_CELERY_TASK_START_LOG_LEVEL = logging.DEBUG
# Keep the X-Request-ID a load balancer or an API client sent, so that one id follows a request
# across systems (JSON rendering escapes it: it cannot forge a log line).
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = env_bool("TRUST_UPSTREAM_REQUEST_ID", True)

# --- Celery -------------------------------------------------------------------------------
# Delivery is at-least-once: a message is acknowledged only after its task ran, each worker
# holds one message at a time, a message whose pool process died goes back to the queue, and
# one held by a killed worker is recovered by the record it names (docs/guarantees.md; on
# RabbitMQ the broker also puts it back at once).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "filesystem://")


def broker_transport_options(broker_url: str, data_dir: Path) -> dict:
    options: dict = {}
    if broker_url.startswith(("redis", "sentinel")):
        # kombu's Redis transport can emulate acknowledgements: it keeps every message it hands
        # out in a second structure until the ack, and puts it back after a visibility timeout
        # if its worker died. Every task here is recovered by the record it names instead (an
        # attempt's lease, a delivery's next attempt, the beat's next sweep), and sooner, so
        # the emulation would only cost two Redis transactions per message.
        options["ack_emulation"] = False
    if broker_url.startswith("filesystem"):
        queue_dir = data_dir / "broker"
        for sub in ("queue", "processed"):
            (queue_dir / sub).mkdir(parents=True, exist_ok=True)
        options.update(
            {
                "data_folder_in": str(queue_dir / "queue"),
                "data_folder_out": str(queue_dir / "queue"),
                "processed_folder": str(queue_dir / "processed"),
                # Exchange tables; kombu's default is ./control in the working directory.
                "control_folder": str(queue_dir / "control"),
                "store_processed": False,
                "polling_interval": 0.1,
            }
        )
    return options


CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL, DATA_DIR)


def broker_transport(broker_url: str) -> str | None:
    """The embedded broker's transport, by path (config/broker.py: kombu's, written whole);
    None lets kombu pick the transport from the URL's scheme."""
    return "config.broker:Transport" if broker_url.startswith("filesystem") else None


CELERY_BROKER_TRANSPORT = broker_transport(CELERY_BROKER_URL)
# Celery's Django fixup closes every database connection before and after each task unless this
# is set: a new PostgreSQL connection (a forked backend) per task. Keep them; sagas/tasks.py
# closes only the unusable or expired ones before each task, as Django does per request.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", "sagas")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "sweep-stalled-sagas": {
        "task": "sagas.tasks.sweep",
        "schedule": float(env("SAGA_SWEEP_INTERVAL", "10")),
    },
    "purge-expired-idempotency-keys": {
        "task": "bookings.tasks.purge_expired_idempotency_keys",
        "schedule": 3600.0,
    },
    "sweep-webhook-deliveries": {
        "task": "webhooks.tasks.sweep",
        "schedule": float(env("WEBHOOK_SWEEP_INTERVAL", "10")),
    },
}

# --- Sagas --------------------------------------------------------------------------------
# Per-deployment retry schedules, keyed "<saga type>.<step>" (action) or
# "<saga type>.<step>.compensation"; any RetryPolicy field may be set, and "timeout" too.
# Example: SAGA_STEP_SETTINGS='{"booking.preauthorize": {"max_attempts": 8, "max_delay": 60}}'
SAGA_STEP_SETTINGS = env_json("SAGA_STEP_SETTINGS", {})
# A step message re-sent this many times without an outcome is treated as a failed attempt
# (a poison message that kills its worker, or a step that never reports back).
SAGA_MAX_DISPATCHES = env_int("SAGA_MAX_DISPATCHES", 10)
SAGA_SWEEP_BATCH = env_int("SAGA_SWEEP_BATCH", 500)
# A worker runs the next step of a saga itself, right after committing the previous outcome,
# when that step is on the queue it is serving (one message per saga instead of one per step;
# each step still commits its outcome and its next attempt before that attempt runs).
SAGA_CHAIN_STEPS = env_bool("SAGA_CHAIN_STEPS", True)
# PostgreSQL: the engine writes each outcome (and each start) as one statement
# (sagas/store.PostgresStore). Off: through the ORM in a transaction (OrmStore), as elsewhere.
SAGA_ONE_STATEMENT_RECORD = env_bool("SAGA_ONE_STATEMENT_RECORD", True)
# Engine plug-ins (sagas/plugins.py): dotted paths of EnginePlugin subclasses. None here; the
# test settings install the fault suite's injection.
SAGA_ENGINE_PLUGINS: list[str] = []

# --- Providers ----------------------------------------------------------------------------
# One implementation per kind of outside system (docs/providers.md). These defaults are what
# production runs; local.py and test.py put the sandbox (sandbox/) in their place. Any entry can
# be set by its environment variable (a dotted path).
REAL_PROVIDERS = {
    "fraud": "bookings.providers.fraud.RulesFraudScreening",
    "payments": "bookings.providers.stripe_payments.StripePaymentGateway",
    "inventory": "bookings.providers.inventory.OwnInventory",
    "email": "bookings.providers.email.DjangoEmailSender",
}
SANDBOX_PROVIDERS = {
    "fraud": "sandbox.fraud.SandboxFraudScreening",
    "payments": "sandbox.payments.SandboxPaymentGateway",
    "inventory": "sandbox.inventory.SandboxInventory",
    "email": "sandbox.email.SandboxEmailSender",
}
PROVIDER_ENV = {
    "fraud": "BOOKING_FRAUD_PROVIDER",
    "payments": "BOOKING_PAYMENT_PROVIDER",
    "inventory": "BOOKING_INVENTORY_PROVIDER",
    "email": "BOOKING_EMAIL_PROVIDER",
}


def booking_providers(defaults: dict[str, str]) -> dict[str, str]:
    """BOOKING_PROVIDERS: `defaults`, each overridden by its environment variable."""
    return {kind: env(PROVIDER_ENV[kind], path) for kind, path in defaults.items()}


BOOKING_PROVIDERS = booking_providers(REAL_PROVIDERS)
# Stripe (bookings/providers/stripe_payments.py): a secret key (sk_live_... or sk_test_...);
# STRIPE_API_BASE points the library elsewhere (the tests' local Stripe), never set in production.
STRIPE_API_KEY = env("STRIPE_API_KEY", "")
STRIPE_API_BASE = env("STRIPE_API_BASE", "")
# Seconds a Stripe request may take before its outcome is treated as unknown (then looked up).
STRIPE_TIMEOUT = float(env("STRIPE_TIMEOUT", "20"))
# The product's fraud rules (bookings/providers/fraud.py); the deny list is managed in the admin.
BOOKING_FRAUD_RULES = {
    "max_amount": "10000",
    "per_email_per_hour": 5,
    "per_payment_method_per_hour": 5,
    **env_json("BOOKING_FRAUD_RULES", {}),
}

# --- Queues, provider rate limits and circuit breakers (keyed like BOOKING_PROVIDERS) ------------
# Each provider's steps (action and compensation) run on their own Celery queue, so the workers
# for one provider can be scaled, placed or restarted apart from the rest. A worker started
# without -Q consumes every queue listed in CELERY_TASK_QUEUES (that is what `make run` does).
BOOKING_QUEUES = {
    "fraud": env("BOOKING_QUEUE_FRAUD", "fraud"),
    "payments": env("BOOKING_QUEUE_PAYMENTS", "payments"),
    "inventory": env("BOOKING_QUEUE_INVENTORY", "inventory"),
    "email": env("BOOKING_QUEUE_EMAIL", "notifications"),
}


def celery_queues(default_queue: str, step_queues: dict[str, str]) -> list[Queue]:
    """Every queue a worker without -Q consumes: the default one (sweeper, unrouted tasks) and
    each provider's queue, once; declared the way Celery declares a queue it creates itself."""
    names = dict.fromkeys([default_queue, *(q for q in step_queues.values() if q)])
    return [Queue(name, Exchange(name), routing_key=name) for name in names]


WEBHOOK_QUEUE = env("WEBHOOK_QUEUE", "webhooks")  # deliveries: apart from every saga's queue
CELERY_TASK_QUEUES = celery_queues(
    CELERY_TASK_DEFAULT_QUEUE, {**BOOKING_QUEUES, "webhooks": WEBHOOK_QUEUE}
)
# Calls per second / minute allowed to each provider across *all* workers, e.g.
# BOOKING_PROVIDER_RATE_LIMITS='{"payments": "20/s", "email": "600/m"}'. Enforced by a shared
# counter in the coordination cache (bookings/providers/guard.py), not by Celery's rate_limit,
# which is per worker and per task name (N workers would allow N times the limit). A step over
# the limit is deferred to the next window without spending a retry.
BOOKING_PROVIDER_RATE_LIMITS = env_json("BOOKING_PROVIDER_RATE_LIMITS", {})
# Circuit breakers, one per provider, their state shared by all workers (coordination cache):
# `failure_threshold` transient failures from that many different calls (idempotency keys) with
# no success in between (as read within BOOKING_PROVIDER_HEALTH_TTL), within `window` seconds,
# open the circuit; calls not made while it is open wait `cool_down` seconds without spending
# retries (at most a step's `max_wait` in all); one half-open probe closes it again, or,
# failing, spends its attempt and opens it again.
# Per-provider overrides: BOOKING_CIRCUIT_BREAKERS='{"payments": {"cool_down": 60}}'.
BOOKING_CIRCUIT_BREAKER_DEFAULTS = {"failure_threshold": 5, "window": 60, "cool_down": 15}
BOOKING_CIRCUIT_BREAKERS = env_json("BOOKING_CIRCUIT_BREAKERS", {})
# Every process of a deployment must see the same circuit state, rate-limit counters and sandbox
# outage flags: Redis in production (COORDINATION_CACHE_URL, else CACHE_URL); on one machine
# without Redis (`make run`), a file cache under DATA_DIR that all local processes share.
COORDINATION_CACHE_URL = env("COORDINATION_CACHE_URL", os.environ.get("CACHE_URL", ""))
# Seconds a worker process trusts its last reading that a provider is healthy (its circuit
# closed with no failure counted; a sandbox up) before it reads the coordination cache again: a
# circuit opened, or a sandbox outage started, by another process stops this one's calls at
# most that late (a failure of its own call, at once). 0: read before every call. Keep it well
# below the circuits' cool_down.
BOOKING_PROVIDER_HEALTH_TTL = float(env("BOOKING_PROVIDER_HEALTH_TTL", "1"))
if not 0 <= BOOKING_PROVIDER_HEALTH_TTL <= 10:  # NaN and inf fail this too
    raise ImproperlyConfigured(
        f"BOOKING_PROVIDER_HEALTH_TTL={BOOKING_PROVIDER_HEALTH_TTL}: seconds, from 0 to 10"
    )

# --- Observability ----------------------------------------------------------------------------
# Payload fields copied into every log line about a saga (the booking reference).
SAGA_LOG_PAYLOAD_FIELDS = ("reference",)
# A Celery worker serves its metrics (all its pool processes, prometheus_client multiprocess
# mode under PROMETHEUS_MULTIPROC_DIR) on this port when set; 0 disables it.
CELERY_WORKER_METRICS_PORT = env_int("CELERY_WORKER_METRICS_PORT", 0)
# The address it listens on: the machine's private interface in production (never public).
CELERY_WORKER_METRICS_ADDR = env("CELERY_WORKER_METRICS_ADDR", "127.0.0.1")
# /health/: how long to wait for a worker to answer a ping (seconds).
HEALTH_WORKER_PING_TIMEOUT = float(env("HEALTH_WORKER_PING_TIMEOUT", "1"))


# --- Cache --------------------------------------------------------------------------------
# API throttling counts requests here, so every web process must share it: CACHE_URL=redis://...
# in production. Without it each process keeps its own local memory (fine for `make run`).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def cache_from_env(url: str) -> dict:
    if url.startswith(REDIS_SCHEMES):
        return {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            # A Redis that does not answer costs a request (a 503) or a step (a deferral) 1-2 s,
            # not redis-py's 5. The same options for every alias: django-redis shares one
            # connection pool per URL, made with the options of the first alias to connect.
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 2},
        }
    if url.startswith("db://"):
        # needs `manage.py createcachetable`
        return {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": url[5:]}
    if url in ("", "locmem://"):
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    raise ImproperlyConfigured(f"CACHE_URL {url!r}: use redis://, db://<table> or locmem://")


LOCAL_CACHE = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "local"}
CACHES = {
    "default": cache_from_env(env("CACHE_URL", "")),
    # The coordination cache: `caches["coordination"]` to the code.
    "coordination": (
        cache_from_env(COORDINATION_CACHE_URL)
        if COORDINATION_CACHE_URL.startswith(REDIS_SCHEMES)
        else {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "coordination-cache"),
        }
    ),
    # This process's own memory: what a worker may keep of the coordination cache's readings
    # for a short while (BOOKING_PROVIDER_HEALTH_TTL). Never shared, never a source of truth.
    "local": LOCAL_CACHE,
}

# --- Client API (bookings/api/) -------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate header makes anonymous requests a 401, not a 403.
        # Failed token checks are counted per client address and refused with 429 past
        # the "failed_authentication" rate, before the database lookup.
        "bookings.api.authentication.ThrottledTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON whose nesting exhausts the parser's recursion is a 400, not a RecursionError.
    "DEFAULT_PARSER_CLASSES": ["bookings.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": [
        "bookings.api.throttling.ClientRateThrottle",
        "bookings.api.throttling.AnonymousRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "client": env_rate("API_THROTTLE_CLIENT", "300/minute"),
        "anonymous": env_rate("API_THROTTLE_ANONYMOUS", "60/minute"),
        "failed_authentication": env_rate("API_THROTTLE_FAILED_AUTHENTICATION", "20/minute"),
    },
    # How many proxies in front of the web processes append to X-Forwarded-For: the client
    # address the throttles count is the one the outermost of them saw. 0 (`make run`, no
    # proxy): the connection's address, and a header the client writes counts for nothing.
    # Behind one load balancer: 1. Never leave it unset (None): DRF would then trust the whole
    # header, which the client chooses.
    "NUM_PROXIES": env_int("API_NUM_PROXIES", 0),
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "bookings.api.pagination.BookingPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "bookings.api.exceptions.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Booking operations platform: client API",
    "DESCRIPTION": (
        "Create, follow and cancel bookings. Every error has the same body: "
        "`{code, message, fields}`. See docs/semantics.md, 'Client API'."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    # Pinned copies shipped by drf-spectacular-sidecar, not a CDN's @latest: /api/v1/docs/ and
    # /api/v1/redoc/ work offline and do not change under us.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "BookingStateEnum": "bookings.models.Booking.State",
        "CancellationReasonEnum": "bookings.models.Booking.CancellationReason",
        "PaymentStatusEnum": "bookings.models.Booking.PaymentStatus",
    },
}
# The booking horizon (bookings.services): the furthest check-in accepted, in days from today
# (a card hold cannot wait years for its stay), and the longest stay, in nights.
BOOKING_MAX_DAYS_AHEAD = env_int("BOOKING_MAX_DAYS_AHEAD", 730)
BOOKING_MAX_NIGHTS = env_int("BOOKING_MAX_NIGHTS", 30)
# A new resource's timezone (Resource.timezone, an IANA name): "today" for "check-in cannot be
# in the past" and for the horizon is the resource's local date.
BOOKING_DEFAULT_TIMEZONE = env("BOOKING_DEFAULT_TIMEZONE", TIME_ZONE)
# seed_demo creates a superuser and an API client: only settings that say so allow it (local).
DEMO_DATA_ALLOWED = False
# Idempotency-Key records are kept this long (seconds); a key reused later starts afresh.
API_IDEMPOTENCY_TTL = env_int("API_IDEMPOTENCY_TTL", 24 * 3600)
# The longest `Prefer: wait=<seconds>` honoured (RFC 7240); longer requests are cut to this.
# config/gunicorn.py refuses to start unless it is well below the worker timeout (and has the
# same default: tests/production/test_web_tier.py checks they agree).
API_PREFER_WAIT_MAX = env_int("API_PREFER_WAIT_MAX", 20)
# How many requests of one web process may wait at once; more are answered without waiting.
# gunicorn's config sets it to half its threads; this default is for the dev server.
API_PREFER_WAIT_CONCURRENCY = env_int("API_PREFER_WAIT_CONCURRENCY", 4)


# --- Webhooks (webhooks/, docs/webhooks.md) ---------------------------------------------------
# The event types a client may subscribe to; an endpoint with none listed receives them all.
WEBHOOK_EVENT_TYPES = [
    "booking.created",
    "booking.completed",
    "booking.cancelled",
    "booking.requires_attention",
    "booking.resolved",
]
# Seconds to wait before each retry after a failed attempt (Standard Webhooks / Svix-like,
# stretched to about three days): attempt n+1 waits the n-th delay; after the last one the
# delivery has failed for good. 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 20 h.
WEBHOOK_RETRY_SCHEDULE = env_json(
    "WEBHOOK_RETRY_SCHEDULE", [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 72000]
)
# Receivers must use https (off only for `make run` and the tests) and may not resolve to a
# loopback, link-local, private or reserved address, unless it is in these networks (CIDR).
WEBHOOK_REQUIRE_HTTPS = env_bool("WEBHOOK_REQUIRE_HTTPS", True)
WEBHOOK_ALLOWED_NETWORKS = [n for n in env("WEBHOOK_ALLOWED_NETWORKS", "").split(",") if n]
# One attempt: connect within, and get the whole answer within, these many seconds.
WEBHOOK_CONNECT_TIMEOUT = float(env("WEBHOOK_CONNECT_TIMEOUT", "5"))
WEBHOOK_TIMEOUT = float(env("WEBHOOK_TIMEOUT", "10"))
# At most this many drains (each with one attempt in flight) per endpoint; another one waits
# WEBHOOK_DEFER seconds, so one slow receiver holds at most that many worker processes. A drain
# holds its slot and its deliveries at most this many seconds past its budget and one attempt's
# timeouts (a worker that died mid-attempt gives them back then).
WEBHOOK_LEASE_MARGIN = float(env("WEBHOOK_LEASE_MARGIN", "30"))
WEBHOOK_ENDPOINT_CONCURRENCY = env_int("WEBHOOK_ENDPOINT_CONCURRENCY", 2)
# A drain sends an endpoint's due deliveries one after another over one connection, claiming
# WEBHOOK_BATCH at a time; it starts no new attempt after WEBHOOK_DRAIN_BUDGET seconds and
# leaves the rest to the next drain, so that busy endpoints take turns with the sagas.
WEBHOOK_BATCH = env_int("WEBHOOK_BATCH", 50)
WEBHOOK_DRAIN_BUDGET = float(env("WEBHOOK_DRAIN_BUDGET", "1"))
# An endpoint's first event in a second is sent at once; the events that follow it within the
# second go together, in one drain this many seconds later (0: every event wakes a drain at
# once). Larger: fewer drains on a busy endpoint, later deliveries.
WEBHOOK_BATCH_WINDOW = float(env("WEBHOOK_BATCH_WINDOW", "1"))
WEBHOOK_DEFER = float(env("WEBHOOK_DEFER", "0.5"))
# Circuit per endpoint: after this many failed attempts in a row its deliveries wait
# `cool_down` seconds (without spending retries), then one probe at a time until one succeeds.
WEBHOOK_CIRCUIT = env_json("WEBHOOK_CIRCUIT", {"failure_threshold": 5, "cool_down": 60})
# An endpoint whose attempts have all failed for this long is disabled; its owner and the
# operators (ADMINS) are told.
WEBHOOK_DISABLE_AFTER = env_int("WEBHOOK_DISABLE_AFTER", 5 * 24 * 3600)
# A retry due within this many seconds is sent with a countdown; a later one by the sweeper
# (a worker holds countdown messages in memory until they are due).
WEBHOOK_COUNTDOWN_MAX = float(env("WEBHOOK_COUNTDOWN_MAX", "300"))
# The sweeper sends a due delivery again when its message has not been taken this long after
# it was due (lost between commit and broker, or its worker died).
WEBHOOK_REDISPATCH_AFTER = float(env("WEBHOOK_REDISPATCH_AFTER", "60"))
WEBHOOK_SWEEP_BATCH = env_int("WEBHOOK_SWEEP_BATCH", 500)
# A delivery sent again this many times by the sweeper without any outcome has failed.
WEBHOOK_MAX_DISPATCHES = env_int("WEBHOOK_MAX_DISPATCHES", 10)
# The events feed hides events younger than this (seconds), so that a transaction that took
# its event id earlier but committed later is not skipped by a client reading `after=<id>`.
WEBHOOK_FEED_SETTLE = float(env("WEBHOOK_FEED_SETTLE", "2"))
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    **SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"],  # type: ignore[dict-item]
    "EventTypeEnum": WEBHOOK_EVENT_TYPES,
}
