"""Finding 12: a receipt posted to one provider's URL changed a message sent through
another provider (found by our reference), and could opt out its recipient."""

import uuid

import pytest
import responses

from django.test import Client

from campaigns.models import DeliveryEvent
from tests.factories import ContactFactory, MessageFactory

from .webhook_vendors import (
    compact,
    plivo_status,
    plivo_v3_headers,
    post_form,
    post_json,
    sinch_headers,
    vendors,  # noqa: F401
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("vendors"),
]


@pytest.fixture
def client():
    # CSRF enforced, as for a real vendor: the webhooks must not need a token.
    return Client(enforce_csrf_checks=True)


def test_a_plivo_receipt_naming_a_vonage_message_changes_nothing(client):
    vonage_message = MessageFactory(
        provider="vonage", provider_message_id=str(uuid.uuid4()), status="submitted"
    )
    # Plivo's receipts find a message by the ?ref= of our callback URL: here a
    # Vonage message's reference, with Plivo's "recipient blocked us" code.
    path = f"/webhooks/plivo/status/?ref={vonage_message.client_reference}"
    params = plivo_status(
        vonage_message, "undelivered", MessageUUID=str(uuid.uuid4()), ErrorCode="200"
    )
    response = post_form(client, path, params, plivo_v3_headers(path, params))
    assert response.status_code == 200
    vonage_message.refresh_from_db()
    assert vonage_message.status == "submitted"
    assert vonage_message.contact.opted_out_at is None
    event = DeliveryEvent.objects.get()
    assert event.message is None


def test_a_sinch_opt_out_signal_for_a_number_sinch_never_texted_is_ignored(client):
    stranger = ContactFactory()
    MessageFactory(contact=stranger, provider="vonage", status="delivered")
    body = compact(
        {
            "type": "recipient_delivery_report_sms",
            "batch_id": "B-unknown",
            "recipient": stranger.phone.lstrip("+"),
            "code": 0,
            "status": "Deleted",
            "at": "2024-06-06T08:17:19.210Z",
        }
    )
    response = post_json(client, "/webhooks/sinch/status/", body, sinch_headers(body))
    assert response.status_code == 200
    stranger.refresh_from_db()
    assert stranger.opted_out_at is None


@responses.activate
def test_a_receipt_at_the_right_providers_url_still_applies(client):
    message = MessageFactory(provider="plivo", status="submitted")
    path = f"/webhooks/plivo/status/?ref={message.client_reference}"
    params = plivo_status(message, "delivered", MessageUUID=str(uuid.uuid4()))
    response = post_form(client, path, params, plivo_v3_headers(path, params))
    assert response.json()["applied"] == 1
    message.refresh_from_db()
    assert message.status == "delivered"
