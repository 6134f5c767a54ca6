"""novitai settings: every value comes from the environment (see .env.example).

Embedded mode (no DATABASE_URL, no REDIS_URL): SQLite, kombu's SQLAlchemy transport on a SQLite
file, and file-based caches shared by every process on the machine. With DATABASE_URL and
REDIS_URL set the same code runs on Postgres and Redis.
"""

from __future__ import annotations

import base64
import os
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from novitai import embedded_redis, localenv
from novitai.novita.ceiling import Ceiling

BASE_DIR = Path(__file__).resolve().parent.parent
UNDER_PYTEST = bool(os.environ.get("PYTEST_VERSION"))

env = environ.Env()
# A .env file beside manage.py is read if present; variables already set win.
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Runtime files of embedded mode (SQLite database, broker, caches, beat schedule, metrics).
# Tests get their own folder so that a running `make run` and `make test` never share state.
VAR_DIR = localenv.var_dir(os.environ, BASE_DIR) / (
    "test" if UNDER_PYTEST and "NOVITAI_VAR_DIR" not in os.environ else ""
)
VAR_DIR.mkdir(parents=True, exist_ok=True)
# The checkout's local profile, written by `make run` (novitai/localenv.py): its generated
# SECRET_KEY and ENCRYPTION_KEYS, and whether embedded mode runs its own Redis, so that
# `manage.py …` and `make flower` work as `make run` does. Set variables and .env win; the tests
# set their own.
if not UNDER_PYTEST:
    localenv.apply(VAR_DIR / localenv.FILE_NAME, os.environ)

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if DEBUG or UNDER_PYTEST:
        SECRET_KEY = localenv.LEGACY_DEBUG_SECRET_KEY
    else:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (`make run` writes one for this checkout "
            f"into {VAR_DIR / localenv.FILE_NAME}; production sets its own)"
        )

# Fernet keys that encrypt secrets at rest (instances' envs, templates' envs, webhook secrets):
# the first encrypts, every one decrypts (novitai/crypto.py; `manage.py encryption_rotate`).
# Without DEBUG they must be set; with DEBUG and in the tests a key derived from SECRET_KEY is
# used, which is no secret once SECRET_KEY is not one (development only).
ENCRYPTION_KEYS = env.list("ENCRYPTION_KEYS", default=[])
if not ENCRYPTION_KEYS:
    if DEBUG or UNDER_PYTEST:
        ENCRYPTION_KEYS = [localenv.development_encryption_key(SECRET_KEY)]
    else:
        raise ImproperlyConfigured(
            "ENCRYPTION_KEYS must be set when DEBUG is off. Generate one: python -c "
            "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        )
for _key in ENCRYPTION_KEYS:
    try:
        _valid = len(base64.urlsafe_b64decode(_key.encode())) == 32
    except ValueError:
        _valid = False
    if not _valid:
        raise ImproperlyConfigured(
            "ENCRYPTION_KEYS: every key is a Fernet key (url-safe base64 of 32 bytes)"
        )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
# Origins allowed to POST forms (the admin, the browsable API): the public https:// origin when
# a proxy serves novitai under another host or port than the one Django sees.
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django_prometheus",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "novitai",
    "tenants",
    "catalog",
    "jobs",
    "instances",
    "storage",
    "webhooks",
    "billing",
    "overview",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "novitai.middleware.RequestIdMiddleware",
    # Outside the others, so that it sees every error answer (a foreign Host is refused inside).
    "novitai.debug.LoopbackDebugPagesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "novitai.middleware.ApiErrorEnvelopeMiddleware",
    # Turns a locked-out admin login into its 429 page (django-axes; the API is not affected).
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "novitai.urls"
WSGI_APPLICATION = "novitai.wsgi.application"
ASGI_APPLICATION = "novitai.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The console's versions of the admin's own templates (index, base_site): an app's
        # templates are found after django.contrib.admin's, a folder here before them.
        "DIRS": [BASE_DIR / "overview" / "admin_templates"],
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

# --- Database -------------------------------------------------------------------------------

_PROMETHEUS_ENGINES = {
    "django.db.backends.sqlite3": "django_prometheus.db.backends.sqlite3",
    "django.db.backends.postgresql": "django_prometheus.db.backends.postgresql",
}

DATABASES = {
    "default": env.db_url_config(
        env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
    ),
}
_db = DATABASES["default"]
_db["ENGINE"] = _PROMETHEUS_ENGINES.get(_db["ENGINE"], _db["ENGINE"])
if _db["ENGINE"].endswith("sqlite3"):
    # Several processes (web, worker, beat) share one file: wait for locks instead of failing,
    # take the write lock at BEGIN so that two writers never deadlock on an upgrade, and let
    # readers proceed beside a writer.
    _db.setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not memory, so that a Celery worker in another process sees the test database.
    _db["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
else:
    _db["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    _db["CONN_HEALTH_CHECKS"] = True
DATABASE_IS_SQLITE = _db["ENGINE"].endswith("sqlite3")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache and broker ----------------------------------------------------------------


def _redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


REDIS_URL = env.str("REDIS_URL", default="")
# Embedded mode's own Redis (`make run` starts it when a redis-server binary is found; see
# novitai/embedded_redis.py): the same broker and caches as production, on a unix socket in
# VAR_DIR. Without it embedded mode uses kombu's SQLAlchemy transport and file caches.
EMBEDDED_REDIS = not REDIS_URL and env.bool("EMBEDDED_REDIS", default=False)
# No Redis at all: file caches and the SQLAlchemy transport.
EMBEDDED_MODE = not REDIS_URL and not EMBEDDED_REDIS
# Tests use other database numbers so that they never touch a running instance's queues.
_BROKER_DB, _CACHE_DB = (10, 11) if UNDER_PYTEST else (0, 1)

# novitai's named caches. Each is its own cache alias, so that one can be cleared, counted and
# inspected without touching the others (or the broker's keys).
NOVITAI_CACHES = ["default", "catalog", "templates", "novita"]

if REDIS_URL or EMBEDDED_REDIS:
    CACHE_REDIS_URL = env.str("CACHE_REDIS_URL", default="") or (
        _redis_db(REDIS_URL, _CACHE_DB)
        if REDIS_URL
        else embedded_redis.cache_url(VAR_DIR, _CACHE_DB)
    )
    CACHES = {
        alias: {
            "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_REDIS_URL,
            "KEY_PREFIX": f"novitai:{alias}",
            "TIMEOUT": 300,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                # JSON, not pickle: a write to Redis must never become code run here.
                "SERIALIZER": "novitai.cache_backends.JSONSerializer",
                "SOCKET_CONNECT_TIMEOUT": 2,
                "SOCKET_TIMEOUT": 2,
            },
        }
        for alias in NOVITAI_CACHES
    }
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or (
        _redis_db(REDIS_URL, _BROKER_DB)
        if REDIS_URL
        else embedded_redis.broker_url(VAR_DIR, _BROKER_DB)
    )
else:
    CACHES = {
        alias: {
            # django-prometheus' file cache, storing JSON instead of pickles.
            "BACKEND": "novitai.cache_backends.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache" / alias),
            "TIMEOUT": 300,
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
        for alias in NOVITAI_CACHES
    }
    CELERY_BROKER_URL = (
        env.str("CELERY_BROKER_URL", default="") or f"sqla+sqlite:///{VAR_DIR / 'broker.sqlite3'}"
    )

# While Redis (a cache or the broker) is unreachable the API carries on without it
# (novitai/outages.py); a process that saw it fail tries it again after this many seconds, so that
# a Redis that hangs rather than refuses costs one socket timeout per period, not one per call.
OUTAGE_RETRY_SECONDS = env.float("OUTAGE_RETRY_SECONDS", default=5.0)

# --- Celery (why each setting: docs/architecture.md §9) ------------------------------------

CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=1800)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 30
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "instances.provision": {"queue": "provision"},
    "instances.action": {"queue": "provision"},
    "instances.capacity_sweep": {"queue": "provision"},
    "instances.monitor": {"queue": "monitor"},
    "instances.idle_stop": {"queue": "monitor"},
    # it may wait at the rate ceiling (its reads go last): not on the monitor's queue
    "instances.access_details_read": {"queue": "provision"},
    "instances.money_sweep": {"queue": "monitor"},
    "instances.reconcile": {"queue": "monitor"},
    "catalog.*": {"queue": "monitor"},
    "jobs.*": {"queue": "monitor"},
    "webhooks.*": {"queue": "webhooks"},
    "storage.image_save_start": {"queue": "provision"},
    "storage.image_saves_follow": {"queue": "monitor"},
}
# A publish to a Redis that stopped answering (but still accepts connections) would wait forever
# without a socket timeout, and with it a create request; kombu's BRPOP polls every second.
CELERY_BROKER_SOCKET_TIMEOUT = env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=5.0)
if CELERY_BROKER_URL.startswith("redis"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        "socket_timeout": CELERY_BROKER_SOCKET_TIMEOUT,
        "socket_connect_timeout": min(2.0, CELERY_BROKER_SOCKET_TIMEOUT),
    }
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Beat claims each tick's interval slot in the cache, so that a second beat sends nothing twice.
CELERY_BEAT_SCHEDULER = "novitai.beat:Scheduler"
# Periodic tasks, each entry named after its task; each is safe if run twice at once (claims
# rows, conditional updates). Beat claims ticks per entry name (novitai/beat.py).
CELERY_BEAT_SCHEDULE: dict[str, dict] = {}

# A worker writes a heartbeat into the cache this often; /health/ready reports the newest.
WORKER_HEARTBEAT_SECONDS = env.int("WORKER_HEARTBEAT_SECONDS", default=10)
HEALTH_WORKER_MAX_AGE_SECONDS = env.int("HEALTH_WORKER_MAX_AGE_SECONDS", default=60)
# When this run started (Unix time): `make run` sets it for all its processes, gunicorn's
# master for its workers (gunicorn.conf.py); else this process's start. /health/ready counts no
# worker heartbeat older than it (a previous run's worker may be gone).
NOVITAI_STARTED_AT = env.float("NOVITAI_STARTED_AT", default=time.time())
# /health/ready reports a queue as down when its oldest due job or webhook delivery has waited
# longer than this (seconds), or the last monitoring pass ended longer ago: not served.
HEALTH_QUEUE_MAX_AGE_SECONDS = env.int("HEALTH_QUEUE_MAX_AGE_SECONDS", default=120)
# Checks whose failure makes /health/ready answer 503. The others are reported only.
HEALTH_REQUIRED_CHECKS = env.list("HEALTH_REQUIRED_CHECKS", default=["database", "cache", "broker"])

# --- Novita ---------------------------------------------------------------------------------

NOVITA_API_KEY = env.str("NOVITA_API_KEY", default="")
NOVITA_API_BASE_URL = (
    env.str("NOVITA_API_BASE_URL", default="") or "https://api.novita.ai/gpu-instance/openapi/v1"
).rstrip("/")
# Novita's core surface (billing, GPU metrics). "" derives it from NOVITA_API_BASE_URL when
# the client is built (…/gpu-instance/openapi/v1 -> …/openapi/v1), so tests that point the base
# URL at a sandbox get its core surface too.
NOVITA_CORE_API_BASE_URL = env.str("NOVITA_CORE_API_BASE_URL", default="").rstrip("/")
NOVITA_CONNECT_TIMEOUT = env.float("NOVITA_CONNECT_TIMEOUT", default=5.0)
NOVITA_READ_TIMEOUT = env.float("NOVITA_READ_TIMEOUT", default=15.0)
NOVITA_CREATE_TIMEOUT = env.float("NOVITA_CREATE_TIMEOUT", default=30.0)
NOVITA_MAX_RETRIES = env.int("NOVITA_MAX_RETRIES", default=3)
NOVITA_BACKOFF_BASE = env.float("NOVITA_BACKOFF_BASE", default=0.5)
NOVITA_BACKOFF_CAP = env.float("NOVITA_BACKOFF_CAP", default=8.0)
# Novita's request-rate ceiling as Novita states it: calls per window ("100/60s", "600/min",
# "10/s") or a rate per second ("1.6667"); kept exactly, fractions included, across every process
# (novitai/novita/ratelimit.py). Unset: NOVITA_RATE_LIMIT_PER_SECOND (10). 0 = no ceiling.
try:
    NOVITA_RATE_LIMIT = Ceiling.parse(
        env.str("NOVITA_RATE_LIMIT", default="")
        or env.str("NOVITA_RATE_LIMIT_PER_SECOND", default="10")
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"NOVITA_RATE_LIMIT: {exc}") from None
# The same as a rate (what readers of the figure use; a test may set it alone).
NOVITA_RATE_LIMIT_PER_SECOND = NOVITA_RATE_LIMIT.per_second
# Calls that may go at once after a quiet spell. 1 keeps every window of Novita's within the
# ceiling; more trades that for less waiting (at most burst - 1 calls over, in any window).
NOVITA_RATE_LIMIT_BURST = env.int("NOVITA_RATE_LIMIT_BURST", default=1)
# While the shared cache is unreachable (Redis down) each process keeps its own ceiling at this
# rate (default: a quarter of the shared one), so that an outage never means unlimited calls.
NOVITA_RATE_LIMIT_LOCAL_PER_SECOND = env.float(
    "NOVITA_RATE_LIMIT_LOCAL_PER_SECOND", default=NOVITA_RATE_LIMIT_PER_SECOND / 4
)
NOVITA_BREAKER_FAILURE_THRESHOLD = env.int("NOVITA_BREAKER_FAILURE_THRESHOLD", default=5)
NOVITA_BREAKER_RESET_SECONDS = env.float("NOVITA_BREAKER_RESET_SECONDS", default=30.0)
NOVITA_LIST_PAGE_SIZE = env.int("NOVITA_LIST_PAGE_SIZE", default=100)
# Every upstream instance novitai creates is named "<prefix>-<id>". Two deployments sharing
# one Novita account need different prefixes: the orphan sweeper deletes unknown names.
NOVITA_NAME_PREFIX = env.str("NOVITA_NAME_PREFIX", default="novitai")

# --- Catalog --------------------------------------------------------------------------------

CATALOG_SYNC_INTERVAL_SECONDS = env.int("CATALOG_SYNC_INTERVAL_SECONDS", default=600)
CATALOG_TEMPLATE_TTL_SECONDS = env.int("CATALOG_TEMPLATE_TTL_SECONDS", default=600)
CATALOG_OFFER_TTL_SECONDS = env.int("CATALOG_OFFER_TTL_SECONDS", default=60)
CATALOG_CAPACITY_MEMORY_SECONDS = env.int("CATALOG_CAPACITY_MEMORY_SECONDS", default=180)
# Region codes tried after the preferred one, in this order; then any other region by price.
CATALOG_REGION_FALLBACK_ORDER = env.list("CATALOG_REGION_FALLBACK_ORDER", default=[])
# >>> catalog -------------------------------------------------------------------------------------
CELERY_BEAT_SCHEDULE["catalog.sync"] = {
    "task": "catalog.sync",
    "schedule": float(CATALOG_SYNC_INTERVAL_SECONDS),
    "options": {"expires": float(CATALOG_SYNC_INTERVAL_SECONDS)},
}
# <<< catalog -------------------------------------------------------------------------------------

# --- Provisioning ---------------------------------------------------------------------------

MONITOR_INTERVAL_SECONDS = env.float("MONITOR_INTERVAL_SECONDS", default=3.0)
# With nothing in transit (and no ready spot instance), Novita is listed this often instead, only
# to catch drift (an instance deleted or started outside novitai). <= the interval: every pass.
MONITOR_STEADY_INTERVAL_SECONDS = env.float("MONITOR_STEADY_INTERVAL_SECONDS", default=30.0)
SWEEP_INTERVAL_SECONDS = env.float("SWEEP_INTERVAL_SECONDS", default=15.0)
JOB_LEASE_SECONDS = env.int("JOB_LEASE_SECONDS", default=300)
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=5)
PROVISION_MAX_OFFERS = env.int("PROVISION_MAX_OFFERS", default=5)
# Deadlines of each phase, in seconds.
STARTUP_TIMEOUT_SECONDS = env.int("STARTUP_TIMEOUT_SECONDS", default=1200)
HEALTH_CHECK_TIMEOUT_SECONDS = env.int("HEALTH_CHECK_TIMEOUT_SECONDS", default=600)
STOP_TIMEOUT_SECONDS = env.int("STOP_TIMEOUT_SECONDS", default=600)
DELETE_TIMEOUT_SECONDS = env.int("DELETE_TIMEOUT_SECONDS", default=600)
HEALTH_CHECK_REQUEST_TIMEOUT_SECONDS = env.float(
    "HEALTH_CHECK_REQUEST_TIMEOUT_SECONDS", default=5.0
)
# An unknown create is looked up by name; not found for this long means it never happened.
CREATE_UNKNOWN_GRACE_SECONDS = env.int("CREATE_UNKNOWN_GRACE_SECONDS", default=60)
ORPHAN_GRACE_SECONDS = env.int("ORPHAN_GRACE_SECONDS", default=600)
# A reclaimed spot instance created with on_preempt restart/reprovision is recovered at most
# this many times; after that it stays preempted.
SPOT_RECOVERY_MAX_ATTEMPTS = env.int("SPOT_RECOVERY_MAX_ATTEMPTS", default=3)
# How often ready instances with an idle_timeout are checked (and stopped once idle).
IDLE_CHECK_INTERVAL_SECONDS = env.float("IDLE_CHECK_INTERVAL_SECONDS", default=30.0)
# GPU metrics for idle_policy (instances/gpu_idle.py): each instance's read at most this often
# (Novita's points lag about a minute), and at most this many instances read per idle pass.
GPU_METRICS_READ_INTERVAL_SECONDS = env.float("GPU_METRICS_READ_INTERVAL_SECONDS", default=60.0)
GPU_METRICS_BATCH_SIZE = env.int("GPU_METRICS_BATCH_SIZE", default=50)
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=48)
# >>> money (issue 13): spend caps, lifetimes ---------------------------------------------------
# How often the money sweep acts on due spend caps and expiries (seconds).
MONEY_SWEEP_INTERVAL_SECONDS = env.float("MONEY_SWEEP_INTERVAL_SECONDS", default=30.0)
# The instance.expiring webhook goes out this long before an instance's expires_at (seconds).
EXPIRY_WARNING_SECONDS = env.float("EXPIRY_WARNING_SECONDS", default=600.0)
# Reconciliation: every RECONCILE_INTERVAL_SECONDS the ledger of the last RECONCILE_WINDOW_SECONDS
# (ending RECONCILE_LAG_SECONDS ago: what Novita has settled) is compared with Novita's bills; a
# difference over RECONCILE_DRIFT_PERCENT of the bill and over RECONCILE_DRIFT_MIN_USD is a drift.
RECONCILE_INTERVAL_SECONDS = env.float("RECONCILE_INTERVAL_SECONDS", default=3600.0)
RECONCILE_WINDOW_SECONDS = env.float("RECONCILE_WINDOW_SECONDS", default=3600.0)
RECONCILE_LAG_SECONDS = env.float("RECONCILE_LAG_SECONDS", default=600.0)
RECONCILE_DRIFT_PERCENT = env.float("RECONCILE_DRIFT_PERCENT", default=1.0)
RECONCILE_DRIFT_MIN_USD = env.float("RECONCILE_DRIFT_MIN_USD", default=0.01)
# >>> provisioning (issue 5): job retries, monitor pass, periodic tasks --------------------------
# Backoff of a job after a retryable error: capped exponential with full jitter (seconds).
JOB_RETRY_BACKOFF_BASE_SECONDS = env.float("JOB_RETRY_BACKOFF_BASE_SECONDS", default=2.0)
JOB_RETRY_BACKOFF_CAP_SECONDS = env.float("JOB_RETRY_BACKOFF_CAP_SECONDS", default=120.0)
# A due job whose task was sent but not claimed is sent again after this long (lost message).
JOB_REDISPATCH_SECONDS = env.float("JOB_REDISPATCH_SECONDS", default=60.0)
# Health checks of one pass run in a thread pool of this size.
HEALTH_CHECK_CONCURRENCY = env.int("HEALTH_CHECK_CONCURRENCY", default=16)
# The monitor pass writes in batches of this many rows (a transaction per batch of transitions).
MONITOR_WRITE_BATCH_SIZE = env.int("MONITOR_WRITE_BATCH_SIZE", default=500)
# A delete that Novita has not carried out is asked again after this long (seconds).
DELETE_REISSUE_SECONDS = env.float("DELETE_REISSUE_SECONDS", default=60.0)
# An Idempotency-Key whose first request died mid-way is taken over after this long (seconds).
IDEMPOTENCY_IN_FLIGHT_SECONDS = env.int("IDEMPOTENCY_IN_FLIGHT_SECONDS", default=60)
CELERY_BEAT_SCHEDULE["instances.monitor"] = {
    "task": "instances.monitor",
    "schedule": MONITOR_INTERVAL_SECONDS,
    "options": {"expires": max(1.0, MONITOR_INTERVAL_SECONDS * 2)},
}
CELERY_BEAT_SCHEDULE["instances.money_sweep"] = {
    "task": "instances.money_sweep",
    "schedule": MONEY_SWEEP_INTERVAL_SECONDS,
    "options": {"expires": max(1.0, MONEY_SWEEP_INTERVAL_SECONDS * 2)},
}
CELERY_BEAT_SCHEDULE["instances.reconcile"] = {
    "task": "instances.reconcile",
    "schedule": RECONCILE_INTERVAL_SECONDS,
    "options": {"expires": max(1.0, RECONCILE_INTERVAL_SECONDS)},
}
# Where to ssh (and the log address) of a ready instance: read from its own page, at low priority,
# this often and at most this many instances a run (the monitoring pass never waits on it).
ACCESS_DETAILS_INTERVAL_SECONDS = env.float("ACCESS_DETAILS_INTERVAL_SECONDS", default=10.0)
ACCESS_DETAILS_BATCH_SIZE = env.int("ACCESS_DETAILS_BATCH_SIZE", default=20)
CELERY_BEAT_SCHEDULE["instances.access_details_read"] = {
    "task": "instances.access_details_read",
    "schedule": ACCESS_DETAILS_INTERVAL_SECONDS,
    "options": {"expires": max(1.0, ACCESS_DETAILS_INTERVAL_SECONDS * 2)},
}
CELERY_BEAT_SCHEDULE["instances.idle_stop"] = {
    "task": "instances.idle_stop",
    "schedule": IDLE_CHECK_INTERVAL_SECONDS,
    "options": {"expires": max(1.0, IDLE_CHECK_INTERVAL_SECONDS * 2)},
}
# Save-image jobs: followed this often (one listing of Novita's jobs for all), and a save still
# pending this long after its start message was sent is sent again.
IMAGE_SAVE_FOLLOW_INTERVAL_SECONDS = env.float("IMAGE_SAVE_FOLLOW_INTERVAL_SECONDS", default=10.0)
IMAGE_SAVE_RESEND_SECONDS = env.float("IMAGE_SAVE_RESEND_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE["storage.image_saves_follow"] = {
    "task": "storage.image_saves_follow",
    "schedule": IMAGE_SAVE_FOLLOW_INTERVAL_SECONDS,
    "options": {"expires": max(1.0, IMAGE_SAVE_FOLLOW_INTERVAL_SECONDS * 2)},
}
CELERY_BEAT_SCHEDULE["jobs.sweep"] = {
    "task": "jobs.sweep",
    "schedule": SWEEP_INTERVAL_SECONDS,
    "options": {"expires": max(1.0, SWEEP_INTERVAL_SECONDS * 2)},
}
CELERY_BEAT_SCHEDULE["instances.idempotency_keys_purge"] = {
    "task": "instances.idempotency_keys_purge",
    "schedule": 3600.0,
    "options": {"expires": 600.0},
}
# <<< provisioning ------------------------------------------------------------------------------
# >>> capacity (issue 16): waiting for capacity -------------------------------------------------
# A waiting instance is tried again as soon as a catalog sync shows an acceptable offer, and at
# the latest after a capped backoff: base, doubling per attempt, up to the cap (seconds).
CAPACITY_RETRY_BASE_SECONDS = env.float("CAPACITY_RETRY_BASE_SECONDS", default=15.0)
CAPACITY_RETRY_MAX_SECONDS = env.float("CAPACITY_RETRY_MAX_SECONDS", default=300.0)
# How often the capacity sweep looks at waiting instances (no upstream call of its own).
CAPACITY_SWEEP_INTERVAL_SECONDS = env.float("CAPACITY_SWEEP_INTERVAL_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE["instances.capacity_sweep"] = {
    "task": "instances.capacity_sweep",
    "schedule": CAPACITY_SWEEP_INTERVAL_SECONDS,
    "options": {"expires": max(1.0, CAPACITY_SWEEP_INTERVAL_SECONDS * 2)},
}
# <<< capacity ----------------------------------------------------------------------------------

# --- Webhooks -------------------------------------------------------------------------------

WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# Seconds between attempts; after the last one the delivery is marked failed (~27 h in all).
WEBHOOK_RETRY_SCHEDULE = env.list(
    "WEBHOOK_RETRY_SCHEDULE", cast=int, default=[5, 300, 1800, 7200, 18000, 36000, 36000]
)
WEBHOOK_SECRET_ROTATION_OVERLAP_HOURS = env.int("WEBHOOK_SECRET_ROTATION_OVERLAP_HOURS", default=24)
# >>> webhooks (issue 6): delivery sweeper, connect timeout, CA bundle -------------------------
WEBHOOK_CONNECT_TIMEOUT_SECONDS = env.float("WEBHOOK_CONNECT_TIMEOUT_SECONDS", default=3.0)
# Extra CAs for receivers behind a private CA (a PEM file); empty: the system's trust store.
WEBHOOK_CA_BUNDLE = env.str("WEBHOOK_CA_BUNDLE", default="")
# How often the sweeper re-drives due deliveries whose wake-up message was lost or never sent.
WEBHOOK_SWEEP_INTERVAL_SECONDS = env.float("WEBHOOK_SWEEP_INTERVAL_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE["webhooks.sweep"] = {
    "task": "webhooks.sweep",
    "schedule": WEBHOOK_SWEEP_INTERVAL_SECONDS,
    "options": {"expires": WEBHOOK_SWEEP_INTERVAL_SECONDS * 2},
}
# <<< webhooks ----------------------------------------------------------------------------------

# --- API ------------------------------------------------------------------------------------

API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", default="1200/min")
# Retry-After of the 503 `service_unavailable` answered while the database cannot be reached.
SERVICE_UNAVAILABLE_RETRY_AFTER_SECONDS = env.int(
    "SERVICE_UNAVAILABLE_RETRY_AFTER_SECONDS", default=5
)
# A key's last_used_at is written at most this often (seconds): no write on most requests.
API_KEY_LAST_USED_INTERVAL_SECONDS = env.int("API_KEY_LAST_USED_INTERVAL_SECONDS", default=300)
# Failed API keys per client address per period; past it the address is answered 429 (any key).
API_AUTH_FAILURE_RATE = env.str("API_AUTH_FAILURE_RATE", default="20/min")
# Proxies in front of novitai that append to X-Forwarded-For (0: clients connect directly). The
# client address of every throttle and lockout is counted from the right of that header.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
API_PAGE_SIZE = env.int("API_PAGE_SIZE", default=50)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.authentication.TenantKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.permissions.IsTenantOrStaff"],
    "DEFAULT_THROTTLE_CLASSES": ["tenants.throttling.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": API_THROTTLE_RATE},
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,  # never an X-Forwarded-For the client wrote itself
    "DEFAULT_PAGINATION_CLASS": "novitai.pagination.Pagination",
    "PAGE_SIZE": API_PAGE_SIZE,
    "DEFAULT_SCHEMA_CLASS": "novitai.schema.AutoSchema",
    "EXCEPTION_HANDLER": "novitai.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["novitai.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "novitai API",
    "DESCRIPTION": "A control plane for GPU instances on Novita.ai.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "novitai.schema.postprocess_error_responses",
    ],
    # Swagger UI and ReDoc from drf-spectacular-sidecar's static files, not a CDN: the docs
    # work offline and load nothing from another host (no validator badge either).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # ReDoc is the sidecar's bundle too, served by novitai/views.py without its CDN logo.
    "REDOC_DIST": "/api/redoc/dist",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "ENUM_NAME_OVERRIDES": {
        "WebhookDeliveryStatusEnum": "webhooks.models.DeliveryStatus",  # webhooks (issue 6)
        "WebhookAttemptResultEnum": "webhooks.models.AttemptResult",  # webhooks (issue 6)
        "BillingModeEnum": "instances.models.BillingMode",  # capacity (issue 16)
        # Idle stop and the spend cap both stop or delete (money, issue 13): one enum.
        "StopOrDeleteEnum": "instances.models.OnIdle",
    },
}

# --- Auth, i18n, static ---------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# The admin's login (the browsable API's too: LOGIN_URL) goes through django-axes, which locks a
# username out from the client address that keeps failing it (another address can still log
# in: an attacker cannot lock the operators out). API keys never reach Django's authenticate():
# failed keys are throttled per address instead (tenants/auth_throttle.py).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ONLY_ADMIN_SITE = True
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("ADMIN_LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "novitai.client_ip.client_ip"
LOGIN_URL = "/admin/login/"
LANGUAGE_CODE = "en-us"
# The admin's dates to the second, in one format everywhere (novitai/formats/en/formats.py).
FORMAT_MODULE_PATH = ["novitai.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default="") or VAR_DIR / "static")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Without DEBUG, whitenoise serves the admin's and the API docs' files from STATIC_ROOT
# (collectstatic); with DEBUG it finds them in the apps.
WHITENOISE_USE_FINDERS = DEBUG

SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True

# --- HTTPS ----------------------------------------------------------------------------------
# Served over HTTPS (gunicorn behind a TLS-terminating proxy): secure cookies, HSTS and a
# redirect of plain HTTP. On by default without DEBUG; each setting below can still say
# otherwise. SECURE_HTTPS=false serves plain HTTP (a local try-out of the containers). The test
# suite's client speaks plain HTTP: its tests of these settings set them.
SECURE_HTTPS = env.bool("SECURE_HTTPS", default=not (DEBUG or UNDER_PYTEST))
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=SECURE_HTTPS)
# Probes and the Prometheus scraper talk to the process directly, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=SECURE_HTTPS)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=SECURE_HTTPS)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if SECURE_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=SECURE_HTTPS)
# Consent to the browsers' preload list is the domain owner's decision (hard to undo): off
# unless set, and `check --deploy` says so (security.W021) until it is.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# The header a TLS-terminating proxy sets, "HTTP_X_FORWARDED_PROTO,https". Only behind a proxy
# that always sets it (overwriting the client's): otherwise any client can claim HTTPS.
_proxy_ssl_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header and len(_proxy_ssl_header) != 2:
    raise ImproperlyConfigured("SECURE_PROXY_SSL_HEADER must be '<META name>,<value>'")
SECURE_PROXY_SSL_HEADER = (
    (_proxy_ssl_header[0], _proxy_ssl_header[1]) if _proxy_ssl_header else None
)
# Debug pages and error reports mask every URL's password (novitai/debug.py).
DEFAULT_EXCEPTION_REPORTER = "novitai.debug.ExceptionReporter"

# --- Metrics --------------------------------------------------------------------------------

PROMETHEUS_EXPORT_MIGRATIONS = False
PROMETHEUS_METRIC_NAMESPACE = ""

# --- Logging --------------------------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("LOG_FORMAT must be 'json' or 'text'")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "novitai.logging.ContextFilter"},
        "redact": {"()": "novitai.logging.RedactingFilter"},
    },
    "formatters": {
        "json": {"()": "novitai.logging.JsonFormatter"},
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "urllib3": {"level": "WARNING"},
    },
}
