"""Tuco settings, read from the environment (see the README's configuration table)."""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from tuco.env import envbool, envint, envlist, envnetworks, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(envstr("TUCO_DATA_DIR", str(BASE_DIR / "var")))

PRODUCTION = envstr("TUCO_ENV") == "production"
DEBUG = envbool("DEBUG", False)
# The development key is public; it also derives the key that encrypts stored
# secrets when FIELD_ENCRYPTION_KEY is unset. Production refuses it, DEBUG or not.
DEVELOPMENT_SECRET_KEY = "insecure-development-key-change-me"  # noqa: S105
SECRET_KEY = envstr("SECRET_KEY") or DEVELOPMENT_SECRET_KEY
if PRODUCTION and SECRET_KEY.strip() in ("", DEVELOPMENT_SECRET_KEY):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a long random value when TUCO_ENV=production "
        "(it is missing or is the public development key), whatever DEBUG says"
    )

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
CSRF_FAILURE_VIEW = "tuco.views.csrf_failure"
SITE_URL = envstr("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

# HTTPS. In production every request is redirected to HTTPS, browsers are told to
# use nothing else for a year (HSTS, this host and its subdomains) and the session
# and CSRF cookies are only sent over HTTPS. Outside production (the demo, tests)
# plain HTTP works as before.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
# Preloading commits the whole registrable domain to HTTPS in browsers' built-in
# lists, which is hard to undo: it is the operator's explicit choice, so Django's
# reminder about it is silenced while it is off.
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", PRODUCTION)
# Behind a proxy that terminates TLS: the request header (in its META form, e.g.
# HTTP_X_FORWARDED_PROTO) that the proxy sets to "https". Only set it when the proxy
# always sets or overwrites that header: a client could otherwise claim HTTPS.
_proxy_ssl_header = envstr("SECURE_PROXY_SSL_HEADER").strip()
if _proxy_ssl_header and not _proxy_ssl_header.startswith("HTTP_"):
    raise ImproperlyConfigured(
        "SECURE_PROXY_SSL_HEADER must name a request header as Django sees it, "
        f"e.g. HTTP_X_FORWARDED_PROTO, got {_proxy_ssl_header!r}"
    )
SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header, "https") if _proxy_ssl_header else None

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "django_filters",
    "django_htmx",
    "django_celery_beat",
    "axes",
    "tuco",
    "leads",
    "lines",
    "messaging",
    "campaigns",
]

MIDDLEWARE = [
    "tuco.middleware.CorrelationIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "tuco.middleware.ApiErrorMiddleware",
    # Last, as django-axes asks: it turns a refused sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "tuco.urls"
WSGI_APPLICATION = "tuco.wsgi.application"

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

# Database: Postgres in production and CI; SQLite in WAL mode for the demo.
DATABASE_URL = envstr("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "tuco.sqlite3",
            "OPTIONS": {
                # WAL lets the web, worker and beat processes read while one writes;
                # IMMEDIATE takes the write lock up front so two writers queue
                # instead of failing with "database is locked" mid-transaction.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: Celery broker, cache and rate-limit store. Without it the demo uses a
# filesystem broker and local memory, through the same code paths.
REDIS_URL = envstr("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", REDIS_URL)
    # A task a worker took but has not acknowledged (acks_late, below) goes back to
    # the queue after this long. It must outlast the longest task, or a task still
    # running is handed to a second worker: a send task of SEND_CHUNK rows whose
    # relay keeps timing out runs about ten times (check + send) 4 minutes. A dead
    # worker's rows do not wait for it: their leases bring them back within a minute
    # (messaging.leases).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 2 * 3600)
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    _broker_dir = DATA_DIR / "broker"
    (_broker_dir / "queue").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", "filesystem://")
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }

CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged when it ends, so one its worker never finished is run
# again (the send tasks guard their rows with claims). Tasks wait
# on relays for minutes: a worker process takes one at a time, so a long one never
# holds others back that another process could run.
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A broker outage is ridden out, never a reason to exit: the worker retries its
# connection for as long as it takes (Celery's default gives up after 100 tries, and
# a worker started while Redis is down would follow broker_connection_retry only
# until Celery 6), and it keeps running the tasks it holds: cancelling them on the
# connection loss would kill their processes mid relay call. Their acknowledgements
# are lost with the connection, so the broker hands those tasks out again after the
# visibility timeout; by then their rows are claimed or settled, and they skip them.
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Celery's consumer, trying the broker again every 2 s at most (not up to 30 s), and
# not exiting when the broken connection cannot be closed (tuco.celery.Consumer).
CELERY_WORKER_CONSUMER = "tuco.celery:Consumer"
# The worker keeps its database connection across tasks, as the web does across
# requests (CONN_MAX_AGE, CONN_HEALTH_CHECKS; tuco.celery applies them around each
# task). Celery's Django fixup would otherwise close it after every task; with this
# it closes it after this many tasks, a fresh connection now and then.
CELERY_DB_REUSE_MAX = envint("CELERY_DB_REUSE_MAX", 1000)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Sign-in throttling (django-axes), for the dashboard and the admin alike. Failures
# count per email and client address together, so one attacker cannot lock a person
# out everywhere; a success clears them. The client address is REMOTE_ADDR (django-
# ipware is not installed): behind a proxy that is the proxy's address, so the
# count is then per email.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_COOLOFF_MINUTES", 15))
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "tuco.views.login_locked_out"
# Say nothing at start-up: every manage.py command would print the banner.
AXES_VERBOSE = False
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(DATA_DIR / "static")))

# Email: any SMTP-compatible backend; the console backend prints mails in the demo.
EMAIL_BACKEND = envstr("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 20)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "Tuco <tuco@localhost>")

# Per-workspace API rate limits, requests per minute (token buckets).
RATE_LIMITS = {
    "send": envint("RATE_LIMIT_SEND", 60),
    "availability": envint("RATE_LIMIT_AVAILABILITY", 200),
    "replies": envint("RATE_LIMIT_REPLIES", 120),
    "campaigns": envint("RATE_LIMIT_CAMPAIGNS", 200),
    "campaign_add_lead": envint("RATE_LIMIT_CAMPAIGN_ADD_LEAD", 200),
    "unibox_reply": envint("RATE_LIMIT_UNIBOX_REPLY", 30),
    "fallback_sms": envint("RATE_LIMIT_FALLBACK_SMS", 200),
    "default": envint("RATE_LIMIT_DEFAULT", 300),
}
RATE_LIMITS_ENABLED = envbool("RATE_LIMITS_ENABLED", True)

# Line pacing defaults, for workspaces that have not set their own (Settings page).
# A new line, or one back from quarantine, warms up: its new-conversation cap climbs
# from LINE_WARMUP_START_CAP on day 1 to its own cap on day LINE_WARMUP_DAYS (0: no
# warm-up). Device and contact gaps vary randomly by up to SEND_GAP_JITTER_PERCENT.
LINE_WARMUP_START_CAP = envint("LINE_WARMUP_START_CAP", 10)
LINE_WARMUP_DAYS = envint("LINE_WARMUP_DAYS", 14)
SEND_GAP_JITTER_PERCENT = envint("SEND_GAP_JITTER_PERCENT", 30)
# Campaign first messages are spread over their send window (or the rest of the day)
# instead of going out back to back when it opens.
SEND_SPREAD_OVER_WINDOW = envbool("SEND_SPREAD_OVER_WINDOW", True)

# Frequency cap defaults: messages per lead per 24 h and per 7 days, across every
# campaign and send of a workspace (0: no cap), for workspaces without their own.
FREQUENCY_CAP_PER_DAY = envint("FREQUENCY_CAP_PER_DAY", 2)
FREQUENCY_CAP_PER_WEEK = envint("FREQUENCY_CAP_PER_WEEK", 5)

IDEMPOTENCY_TTL_SECONDS = envint("IDEMPOTENCY_TTL_SECONDS", 24 * 3600)
LEADS_MAX_PER_REQUEST = envint("LEADS_MAX_PER_REQUEST", 10_000)
# Room for LEADS_MAX_PER_REQUEST leads with notes and custom fields in one JSON body.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 64 * 1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tuco.api.auth.ApiKeyAuthentication",
        "tuco.api.auth.WorkspaceSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tuco.api.auth.HasWorkspace"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["tuco.api.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "tuco.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "tuco.api.schema.TucoAutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Tuco API",
    "DESCRIPTION": "Leads, iMessage availability, lines, messages, campaigns and webhooks.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # One name for the channel choices, whichever serializer offers them.
    "ENUM_NAME_OVERRIDES": {"MessageTypeEnum": ["imessage", "sms", "email"]},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "tuco.api.schema.add_error_responses",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "correlation": {"()": "tuco.logging.CorrelationIdFilter"},
        "password_params": {"()": "tuco.logging.PasswordParamFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s: %(message)s"}
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["correlation"],
            "formatter": "plain",
        }
    },
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # urllib3 logs request URLs (at DEBUG, and when it retries); relay URLs carry
        # the relay's password.
        "urllib3.connectionpool": {"filters": ["password_params"]},
        "urllib3.util.retry": {"filters": ["password_params"]},
        "urllib3.poolmanager": {"filters": ["password_params"]},
    },
}

# iMessage availability: how long a relay's answer is trusted. A "false" is kept
# for less time because relays sometimes answer a false `false`.
AVAILABILITY_CACHE_SECONDS = envint("AVAILABILITY_CACHE_SECONDS", 7 * 24 * 3600)
AVAILABILITY_NEGATIVE_CACHE_SECONDS = envint("AVAILABILITY_NEGATIVE_CACHE_SECONDS", 24 * 3600)
AVAILABILITY_SYNC_MAX_LEADS = envint("AVAILABILITY_SYNC_MAX_LEADS", 5)
LINE_DOWN_AFTER_FAILURES = envint("LINE_DOWN_AFTER_FAILURES", 2)

# Relays may only be reached at these networks (CIDRs, e.g. "10.8.0.0/16,2001:db8::/32");
# empty: anywhere. Checked on the connected socket, so DNS cannot route around it.
RELAY_ALLOWED_NETWORKS = envnetworks("RELAY_ALLOWED_NETWORKS")
# Line safety (lines.safety). An iMessage with no delivery receipt this long after it
# was sent is flagged undelivered and counts against its line.
UNDELIVERED_AFTER_MINUTES = envint("UNDELIVERED_AFTER_MINUTES", 30)
# An address known to be on iMessage, checked by every health check (a line's own
# canary address wins). Empty: no canary.
LINE_CANARY_ADDRESS = envstr("LINE_CANARY_ADDRESS", "")
LINE_SAFETY_ENABLED = envbool("LINE_SAFETY_ENABLED", True)
# Sends in a row that failed or went undelivered before a line is quarantined.
LINE_QUARANTINE_AFTER_FAILURES = envint("LINE_QUARANTINE_AFTER_FAILURES", 5)
LINE_QUARANTINE_COOLDOWN_MINUTES = envint("LINE_QUARANTINE_COOLDOWN_MINUTES", 24 * 60)
LINE_CANARY_FAILURES_TO_QUARANTINE = envint("LINE_CANARY_FAILURES_TO_QUARANTINE", 2)
LINE_CAPS_HALVED_HOURS = envint("LINE_CAPS_HALVED_HOURS", 24)
LINE_OVERRIDE_HOURS = envint("LINE_OVERRIDE_HOURS", 24)
# Fewer sends than this in 24 hours give no failure rate worth acting on.
LINE_RISK_MIN_SENT = envint("LINE_RISK_MIN_SENT", 20)
LINE_SILENCE_MIN_SENT = envint("LINE_SILENCE_MIN_SENT", 100)
LINE_PROBE_INTERVAL_SECONDS = envint("LINE_PROBE_INTERVAL_SECONDS", 30)
# iMessages in a row with no delivery receipt, each older than the line's receipts
# normally take (at least LINE_RECEIPT_WAIT_MIN_SECONDS), before the line is held
# until receipts come (0: never held).
LINE_UNCONFIRMED_SENDS_LIMIT = envint("LINE_UNCONFIRMED_SENDS_LIMIT", 5)
LINE_RECEIPT_WAIT_MIN_SECONDS = envint("LINE_RECEIPT_WAIT_MIN_SECONDS", 120)

# Webhooks may target private, loopback and link-local addresses (development, tests).
WEBHOOKS_ALLOW_PRIVATE_TARGETS = envbool("WEBHOOKS_ALLOW_PRIVATE_TARGETS", False)
# Attachment URLs may point at private, loopback and link-local addresses (the demo).
MESSAGING_ALLOW_PRIVATE_ATTACHMENT_URLS = envbool("ATTACHMENTS_ALLOW_PRIVATE_URLS", False)
# Workspace API tools may call private, loopback and link-local addresses (development).
API_TOOLS_ALLOW_PRIVATE_TARGETS = envbool("API_TOOLS_ALLOW_PRIVATE_TARGETS", False)
# How long one API tool call may take, and how many calls one tool makes per minute.
API_TOOLS_TIMEOUT_SECONDS = envint("API_TOOLS_TIMEOUT_SECONDS", 5)
API_TOOLS_CALLS_PER_MINUTE = envint("API_TOOLS_CALLS_PER_MINUTE", 120)
