"""/api/v1/webhook-endpoints/: subscribe, see the secret once, read the log."""

import pytest
from rest_framework.test import APIClient

from django.contrib.auth.models import Permission, User
from django.core.cache import cache

from integrations.models import WebhookEndpoint
from integrations.services import publish
from smscampaigns.models import ApiKey, Scope

from .conftest import endpoint_for

pytestmark = [pytest.mark.django_db, pytest.mark.urls("smscampaigns.urls")]
URL = "/api/v1/webhook-endpoints/"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


def client_with(*scopes: str) -> APIClient:
    key, raw = ApiKey.generate(name="crm", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    client.key = key
    return client


def test_creating_an_endpoint_answers_its_secret_once():
    api = client_with(Scope.WEBHOOKS)
    created = api.post(
        URL,
        {
            "url": "https://crm.example.com/hooks/sms",
            "events": ["contact.opted_out", "message.status_changed"],
            "description": "CRM",
        },
        format="json",
    )
    assert created.status_code == 201
    body = created.json()
    endpoint = WebhookEndpoint.objects.get()
    assert body["secret"] == endpoint.secret
    assert body["secret"].startswith("whsec_")
    # Stored in the order of the event list, whatever order was sent.
    assert body["events"] == ["message.status_changed", "contact.opted_out"]
    assert endpoint.created_by_key == api.key

    shown = api.get(f"{URL}{endpoint.pk}/").json()
    assert "secret" not in shown
    assert shown["url"] == "https://crm.example.com/hooks/sms"
    assert "secret" not in api.get(URL).json()["results"][0]


def test_the_secret_can_be_rolled():
    api = client_with(Scope.WEBHOOKS)
    endpoint = endpoint_for("https://crm.example.com/h")
    old = endpoint.secret
    answer = api.post(f"{URL}{endpoint.pk}/roll-secret/")
    assert answer.status_code == 200
    endpoint.refresh_from_db()
    assert answer.json()["secret"] == endpoint.secret != old


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"url": "https://x.example.com", "events": []}, "events"),
        ({"url": "https://x.example.com", "events": ["contact.deleted"]}, "events"),
        ({"url": "not a url", "events": ["message.inbound"]}, "url"),
        ({"url": 5, "events": ["message.inbound"]}, "url"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(data, field):
    answer = client_with(Scope.WEBHOOKS).post(URL, data, format="json")
    assert answer.status_code == 400
    assert field in answer.json()["error"]["fields"]


@pytest.mark.parametrize(
    "url",
    [
        "http://crm.example.com/h",
        "https://127.0.0.1/h",
        "https://10.0.0.5/h",
        "https://169.254.169.254/latest",
        "https://localhost/h",
    ],
)
def test_plain_http_and_private_addresses_are_refused(settings, url):
    settings.WEBHOOK_ALLOW_LOCAL_URLS = False
    answer = client_with(Scope.WEBHOOKS).post(
        URL, {"url": url, "events": ["message.inbound"]}, format="json"
    )
    assert answer.status_code == 400
    assert "url" in answer.json()["error"]["fields"]


def test_every_operation_needs_the_webhooks_scope():
    endpoint = endpoint_for("https://crm.example.com/h")
    others = client_with(Scope.READ, Scope.WRITE_CONTACTS, Scope.SEND)
    for response in (
        others.get(URL),
        others.get(f"{URL}{endpoint.pk}/"),
        others.post(URL, {"url": "https://a.example.com", "events": ["message.inbound"]}, format="json"),
        others.delete(f"{URL}{endpoint.pk}/"),
    ):  # fmt: skip
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "missing_scope"


def test_staff_need_endpoint_and_contact_permissions(client):
    user = User.objects.create_user("ops", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_webhookendpoint"))
    client.force_login(user)
    assert client.get(URL).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_contact"))
    client.force_login(User.objects.get(pk=user.pk))
    assert client.get(URL).status_code == 200


def test_changing_and_deleting_an_endpoint():
    api = client_with(Scope.WEBHOOKS)
    endpoint = endpoint_for("https://crm.example.com/h", "message.inbound")
    changed = api.patch(
        f"{URL}{endpoint.pk}/",
        {"events": ["link.clicked"], "is_active": False},
        format="json",
    )
    assert changed.status_code == 200
    endpoint.refresh_from_db()
    assert (endpoint.events, endpoint.is_active) == (["link.clicked"], False)
    assert api.delete(f"{URL}{endpoint.pk}/").status_code == 204
    assert not WebhookEndpoint.objects.exists()


def test_the_delivery_log_lists_the_endpoints_events_newest_first():
    api = client_with(Scope.WEBHOOKS)
    endpoint = endpoint_for("https://crm.example.com/h", "contact.opted_out")
    first = publish("contact.opted_out", {"n": 1})
    second = publish("contact.opted_out", {"n": 2})
    log = api.get(f"{URL}{endpoint.pk}/deliveries/").json()
    assert log["count"] == 2
    assert [row["event"] for row in log["results"]] == [
        second.public_id,
        first.public_id,
    ]
    assert log["results"][0] | {"id": 0, "created_at": ""} == {
        "id": 0,
        "event": second.public_id,
        "event_type": "contact.opted_out",
        "status": "pending",
        "attempts": 0,
        "created_at": "",
        "last_attempt_at": None,
        "delivered_at": None,
        "response_status": None,
        "error": "",
    }
