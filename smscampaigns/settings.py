"""Settings for smscampaigns.

Every value comes from the environment or a ``.env`` file beside manage.py (see
``.env.example`` for the full list). The real environment wins over ``.env``.
"""

import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import environ

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
ENV_FILE = Path(os.environ.get("ENV_FILE") or BASE_DIR / ".env")
if ENV_FILE.is_file():
    environ.Env.read_env(ENV_FILE)
# An empty variable (as .env.example leaves them) means "not set": use the default.
for _name in [n for n, v in os.environ.items() if v == ""]:
    del os.environ[_name]

# --- Core -------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment or in .env "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or set DEBUG=true for local development."
        )
    # Local development only: DEBUG is on, so this key never signs production data.
    SECRET_KEY = "django-insecure-local-development-only-not-for-production"
elif not DEBUG and (
    len(SECRET_KEY) < 50
    or len(set(SECRET_KEY)) < 5
    or SECRET_KEY.startswith("django-insecure-")
):
    # The same bar as Django's security.W009, but a refusal: a guessable key lets
    # anyone forge sessions (an admin login) and password-reset links.
    raise ImproperlyConfigured(
        "SECRET_KEY is too weak for production: use at least 50 random characters, "
        "not Django's 'django-insecure-' development key (generate one with: "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="").rstrip("/")
if PUBLIC_BASE_URL:
    _public = urlsplit(PUBLIC_BASE_URL)
    if _public.scheme not in ("http", "https") or not _public.netloc:
        raise ImproperlyConfigured(
            f"PUBLIC_BASE_URL must be an origin such as https://sms.example.com, got {PUBLIC_BASE_URL!r}"
        )
    CSRF_TRUSTED_ORIGINS = [f"{_public.scheme}://{_public.netloc}"]

PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="US").upper()

INSTALLED_APPS = [
    "smscampaigns.apps.SmsAdminConfig",  # django.contrib.admin, our site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "smscampaigns.apps.SmscampaignsConfig",
    "providers",
    "contacts",
    "campaigns",
    "webhooks",
    "integrations",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files before anything else touches the request (sessions, CSRF): the
    # admin's CSS and JS come from the application itself, in production too.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it answers a locked-out login attempt.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "smscampaigns.urls"
WSGI_APPLICATION = "smscampaigns.wsgi.application"
ASGI_APPLICATION = "smscampaigns.asgi.application"

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
                "django.template.context_processors.csp",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default="sqlite:///db.sqlite3")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    if _db["NAME"] and not _db["NAME"].startswith((":memory:", "/", "file:")):
        _db["NAME"] = str(BASE_DIR / _db["NAME"])
    # WAL lets readers (the admin, webhooks) work while a sender writes; IMMEDIATE
    # transactions take the write lock up front so two writers queue instead of
    # failing with "database is locked" halfway through a transaction.
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    # A new PostgreSQL connection costs ~5 ms; webhooks and workers reuse theirs.
    _db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=600))
    _db["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ------------------------------------------------------------------
CACHE_URL = env.str("CACHE_URL", default="")
CACHES = {"default": env.cache_url_config(CACHE_URL or "locmemcache://")}

# --- Security ---------------------------------------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG
)
# The header only makes the site eligible; submitting it to the preload list is a
# separate, manual step.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = 1_048_576  # webhooks refuse bodies over 1 MB

# Content-Security-Policy on every page: scripts and styles only from our own static
# files (the admin, the composer and the API docs have no inline script; the docs'
# one inline <style> carries the request's nonce). See README, Security.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
# Admin login throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for
# one username from one address (REMOTE_ADDR: behind a proxy that is the proxy's, so
# the count is per username), that pair is refused (429) for LOGIN_COOLOFF_MINUTES.
# Attempts are kept in the database, so every web process counts the same ones.
# Unlock early with: manage.py axes_reset_username <name>.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env.bool("LOGIN_THROTTLE", default=True)
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

# /metrics (Prometheus) answers only "Authorization: Bearer <METRICS_TOKEN>"; it is
# a 404 while this is empty. Exempt from the https redirect so a Prometheus on this
# machine can scrape gunicorn directly (the token would have been sent already).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Each web process writes its callback durations at most this often (seconds): one
# write per callback would cost a webhook storm a commit per callback.
METRICS_WRITE_SECONDS = env.float("METRICS_WRITE_SECONDS", default=1.0)
SECURE_REDIRECT_EXEMPT = [r"^metrics$"]

# The OpenAPI schema and the interactive docs need a login (a staff session, or any
# API key for the schema) unless this is on; on by default only with DEBUG.
API_DOCS_PUBLIC = env.bool("API_DOCS_PUBLIC", default=DEBUG)

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Internationalization -----------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files -------------------------------------------------------------
STATIC_URL = "static/"
# `manage.py collectstatic` gathers every app's files here; WhiteNoise serves them.
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Collected files get content-hashed names (admin/css/base.<hash>.css) that pages
    # link to, plus gzip copies: a browser may keep them forever, and a new release
    # brings new names. Without collected files pages cannot name them: the start-up
    # and `check --deploy` say so (smscampaigns/static_files.py).
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# Hashed names are cached for ten years ("immutable"); a file under its plain name
# (admin/css/base.css, linked by no page of ours) may change with a release, so a day.
WHITENOISE_MAX_AGE = 86_400
# Uploads waiting for a background import (web and workers must share it).
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")
# The JSON contact import (up to 10,000 records) may send this many bytes; every other
# request keeps DATA_UPLOAD_MAX_MEMORY_SIZE (1 MB).
CONTACT_IMPORT_MAX_JSON_BYTES = env.int(
    "CONTACT_IMPORT_MAX_JSON_BYTES", default=32 * 1024 * 1024
)
# CSV uploads larger than this many bytes import in a Celery worker when a broker is set.
CONTACT_IMPORT_BACKGROUND_BYTES = env.int(
    "CONTACT_IMPORT_BACKGROUND_BYTES", default=2 * 1024 * 1024
)

# --- Logging ------------------------------------------------------------------
# "json": one JSON object a line (time, level, logger, message, extra fields; phone
# numbers masked, secret-looking fields redacted) for a log collector.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain").lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "smscampaigns.log_format.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Request logs would carry full phone numbers from webhook query strings.
        "django.server": {"level": "WARNING"},
        # The Vonage SDK logs request bodies (full numbers) and headers (JWTs) at DEBUG.
        "vonage": {"level": "INFO"},
        "vonage_http_client": {"level": "INFO"},
    },
}

# --- REST API -------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "smscampaigns.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Each view's api_rules: key scopes and model permissions (smscampaigns/permissions.py).
    "DEFAULT_PERMISSION_CLASSES": ["smscampaigns.permissions.ApiPermission"],
    "DEFAULT_PARSER_CLASSES": [
        "smscampaigns.json_limits.LimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["smscampaigns.throttling.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": env.str("API_RATE_LIMIT", default="600/min")},
    "DEFAULT_PAGINATION_CLASS": "smscampaigns.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "smscampaigns.api_errors.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "smscampaigns API",
    "DESCRIPTION": "Contacts, lists, campaigns and messages. Authenticate with `Authorization: Token <key>` (or `Bearer <key>`) or `X-API-Key: <key>`.",
    "VERSION": "1",
    # Operations are tagged by the path segment after this (contacts, lists,
    # campaigns, messages), so the docs group them per resource, not all under "v1".
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "smscampaigns.api_schema.add_common_responses",
    ],
}

# --- Celery (optional) ----------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
if CELERY_BROKER_URL and not CACHE_URL:
    # Workers share heartbeats, the rate limiter and API limits through the cache;
    # a per-process memory cache would let every process believe it is alone.
    raise ImproperlyConfigured(
        "CELERY_BROKER_URL is set but CACHE_URL is not: set CACHE_URL to a shared cache "
        "such as redis://127.0.0.1:6379/1"
    )
CELERY_TASK_ALWAYS_EAGER = False
# Celery's worker replaces the root logger's handlers with its own format unless told
# not to: JSON logs stay JSON in the workers too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT != "json"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BEAT_SCHEDULE = {
    # Starts scheduled campaigns on time and restarts stalled ones.
    "campaign-scheduler": {"task": "campaigns.tasks.scheduler_tick", "schedule": 10.0},
    # Forgets callback signatures and events past their freshness window.
    "webhooks-prune": {"task": "webhooks.tasks.prune_seen_callbacks", "schedule": 60.0},
    # Applies callbacks a webhook stored, should the task it started have been lost.
    "webhooks-apply": {
        "task": "webhooks.tasks.apply_queued_callbacks",
        "schedule": 5.0,
    },
    # Forgets keyword sign-ups a week past their confirmation window.
    "signups-prune": {
        "task": "contacts.tasks.prune_pending_signups",
        "schedule": 3600.0,
    },
}
# Dispatch tasks started per campaign (each claims its own batches), and seconds each
# runs before handing over to a fresh task.
SMS_DISPATCH_PARALLEL_TASKS = env.int("SMS_DISPATCH_PARALLEL_TASKS", default=2)
SMS_TASK_SLICE_SECONDS = env.float("SMS_TASK_SLICE_SECONDS", default=60.0)

# --- SMS providers ----------------------------------------------------------------
# Messages per second each account allows. Vonage: 30 API requests/s per key by
# default. Plivo: 5 MPS per account by default. Sinch sets a rate per service plan
# and publishes no default, so ask your account manager and set SINCH_RATE.
VONAGE_RATE = env.float("VONAGE_RATE", default=30.0)
PLIVO_RATE = env.float("PLIVO_RATE", default=5.0)
SINCH_RATE = env.float("SINCH_RATE", default=10.0)

SMS_DEFAULT_PROVIDER = env.str("SMS_DEFAULT_PROVIDER", default="simulator")
# The development backends (simulator, console, locmem) send nothing to real phones:
# campaigns may use them only while this is on (default: DEBUG).
SMS_ALLOW_DEVELOPMENT_PROVIDERS = env.bool(
    "SMS_ALLOW_DEVELOPMENT_PROVIDERS", default=DEBUG
)

# Added on a new line to every new campaign's messages (and counted in its segments).
# Each campaign keeps its own copy, which a marketer may change or clear.
SMS_OPT_OUT_FOOTER = env.str("SMS_OPT_OUT_FOOTER", default="Reply STOP to opt out")

# At most so many marketing (campaign) messages per person in a period, e.g.
# "2 per 7 days"; "off" for none. A campaign may set its own or "off". Messages
# beyond it are skipped when their turn comes (reason "frequency cap"); keyword
# replies, confirmations and test sends never count and are never capped.
SMS_FREQUENCY_CAP = env.str("SMS_FREQUENCY_CAP", default="off")
try:
    from campaigns.frequency import parse_cap

    parse_cap(SMS_FREQUENCY_CAP)
except ValueError as error:
    raise ImproperlyConfigured(f"SMS_FREQUENCY_CAP: {error}") from None

# Price per segment for cost estimates (prices vary by destination: set what your
# contract says for your main market).
SMS_PRICE_CURRENCY = env.str("SMS_PRICE_CURRENCY", default="USD")
SMS_PRICE_PER_SEGMENT = {
    alias: Decimal(env.str(f"{alias.upper()}_PRICE", default=default))
    for alias, default in {
        "vonage": "0.0075",
        "plivo": "0.0075",
        "sinch": "0.0075",
        "simulator": "0.0075",
    }.items()
}

# Retryable send errors (throttling, 5xx, timeouts) back off exponentially from
# SMS_RETRY_BASE_DELAY seconds, up to SMS_SEND_MAX_ATTEMPTS attempts in all.
SMS_SEND_MAX_ATTEMPTS = env.int("SMS_SEND_MAX_ATTEMPTS", default=5)
SMS_RETRY_BASE_DELAY = env.float("SMS_RETRY_BASE_DELAY", default=5.0)
# Messages a dispatcher claims at a time, and the most requests one dispatcher keeps in
# flight: the limiter spaces their starts, and each thread gets its request 150 ms
# before its slot, so rate x (latency + 0.15 s) of them are needed (30/s with 300 ms
# answers: 14; 300/s with 200 ms answers: 105, and 128 filled up under jitter in
# bench/vendor_send.py; Vonage's tutorial senders keep 50).
SMS_DISPATCH_BATCH_SIZE = env.int("SMS_DISPATCH_BATCH_SIZE", default=1000)
SMS_DISPATCH_CONCURRENCY = env.int("SMS_DISPATCH_CONCURRENCY", default=256)
# Keyword replies and test sends run_worker (without a broker) sends at once: each
# waits for the vendor's answer on a thread of its own.
SMS_DIRECT_CONCURRENCY = env.int("SMS_DIRECT_CONCURRENCY", default=16)
# A message still "sending" this long after its claim belonged to a sender that died:
# it becomes "unknown" (never re-sent automatically).
SMS_SEND_LEASE_SECONDS = env.int("SMS_SEND_LEASE_SECONDS", default=300)
# Where no lock can prove a dispatcher alive (SQLite), one silent this long counts as
# dead: its claims are settled at once (PostgreSQL sees a dead one immediately).
SMS_DISPATCHER_TIMEOUT = env.int("SMS_DISPATCHER_TIMEOUT", default=15)
# After this many transient provider failures in a row the circuit opens: messages stay
# queued, and a trial batch goes out every SMS_CIRCUIT_RESET_SECONDS.
SMS_CIRCUIT_FAILURES = env.int("SMS_CIRCUIT_FAILURES", default=5)
SMS_CIRCUIT_RESET_SECONDS = env.float("SMS_CIRCUIT_RESET_SECONDS", default=30.0)

# Callback authenticity: a signature older (or further ahead) than its provider's
# freshness window, beyond SMS_WEBHOOK_CLOCK_SKEW of leeway, is refused as stale, and
# every accepted signature and event is remembered for that window, so a replay (or a
# vendor's retry of what was already applied) is answered 200 and not applied again.
# Each vendor's window covers how long it retries a callback with its first signature:
# Vonage retries 429/5xx for 24 h, Sinch for ~22 h 45 min (and never a 4xx), Plivo signs
# no time at all (its retries come within 24 h). SMS_WEBHOOK_MAX_AGE is the window of
# the providers without one of their own (the development backends). Unsigned callbacks
# are refused unless SMS_WEBHOOK_ALLOW_UNSIGNED is on (local development only).
SMS_WEBHOOK_MAX_AGE = env.int("SMS_WEBHOOK_MAX_AGE", default=300)
VONAGE_WEBHOOK_MAX_AGE = env.int("VONAGE_WEBHOOK_MAX_AGE", default=86_400)
PLIVO_WEBHOOK_MAX_AGE = env.int("PLIVO_WEBHOOK_MAX_AGE", default=86_400)
SINCH_WEBHOOK_MAX_AGE = env.int("SINCH_WEBHOOK_MAX_AGE", default=86_400)
SMS_WEBHOOK_CLOCK_SKEW = env.int("SMS_WEBHOOK_CLOCK_SKEW", default=30)
SMS_WEBHOOK_ALLOW_UNSIGNED = env.bool("SMS_WEBHOOK_ALLOW_UNSIGNED", default=False)
# Plivo's V2 signature covers only the URL and a nonce (no body, no time): refused
# unless this is on (accounts whose messaging callbacks carry no V3 headers).
PLIVO_ALLOW_V2_SIGNATURES = env.bool("PLIVO_ALLOW_V2_SIGNATURES", default=False)
# "queued": a callback is verified, parsed and stored, the vendor answered at once, and
# the worker (run_worker, send_campaign between batches, or Celery) applies it within a
# fraction of a second, in order. "inline": applied inside the request (slower webhooks
# under load; for setups with no worker at all). See webhooks/queue.py.
SMS_WEBHOOK_APPLY = env.str("SMS_WEBHOOK_APPLY", default="queued")
if SMS_WEBHOOK_APPLY not in ("queued", "inline"):
    raise ImproperlyConfigured(
        f"SMS_WEBHOOK_APPLY must be 'queued' or 'inline', not {SMS_WEBHOOK_APPLY!r}"
    )
# Keywords are matched on the whole reply, trimmed and case-folded (CTIA's lists).
SMS_KEYWORDS_OPT_OUT = env.list(
    "SMS_KEYWORDS_OPT_OUT",
    default=[
        "STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "UNSUB", "CANCEL", "END", "QUIT",
        "REVOKE", "OPTOUT", "OPT OUT", "OPT-OUT", "REMOVE",
    ],
)  # fmt: skip
SMS_KEYWORDS_OPT_IN = env.list(
    "SMS_KEYWORDS_OPT_IN", default=["START", "UNSTOP", "YES", "RESUME"]
)
SMS_KEYWORDS_HELP = env.list("SMS_KEYWORDS_HELP", default=["HELP", "INFO"])
# The answers that confirm a keyword sign-up (double opt-in) while one is pending for
# the number; otherwise a YES keeps its meaning above.
SMS_KEYWORDS_CONFIRM = env.list("SMS_KEYWORDS_CONFIRM", default=["YES", "Y"])
# Automatic replies; {program} and {help_contact} are filled in.
SMS_PROGRAM_NAME = env.str("SMS_PROGRAM_NAME", default="smscampaigns")
SMS_HELP_CONTACT = env.str("SMS_HELP_CONTACT", default="support@example.com")
SMS_REPLY_OPT_OUT = env.str(
    "SMS_REPLY_OPT_OUT",
    default="{program}: You are unsubscribed and will get no more messages. Reply START to resubscribe.",
)
SMS_REPLY_OPT_IN = env.str(
    "SMS_REPLY_OPT_IN",
    default="{program}: You are subscribed again. Msg & data rates may apply. Reply STOP to opt out.",
)
SMS_REPLY_SIGNUP_EXPIRED = env.str(
    "SMS_REPLY_SIGNUP_EXPIRED",
    default="{program}: That sign-up has expired. Text {keyword} again to join.",
)
SMS_REPLY_HELP = env.str(
    "SMS_REPLY_HELP",
    default="{program}: Help at {help_contact}. Msg frequency varies. Msg & data rates may apply. Reply STOP to opt out.",
)
# A reply is linked to the last campaign message sent to its number from the number
# it was sent to, within this many hours (0: replies are never linked).
SMS_REPLY_ATTRIBUTION_HOURS = env.int("SMS_REPLY_ATTRIBUTION_HOURS", default=72)

if SMS_WEBHOOK_ALLOW_UNSIGNED and not DEBUG:
    raise ImproperlyConfigured(
        "SMS_WEBHOOK_ALLOW_UNSIGNED is for local development: it needs DEBUG=true"
    )
SMS_PROVIDERS = {
    "vonage": {
        "BACKEND": "providers.backends.vonage.SmsBackend",
        "OPTIONS": {
            "application_id": env.str("VONAGE_APPLICATION_ID", default=""),
            "private_key_path": env.str("VONAGE_PRIVATE_KEY_PATH", default=""),
            "number": env.str("VONAGE_NUMBER", default=""),
            "signature_secret": env.str("VONAGE_SIGNATURE_SECRET", default=""),
            "api_url": env.str("VONAGE_API_URL", default="https://api.nexmo.com"),
            "rate": VONAGE_RATE,
            "webhook_max_age": VONAGE_WEBHOOK_MAX_AGE,
        },
    },
    "plivo": {
        "BACKEND": "providers.backends.plivo.SmsBackend",
        "OPTIONS": {
            "auth_id": env.str("PLIVO_AUTH_ID", default=""),
            "auth_token": env.str("PLIVO_AUTH_TOKEN", default=""),
            "sender_id": env.str("PLIVO_SENDER_ID", default=""),
            "api_url": env.str("PLIVO_API_URL", default="https://api.plivo.com"),
            "rate": PLIVO_RATE,
            "webhook_max_age": PLIVO_WEBHOOK_MAX_AGE,
            "allow_v2_signatures": PLIVO_ALLOW_V2_SIGNATURES,
        },
    },
    "sinch": {
        "BACKEND": "providers.backends.sinch.SmsBackend",
        "OPTIONS": {
            "service_plan_id": env.str("SINCH_SERVICE_PLAN_ID", default=""),
            "api_token": env.str("SINCH_API_TOKEN", default=""),
            "number": env.str("SINCH_NUMBER", default=""),
            "api_url": env.str("SINCH_API_URL", default="https://us.sms.api.sinch.com"),
            "webhook_secret": env.str("SINCH_WEBHOOK_SECRET", default=""),
            "callback_username": env.str("SINCH_CALLBACK_USERNAME", default=""),
            "callback_password": env.str("SINCH_CALLBACK_PASSWORD", default=""),
            "rate": SINCH_RATE,
            "webhook_max_age": SINCH_WEBHOOK_MAX_AGE,
        },
    },
    "simulator": {
        "BACKEND": "providers.backends.simulator.SmsBackend",
        "OPTIONS": {
            "delivered_rate": env.float("SIMULATOR_DELIVERED_RATE", default=0.95),
            "undelivered_rate": env.float("SIMULATOR_UNDELIVERED_RATE", default=0.03),
            "report_delay": env.str("SIMULATOR_REPORT_DELAY", default="0.5,3.0"),
            "mode": env.str("SIMULATOR_MODE", default="signal"),
            "throttle_rate": env.float("SIMULATOR_THROTTLE_RATE", default=0.0),
            "server_error_rate": env.float("SIMULATOR_SERVER_ERROR_RATE", default=0.0),
            "timeout_rate": env.float("SIMULATOR_TIMEOUT_RATE", default=0.0),
            "latency": env.float("SIMULATOR_LATENCY", default=0.0),
            "invalid_prefixes": env.str("SIMULATOR_INVALID_PREFIXES", default=""),
            "seed": env.str("SIMULATOR_SEED", default=""),
            "max_rate": env.float("SIMULATOR_MAX_RATE", default=0.0) or None,
            "shared_limit": env.bool("SIMULATOR_SHARED_LIMIT", default=False),
            # Development servers deliver simulated receipts from a background thread.
            "background_reports": env.bool(
                "SIMULATOR_BACKGROUND_REPORTS", default=DEBUG
            ),
            "rate": env.float("SIMULATOR_RATE", default=100.0),
        },
    },
    "console": {"BACKEND": "providers.backends.console.SmsBackend", "OPTIONS": {}},
    "locmem": {"BACKEND": "providers.backends.locmem.SmsBackend", "OPTIONS": {}},
}
# --- Event webhooks for integrators (integrations) -----------------------------------
# Seconds an endpoint has to answer one delivery.
WEBHOOK_TIMEOUT = env.float("WEBHOOK_TIMEOUT", default=10.0)
# A failing endpoint is tried again after 10 s, 20 s, 40 s… up to an hour apart; an
# event is given up only when an attempt fails this many hours after it happened.
WEBHOOK_BACKOFF_BASE = env.float("WEBHOOK_BACKOFF_BASE", default=10.0)
WEBHOOK_BACKOFF_MAX = env.float("WEBHOOK_BACKOFF_MAX", default=3600.0)
WEBHOOK_RETRY_HOURS = env.float("WEBHOOK_RETRY_HOURS", default=24.0)
# Endpoints one worker delivers to at once (each gets one request at a time).
WEBHOOK_CONCURRENCY = env.int("WEBHOOK_CONCURRENCY", default=8)
# Days the delivery log keeps delivered and given-up events (waiting ones stay).
WEBHOOK_LOG_DAYS = env.float("WEBHOOK_LOG_DAYS", default=30.0)
# http:// URLs and local or private addresses: for development and tests only.
WEBHOOK_ALLOW_LOCAL_URLS = env.bool("WEBHOOK_ALLOW_LOCAL_URLS", default=DEBUG)
CELERY_BEAT_SCHEDULE["webhook-deliveries"] = {
    "task": "integrations.tasks.deliver_webhooks",
    "schedule": 5.0,
}
CELERY_BEAT_SCHEDULE["webhook-log-prune"] = {
    "task": "integrations.tasks.prune_delivery_log",
    "schedule": 3600.0,
}

SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    "CampaignStatusEnum": "campaigns.models.Campaign.Status",
    "MessageStatusEnum": "campaigns.models.Message.Status",
    "ImportJobStatusEnum": "contacts.models.ImportJob.Status",
    "ProviderEnum": [(alias, alias) for alias in SMS_PROVIDERS],
}

if SMS_DEFAULT_PROVIDER not in SMS_PROVIDERS:
    raise ImproperlyConfigured(
        f"SMS_DEFAULT_PROVIDER={SMS_DEFAULT_PROVIDER!r} is not one of: {', '.join(SMS_PROVIDERS)}"
    )
