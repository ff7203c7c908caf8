"""The site around the admin and the API: "/", the favicon, bearer keys, the docs'
grouping and the campaign stats' status."""

import shutil
import subprocess
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from django.contrib.staticfiles import finders
from django.core.cache import cache
from django.urls import reverse

from campaigns.models import Campaign
from smscampaigns.models import ApiKey, Scope
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()


@pytest.fixture
def raw_key() -> str:
    _, raw = ApiKey.generate(name="crm", scopes=Scope.values)
    return raw


def test_the_root_and_view_site_lead_to_the_admin(admin_client):
    response = admin_client.get("/")
    assert response.status_code == 302
    assert response.url == reverse("admin:index")
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert 'href="/">View site</a>' in page
    assert admin_client.get("/", follow=True).status_code == 200


def test_the_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response.url.endswith(".svg")
    assert "max-age" in response["Cache-Control"]
    # A static file like any other: collected and served by WhiteNoise.
    assert response.url == "/static/smscampaigns/favicon.svg"
    with open(finders.find("smscampaigns/favicon.svg"), "rb") as icon:
        assert icon.read().startswith(b"<svg")


def test_a_bearer_key_is_accepted(raw_key):
    response = APIClient().get(
        "/api/v1/contacts/", HTTP_AUTHORIZATION=f"Bearer {raw_key}"
    )
    assert response.status_code == 200


def test_a_bare_key_in_authorization_says_what_is_expected(raw_key):
    response = APIClient().get("/api/v1/contacts/", HTTP_AUTHORIZATION=raw_key)
    assert response.status_code == 401
    assert "Authorization: Token <key>" in response.json()["error"]["message"]


def test_another_scheme_is_left_to_the_others(raw_key):
    # Basic from a proxy in front: not a key, so "not provided", never a crash.
    response = APIClient().get(
        "/api/v1/contacts/", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz"
    )
    assert response.status_code == 401


def test_the_docs_group_operations_per_resource(admin_client):
    schema = admin_client.get("/api/schema/", {"format": "json"}).json()
    tags = {
        path: {tag for operation in operations.values() for tag in operation["tags"]}
        for path, operations in schema["paths"].items()
    }
    assert tags["/api/v1/contacts/"] == {"contacts"}
    assert tags["/api/v1/contacts/import/"] == {"contacts"}
    assert tags["/api/v1/lists/"] == {"lists"}
    assert tags["/api/v1/campaigns/{id}/stats/"] == {"campaigns"}
    assert tags["/api/v1/messages/"] == {"messages"}
    assert not any("v1" in found for found in tags.values())


def test_campaign_stats_carry_the_status(raw_key):
    campaign = CampaignFactory(status=Campaign.Status.PAUSED)
    response = APIClient().get(
        f"/api/v1/campaigns/{campaign.pk}/stats/",
        HTTP_AUTHORIZATION=f"Token {raw_key}",
    )
    assert response.status_code == 200
    assert response.json()["status"] == "paused"
    assert response.json()["replied_stop"] == 0


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_takes_a_port():
    root = Path(__file__).resolve().parents[2]
    # -n prints the commands without running them.
    commands = subprocess.run(
        ["make", "-n", "run", "PORT=8123"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "runserver 127.0.0.1:8123" in commands
