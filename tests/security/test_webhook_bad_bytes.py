"""Finding 5 (callbacks): a NUL character in a signed callback was a 503 for ever
(PostgreSQL refuses it, the vendor retries); invalid UTF-8 must be a 400 too. Both
are kept as rejected callbacks, bytes-safe, and change nothing."""

import uuid

import pytest

from django.test import Client

from campaigns.models import DeliveryEvent
from tests.factories import ContactFactory, MessageFactory
from webhooks.models import InboundMessage, RejectedCallback

from .webhook_vendors import (
    compact,
    plivo_inbound,
    plivo_v3_headers,
    post_form,
    post_json,
    sinch_headers,
    vendors,  # noqa: F401
    vonage_headers,
    vonage_inbound,
    vonage_status,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("vendors"),
]


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)


@pytest.mark.parametrize(
    "text", ["STOP\u0000", "caf\u00e9 \u0000 bar", "\ud800 lone surrogate"]
)
def test_an_inbound_text_the_database_cannot_hold_is_a_400_and_kept(client, text):
    contact = ContactFactory()
    body = compact(vonage_inbound(contact.phone, text))  # \u0000 as JSON sends it
    response = post_json(
        client, "/webhooks/vonage/inbound/", body, vonage_headers(body)
    )
    assert response.status_code == 400
    assert "callback contains" in response.json()["error"]
    rejected = RejectedCallback.objects.get()
    assert rejected.provider == "vonage"
    assert rejected.body == body.decode()
    assert not InboundMessage.objects.exists()


def test_a_raw_nul_byte_and_invalid_utf8_are_a_400_and_kept_escaped(client):
    message = MessageFactory(
        provider="vonage", provider_message_id=str(uuid.uuid4()), status="sent"
    )
    good = compact(vonage_status(message))
    body = good[:-1] + b',"x":"\x00\xff\xfe"}'
    response = post_json(client, "/webhooks/vonage/status/", body, vonage_headers(body))
    assert response.status_code == 400
    stored = RejectedCallback.objects.get().body
    # Nothing lost: the bad bytes are written out, the rest is as sent.
    assert stored.endswith('"x":"\\x00\\xff\\xfe"}')
    assert stored.startswith(good[:-1].decode())
    message.refresh_from_db()
    assert message.status == "sent"
    assert not DeliveryEvent.objects.exists()


def test_a_nul_in_a_sinch_receipt_is_a_400(client):
    body = compact(
        {
            "type": "recipient_delivery_report_sms",
            "batch_id": "B1\u0000",
            "recipient": "14155550123",
            "code": 0,
            "status": "Delivered",
            "at": "2024-06-06T08:17:19.210Z",
        }
    )
    response = post_json(client, "/webhooks/sinch/status/", body, sinch_headers(body))
    assert response.status_code == 400
    assert RejectedCallback.objects.count() == 1


def test_a_nul_in_a_plivo_form_is_a_400(client):
    path = "/webhooks/plivo/inbound/"
    params = plivo_inbound("+14155550123", "STOP\x00")
    response = post_form(client, path, params, plivo_v3_headers(path, params))
    assert response.status_code == 400
    assert "%00" in RejectedCallback.objects.get().body
