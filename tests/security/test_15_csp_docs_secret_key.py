"""Finding 15: no Content-Security-Policy; /api/schema/ and /api/docs/ public in
production; a weak SECRET_KEY accepted at start-up."""

import re

import pytest

from django.urls import reverse

from smscampaigns.models import ApiKey, Scope
from tests.smscampaigns.test_settings import run_check

pytestmark = pytest.mark.django_db


def test_every_page_has_a_strict_content_security_policy(admin_client):
    for url in ("/admin/", "/admin/campaigns/campaign/add/", "/api/docs/"):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        assert "script-src 'self';" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        # No inline script (JSON data blocks are not run), and an inline style
        # only with the nonce of this answer.
        page = response.content.decode()
        inline = r"<script(?![^>]*\b(src=|type=\"application/json\"))[^>]*>"
        assert not re.search(inline, page), url
        assert 'style="' not in page, url
        nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
        for tag in re.findall(r"<style[^>]*>", page):
            assert f'nonce="{nonce}"' in tag


def test_the_docs_script_is_served_from_our_origin(admin_client):
    response = admin_client.get("/api/docs/?script=")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")


def test_schema_and_docs_need_a_login_in_production(client):
    assert client.get("/api/schema/").status_code == 401
    docs = client.get("/api/docs/")
    assert docs.status_code == 302
    assert docs["Location"].startswith(reverse("admin:login"))


def test_a_key_or_a_staff_login_opens_them(client, admin_client):
    _, raw = ApiKey.generate(name="docs", scopes=[Scope.READ])
    assert client.get("/api/schema/", HTTP_X_API_KEY=raw).status_code == 200
    assert admin_client.get("/api/schema/").status_code == 200
    assert admin_client.get("/api/docs/").status_code == 200


def test_a_setting_opens_them(client, settings):
    settings.API_DOCS_PUBLIC = True
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.parametrize(
    "secret",
    [
        "short-secret",
        "django-insecure-" + "x1y2z3" * 10,
        "a" * 60,
    ],
    ids=["short", "insecure-prefix", "too-few-characters"],
)
def test_a_weak_secret_key_stops_production_start_up(secret):
    result = run_check(
        DEBUG="false",
        SECRET_KEY=secret,
        ALLOWED_HOSTS="sms.example.com",
        PUBLIC_BASE_URL="https://sms.example.com",
    )
    assert result.returncode != 0
    assert "SECRET_KEY is too weak" in result.stderr


def test_debug_keeps_its_development_key():
    assert run_check(DEBUG="true").returncode == 0
