"""``/health/``: 200 when the database (and broker and cache, when configured) answer."""

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

logger = logging.getLogger(__name__)


@never_cache
def health(request):
    checks = {"database": _database()}
    if settings.CACHE_URL:
        checks["cache"] = _cache()
    if settings.CELERY_BROKER_URL:
        checks["broker"] = _broker()
    healthy = all(checks.values())
    return JsonResponse(
        {
            "status": "ok" if healthy else "unavailable",
            "checks": {k: "ok" if v else "failing" for k, v in checks.items()},
        },
        status=200 if healthy else 503,
    )


def _database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        logger.exception("health: database check failed")
        return False


def _cache() -> bool:
    try:
        cache.set("health:ping", "pong", timeout=10)
        return cache.get("health:ping") == "pong"
    except Exception:
        logger.exception("health: cache check failed")
        return False


def _broker() -> bool:
    from .celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        logger.exception("health: broker check failed")
        return False
