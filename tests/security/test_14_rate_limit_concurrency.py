"""Finding 14: the per-key API rate limit overshot under concurrency (DRF's throttle
reads the history, then writes it back: parallel requests all passed)."""

import threading
from types import SimpleNamespace

import pytest
import redis

from django.core.cache import caches
from django.test import override_settings

from smscampaigns.throttling import ApiKeyRateThrottle

LIMIT = 10
REQUESTS = 40
REDIS_URL = "redis://127.0.0.1:6379/13"


def redis_available() -> bool:
    try:
        return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return False


CACHES = {
    "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "redis": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
    },
}


@pytest.mark.parametrize("backend", ["locmem", "redis"])
def test_concurrent_requests_never_pass_the_limit(backend, monkeypatch):
    if backend == "redis" and not redis_available():
        pytest.skip("no Redis at 127.0.0.1:6379")
    with override_settings(CACHES={"default": CACHES[backend]}):
        cache = caches["default"]
        cache.clear()
        monkeypatch.setattr(ApiKeyRateThrottle, "cache", cache)
        monkeypatch.setattr(
            ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": f"{LIMIT}/min"}
        )
        key = SimpleNamespace(pk=7, key_hash="x")
        request = SimpleNamespace(auth=key, user=None, META={})
        start = threading.Barrier(REQUESTS)
        allowed = []

        def one_request():
            throttle = ApiKeyRateThrottle()
            start.wait()
            allowed.append(throttle.allow_request(request, None))

        threads = [threading.Thread(target=one_request) for _ in range(REQUESTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        cache.clear()
    assert allowed.count(True) == LIMIT
    assert allowed.count(False) == REQUESTS - LIMIT
