"""SCEP settings: the one place every knob is read, all from environment variables.

The embedded default (no variables set) needs no server: SQLite under ``var/`` and a
Celery broker on the filesystem (kombu's ``filesystem://`` transport, folder
``var/broker``). Production selects PostgreSQL and Redis/RabbitMQ with ``DATABASE_URL``
and ``CELERY_BROKER_URL``.
"""

from __future__ import annotations

import socket
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from scep.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("SCEP_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("SECRET_KEY", "scep-insecure-development-key-change-me")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "audit",
    "injectors",
    "experiments",
    "analysis",
    "campaigns",
    "observability",
    "notifications",
    "governance",
    "django_prometheus",
    "django_htmx",
    "web",
]

MIDDLEWARE = [
    # django-prometheus: Before must be first and After last to time the whole stack.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "scep.security.ContentSecurityPolicyMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# --- HTTP hardening (docs/governance.md) ------------------------------------------------
# SCEP_HTTPS=true (behind TLS) turns on the redirect, secure cookies and HSTS together.
SCEP_HTTPS = env_bool("SCEP_HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("SCEP_SECURE_SSL_REDIRECT", SCEP_HTTPS)
SESSION_COOKIE_SECURE = env_bool("SCEP_SECURE_COOKIES", SCEP_HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("SCEP_HSTS_SECONDS", 31536000 if SCEP_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SCEP_HSTS_INCLUDE_SUBDOMAINS", SCEP_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SCEP_HSTS_PRELOAD", SCEP_HTTPS)
if env_bool("SCEP_TRUST_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SCEP_TRUST_X_FORWARDED_FOR = env_bool("SCEP_TRUST_X_FORWARDED_FOR", False)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Every asset is served by SCEP itself (Swagger UI too, from drf-spectacular-sidecar), so
# no other origin is allowed; Swagger UI's bootstrap script is inline.
SCEP_CSP = env_str(
    "SCEP_CSP",
    "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'; form-action 'self'",
)
# Login throttling: this many failures per (username, address) lock it for the window.
SCEP_LOGIN_MAX_FAILURES = env_int("SCEP_LOGIN_MAX_FAILURES", 5, minimum=1)
SCEP_LOGIN_LOCKOUT_S = env_int("SCEP_LOGIN_LOCKOUT_S", 900, minimum=1)
AUTHENTICATION_BACKENDS = ["scep.security.LoginRateLimitBackend"]  # ModelBackend + limit
_cache_url = env_str("SCEP_CACHE_URL", "locmem://")
if _cache_url.startswith(("redis://", "rediss://")):
    _redis_cache = "django.core.cache.backends.redis.RedisCache"
    CACHES = {"default": {"BACKEND": _redis_cache, "LOCATION": _cache_url}}
elif _cache_url == "locmem://":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise ImproperlyConfigured(f"SCEP_CACHE_URL={_cache_url!r}: expected locmem:// or redis://")
# Run list pages cached under a database-kept change counter (experiments.services.run_list).
SCEP_API_LIST_CACHE = env_bool("SCEP_API_LIST_CACHE", True)
SCEP_API_LIST_CACHE_TTL_S = env_int("SCEP_API_LIST_CACHE_TTL_S", 300, minimum=1)
# API callers (token → user and roles) kept per web process under the principals counter.
SCEP_API_CALLER_CACHE = env_bool("SCEP_API_CALLER_CACHE", True)

ROOT_URLCONF = "scep.urls"
WSGI_APPLICATION = "scep.wsgi.application"

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

# --- Database -------------------------------------------------------------------------
_DEFAULT_DB_URL = f"sqlite:///{VAR_DIR / 'scep.sqlite3'}"
_db_url = env_str("DATABASE_URL", _DEFAULT_DB_URL)
# Persistent connections (seconds; 0 = a new connection per request): otherwise every
# API request pays a PostgreSQL connect (and a server backend start). Health checks drop
# a connection the server closed instead of failing the next request on it.
_conn_max_age = env_int("SCEP_DB_CONN_MAX_AGE", 60, minimum=0)
try:
    _db = dj_database_url.parse(_db_url, conn_max_age=_conn_max_age, conn_health_checks=True)
except Exception as exc:  # dj_database_url raises several types for bad URLs
    raise ImproperlyConfigured(f"DATABASE_URL={_db_url!r}: {exc}") from None
if not _db.get("ENGINE"):
    raise ImproperlyConfigured(f"DATABASE_URL={_db_url!r}: unsupported database scheme")
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, agent) share the file: wait for locks instead of
    # failing, and let readers proceed while a writer commits.
    _db["OPTIONS"] = {
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    _db["TEST"] = {"NAME": str(VAR_DIR / "test_scep.sqlite3")}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- Web UI ---------------------------------------------------------------------------
LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:dashboard"
LOGOUT_REDIRECT_URL = "web:login"

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes DRF answer 401, not 403, to
    # anonymous callers.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "scep.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["scep.permissions.RolePermission"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "scep.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SCEP API",
    "DESCRIPTION": "Smart Chaos Engineering Platform: targets, experiments, runs, findings.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc from the installed sidecar package: nothing from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "experiments.choices.RunStatus",
        "SuggestionStatusEnum": "analysis.models.SuggestionStatus",
        "FaultStateEnum": "injectors.models.FaultState",
    },
}

# --- Celery ---------------------------------------------------------------------------
BROKER_DIR = Path(env_str("SCEP_BROKER_DIR", str(VAR_DIR / "broker"))).resolve()
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    (BROKER_DIR / "processed").mkdir(exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "polling_interval": env_float("SCEP_BROKER_POLL_S", 0.05, minimum=0.001),
        "control_folder": str(BROKER_DIR / "control"),
    }
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
    # kombu's filesystem transport with an atomic publish (see scep/broker.py).
    CELERY_BROKER_TRANSPORT = "scep.broker:Transport"
elif CELERY_BROKER_URL.split("://", 1)[0] == "redis":
    # Redis, with a QoS that survives a broker restart mid-task (scep/broker_redis.py).
    CELERY_BROKER_TRANSPORT = "scep.broker_redis:Transport"
elif CELERY_BROKER_URL.split("://", 1)[0] not in {"redis", "rediss", "amqp", "pyamqp", "memory"}:
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL={CELERY_BROKER_URL!r}: expected filesystem://, redis://, amqp:// "
        "or memory://"
    )
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# After a broker reconnect Celery lowers the prefetch count, then restores it from the
# thread that acknowledges a task. With the thread pools of `scep worker` and `scep agent`
# that is a pool thread sending a synchronous basic.qos on the AMQP connection the main
# thread is reading: both can block for good and the worker consumes nothing more (found
# by the RabbitMQ restart test in tests/scale/test_platform_faults.py). Without the
# reduction a worker may take a few more messages than it has free threads after a
# reconnect; they wait unacknowledged in it until a thread frees up.
CELERY_WORKER_ENABLE_PREFETCH_COUNT_REDUCTION = False
CELERY_TASK_DEFAULT_QUEUE = "orchestrator"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ROUTES = {
    "experiments.tasks.*": {"queue": "orchestrator"},
    "analysis.tasks.*": {"queue": "analysis"},
}

# --- SCEP knobs -----------------------------------------------------------------------
SCEP_HOSTNAME = env_str("SCEP_HOSTNAME", socket.gethostname())
SCEP_MAX_DURATION_S = env_float("SCEP_MAX_DURATION_S", 3600.0, minimum=1.0)
SCEP_MAX_INTENSITY = env_float("SCEP_MAX_INTENSITY", 1.0, minimum=0.0, maximum=1.0)
SCEP_MAX_WINDOW_S = env_float("SCEP_MAX_WINDOW_S", 3600.0, minimum=1.0)
SCEP_FAULT_EXPIRY_GRACE_S = env_float("SCEP_FAULT_EXPIRY_GRACE_S", 10.0, minimum=0.0)
SCEP_REAPER_INTERVAL_S = env_float("SCEP_REAPER_INTERVAL_S", 5.0, minimum=0.1)
SCEP_RUN_HEARTBEAT_TIMEOUT_S = env_float("SCEP_RUN_HEARTBEAT_TIMEOUT_S", 30.0, minimum=1.0)
# A run waiting in ANALYSING this long has its analysis queued again by the reaper, and
# is ended FAILED after a second such wait (its analysis task was lost).
SCEP_ANALYSIS_TIMEOUT_S = env_float("SCEP_ANALYSIS_TIMEOUT_S", 300.0, minimum=1.0)
SCEP_AGENT_HEARTBEAT_S = env_float("SCEP_AGENT_HEARTBEAT_S", 2.0, minimum=0.1)
SCEP_AGENT_OFFLINE_AFTER_S = env_float("SCEP_AGENT_OFFLINE_AFTER_S", 15.0, minimum=1.0)
SCEP_AGENT_REPLY_TIMEOUT_S = env_float("SCEP_AGENT_REPLY_TIMEOUT_S", 15.0, minimum=0.5)
SCEP_TICK_S = env_float("SCEP_TICK_S", 0.1, minimum=0.01, maximum=1.0)
SCEP_ALLOWED_ENVIRONMENTS = env_list(
    "SCEP_ALLOWED_ENVIRONMENTS", ["development", "staging", "production"]
)
SCEP_REPORTS_DIR = Path(env_str("SCEP_REPORTS_DIR", str(VAR_DIR / "reports"))).resolve()
SCEP_CAMPAIGN_TICK_S = env_float("SCEP_CAMPAIGN_TICK_S", 2.0, minimum=0.1)

CELERY_BEAT_SCHEDULE = {
    "scep-reaper": {
        "task": "experiments.tasks.reap",
        "schedule": SCEP_REAPER_INTERVAL_S,
    },
    # Starts the next items of running campaign executions (docs/campaigns.md).
    "scep-campaigns": {
        "task": "campaigns.tasks.advance_campaigns",
        "schedule": SCEP_CAMPAIGN_TICK_S,
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Campaign schedules are PeriodicTask rows (editable in the admin); static entries above
# are written there at start-up.
CELERY_BEAT_SCHEDULER = "campaigns.scheduler:Scheduler"

# Platform telemetry (docs/observability.md).
SCEP_LOG_FORMAT = env_str("SCEP_LOG_FORMAT", "plain").strip().lower()
if SCEP_LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"SCEP_LOG_FORMAT={SCEP_LOG_FORMAT!r}: expected plain or json")
SCEP_READY_TIMEOUT_S = env_float("SCEP_READY_TIMEOUT_S", 2.0, minimum=0.1)
SCEP_READY_REQUIRES_AGENTS = env_bool("SCEP_READY_REQUIRES_AGENTS", False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        # One JSON object per line, with run_id inside run_context (observability.logging).
        "json": {"()": "observability.logging.JsonFormatter"},
    },
    "filters": {
        "run_context": {"()": "observability.logging.RunContextFilter"},
        # Masks credentials in every line (scep/redaction.py).
        "redact_secrets": {"()": "scep.redaction.SecretRedactingFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": SCEP_LOG_FORMAT,
            "filters": ["run_context", "redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("SCEP_LOG_LEVEL", "WARNING")},
    # The filesystem transport warns about a missing hostname on every connection.
    "loggers": {"kombu.connection": {"level": "ERROR"}},
}
