"""The admin: subscribe an endpoint (secret shown once), the delivery log, re-send."""

import pytest

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.urls import reverse

from integrations.models import Delivery, WebhookEndpoint
from integrations.services import publish

from .conftest import endpoint_for

pytestmark = pytest.mark.django_db


def flashed(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_adding_an_endpoint_shows_its_secret_once(admin_client):
    response = admin_client.post(
        reverse("admin:integrations_webhookendpoint_add"),
        {
            "url": "https://crm.example.com/hooks",
            "description": "CRM",
            "events": ["contact.opted_out", "message.inbound"],
            "is_active": "on",
        },
        follow=True,
    )
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["message.inbound", "contact.opted_out"]
    [note] = [m for m in flashed(response) if "secret" in m]
    assert endpoint.secret in note
    page = admin_client.get(
        reverse("admin:integrations_webhookendpoint_change", args=[endpoint.pk])
    )
    assert endpoint.secret not in page.text


def test_the_form_refuses_no_events_and_private_urls(admin_client, settings):
    settings.WEBHOOK_ALLOW_LOCAL_URLS = False
    response = admin_client.post(
        reverse("admin:integrations_webhookendpoint_add"),
        {"url": "http://10.0.0.1/h", "events": []},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"url", "events"}
    assert not WebhookEndpoint.objects.exists()


def test_a_failing_endpoint_says_so_in_the_list(admin_client):
    from django.utils import timezone

    endpoint_for(
        "https://crm.example.com/h",
        failing_since=timezone.now(),
        consecutive_failures=3,
        retry_at=timezone.now(),
    )
    page = admin_client.get(reverse("admin:integrations_webhookendpoint_changelist"))
    assert "Failing" in page.text
    assert "3 attempts in a row" in page.text


def test_the_delivery_log_shows_each_event_and_resends_the_selected(admin_client):
    endpoint = endpoint_for("https://crm.example.com/h", "contact.opted_out")
    event = publish("contact.opted_out", {"phone": "+14155550101"})
    delivery = Delivery.objects.get()
    Delivery.objects.update(status="failed", attempts=30, error="HTTP 500")

    log = admin_client.get(reverse("admin:integrations_delivery_changelist"))
    assert "HTTP 500" in log.text
    found = admin_client.get(
        reverse("admin:integrations_delivery_changelist"), {"q": event.public_id}
    )
    assert found.context["cl"].result_count == 1
    detail = admin_client.get(
        reverse("admin:integrations_delivery_change", args=[delivery.pk])
    )
    assert "+14155550101" in detail.text
    assert event.public_id in detail.text

    admin_client.post(
        reverse("admin:integrations_delivery_changelist"),
        {"action": "resend", ACTION_CHECKBOX_NAME: [delivery.pk]},
    )
    again = Delivery.objects.order_by("pk").last()
    assert (again.event, again.endpoint, again.status) == (event, endpoint, "pending")
    assert again.resend_of == delivery
