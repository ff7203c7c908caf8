from io import StringIO

import pytest
from rest_framework.test import APIClient

from django.core.cache import cache
from django.core.management import call_command

from smscampaigns.models import ApiKey, Scope, hash_key

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.smscampaigns.urls_auth")]


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()


@pytest.fixture
def key():
    return ApiKey.generate(name="shop integration", scopes=Scope.values)


def test_token_header_authenticates(key):
    _, raw = key
    response = APIClient().get("/echo/", HTTP_AUTHORIZATION=f"Token {raw}")
    assert response.status_code == 200
    assert response.json() == {"user": "api-key:shop integration"}


def test_x_api_key_header_authenticates(key):
    _, raw = key
    assert APIClient().get("/echo/", HTTP_X_API_KEY=raw).status_code == 200


def test_missing_key_is_401_with_a_challenge():
    response = APIClient().get("/echo/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["error"]["status"] == 401


@pytest.mark.parametrize("header", ["Token sk_not-a-real-key", "Token", "Token a b"])
def test_bad_keys_are_401_without_saying_why(key, header):
    response = APIClient().get("/echo/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"]["message"] in {
        "Invalid API key.",
        "Authentication credentials were not provided.",
    }


def test_revoked_key_is_refused_like_an_unknown_one(key):
    api_key, raw = key
    api_key.revoke()
    response = APIClient().get("/echo/", HTTP_X_API_KEY=raw)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid API key."


def test_only_the_hash_is_stored(key):
    api_key, raw = key
    assert raw not in {api_key.key_hash, api_key.prefix, api_key.name}
    assert api_key.key_hash == hash_key(raw)
    assert raw.startswith(api_key.prefix)


def test_session_login_works_for_admins(admin_client):
    assert admin_client.get("/echo/").status_code == 200


def test_rate_limit_per_key_answers_429_with_retry_after(key, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_key": "3/min"},
    }
    from rest_framework.settings import api_settings

    api_settings.reload()
    from smscampaigns.throttling import ApiKeyRateThrottle

    ApiKeyRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    try:
        _, raw = key
        _, other = ApiKey.generate(name="other", scopes=Scope.values)
        client = APIClient()
        codes = [client.get("/echo/", HTTP_X_API_KEY=raw).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        response = client.get("/echo/", HTTP_X_API_KEY=raw)
        assert int(response["Retry-After"]) > 0
        assert response.json()["error"]["code"] == "throttled"
        # Another key has its own allowance.
        assert client.get("/echo/", HTTP_X_API_KEY=other).status_code == 200
    finally:
        ApiKeyRateThrottle.THROTTLE_RATES = {"api_key": "600/min"}


def test_validation_errors_share_one_format(key):
    _, raw = key
    response = APIClient().post(
        "/echo/", {"count": 0}, format="json", HTTP_X_API_KEY=raw
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == 400
    assert error["code"] == "invalid"
    assert "count" in error["fields"]


def test_create_api_key_prints_the_key_once():
    out, err = StringIO(), StringIO()
    call_command(
        "create_api_key", "crm sync", "--scope", "read", stdout=out, stderr=err
    )
    raw = out.getvalue().strip()
    assert raw.startswith("sk_")
    assert ApiKey.objects.get().key_hash == hash_key(raw)
    assert "cannot be shown again" in err.getvalue()


def test_health_reports_the_database():
    response = APIClient().get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


def test_health_is_503_when_the_broker_is_down(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    from smscampaigns.celery import app

    app.conf.broker_url = settings.CELERY_BROKER_URL
    try:
        response = APIClient().get("/health/")
    finally:
        app.conf.broker_url = None
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "failing"
