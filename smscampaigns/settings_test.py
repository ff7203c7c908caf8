"""Settings for the test suite: the production settings with safe, fast test values.

``DATABASE_URL`` still chooses the database, so the same suite runs on SQLite and
PostgreSQL.
"""

import os

os.environ.setdefault(
    "SECRET_KEY", "test-secret-key-not-used-outside-the-test-suite-0123456789"
)
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("PUBLIC_BASE_URL", "https://sms.example.com")
os.environ.setdefault("SMS_DEFAULT_PROVIDER", "locmem")
# DEBUG is off, as in production, but the suite sends through locmem.
os.environ.setdefault("SMS_ALLOW_DEVELOPMENT_PROVIDERS", "true")
os.environ.setdefault("SIMULATOR_BACKGROUND_REPORTS", "false")
# Most tests check what a callback does by the time its request is answered; the
# queued mode (the default) has tests of its own that run the applier.
os.environ.setdefault("SMS_WEBHOOK_APPLY", "inline")
# Figures written as they happen: a test reads them at once (and none is carried into
# the next test's database).
os.environ.setdefault("METRICS_WRITE_SECONDS", "0")
# The tests must not read a developer's .env through the environment either.
os.environ.setdefault("CELERY_BROKER_URL", "")

from .settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
# Pages name static files by their plain names: the suite runs without collectstatic.
# (The production storage, collected files and WhiteNoise are exercised by
# tests/browser/test_production.py and tests/smscampaigns/test_static_files.py.)
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
