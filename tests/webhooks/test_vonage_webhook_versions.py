"""Vonage webhooks as an application set to v0.1 or v1 sends them (issue 13, rows 2
and 11), posted signed through the real URLs.

The v0.1 shapes are Vonage's own: Nexmo/station
``_open_api/definitions/messages-olympus.yml`` (schemas MessageStatus and
InboundMessage: ``to``/``from`` as ``{"type", "number"}``, the text in
``message.content.text``, errors as ``{"code", "reason"}``).
"""

import json
import uuid

import pytest
import responses

from campaigns.models import Message
from providers import get_provider
from providers.messages import OutboundSms
from tests.factories import ContactFactory, MessageFactory
from tests.webhooks.test_views import client, vendors, vonage_post  # noqa: F401
from webhooks.models import InboundMessage

pytestmark = pytest.mark.django_db(transaction=True)

V01_INBOUND = {
    "message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    "to": {"type": "sms", "number": "14155550100"},
    "from": {"type": "sms", "number": "14155550123"},
    "timestamp": "2020-01-01T14:00:00.000Z",
    "message": {"content": {"type": "text", "text": "STOP"}},
}


def confirm_replies():
    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    mock.post(
        "https://api.nexmo.com/v1/messages",
        json={"message_uuid": str(uuid.uuid4())},
        status=202,
    )
    return mock


def test_v01_inbound_stop_is_not_lost(client):  # noqa: F811
    contact = ContactFactory(phone="+14155550123")

    with confirm_replies():
        response = vonage_post(client, "/webhooks/vonage/inbound/", V01_INBOUND)

    assert response.status_code == 200, response.content
    contact.refresh_from_db()
    assert contact.opted_out
    inbound = InboundMessage.objects.get()
    assert (inbound.from_number, inbound.text, inbound.keyword) == (
        "+14155550123",
        "STOP",
        "opt_out",
    )


def test_v01_status_keeps_recipient_and_error(client):  # noqa: F811
    message = MessageFactory(
        provider="vonage",
        provider_message_id="aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        status="submitted",
    )
    payload = {
        "message_uuid": message.provider_message_id,
        "to": {"type": "sms", "number": message.to.lstrip("+")},
        "from": {"type": "sms", "number": "14155550100"},
        "timestamp": "2020-01-01T14:00:00.000Z",
        "status": "rejected",
        "error": {"code": 1300, "reason": "Not part of the provider network"},
        "usage": {"currency": "EUR", "price": "0.0333"},
    }

    response = vonage_post(client, "/webhooks/vonage/status/", payload)

    assert response.status_code == 200, response.content
    message.refresh_from_db()
    assert (message.status, message.error_code, message.error_reason) == (
        "rejected",
        "1300",
        "Not part of the provider network",
    )
    event = message.delivery_events.get()
    assert event.recipient == message.to


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        # Vonage's sms.keyword would say HELP and STOP for these: only the first word.
        ("Help me find the store hours", ""),
        ("Stop sending me these", ""),
        ("HELP", "help"),
    ],
)
def test_vonage_first_word_keyword_is_not_an_intent(client, text, keyword):  # noqa: F811
    payload = {
        "channel": "sms",
        "message_uuid": str(uuid.uuid4()),
        "to": "14155550100",
        "from": "14155550123",
        "timestamp": "2025-01-01T12:00:00.000Z",
        "message_type": "text",
        "text": text,
        "sms": {"num_messages": "1", "keyword": text.split()[0].upper()},
    }

    with confirm_replies():
        response = vonage_post(client, "/webhooks/vonage/inbound/", payload)

    assert response.status_code == 200
    assert InboundMessage.objects.get().keyword == keyword
    assert Message.objects.filter(kind="reply").exists() == bool(keyword)


def test_sends_ask_for_v1_webhooks():
    backend = get_provider("vonage")
    with responses.RequestsMock() as api:
        api.post(
            "https://api.nexmo.com/v1/messages",
            json={"message_uuid": str(uuid.uuid4())},
            status=202,
        )
        [result] = backend.send_messages(
            [OutboundSms(to="+14155550123", text="Hi", reference=str(uuid.uuid4()))]
        )
        body = json.loads(api.calls[0].request.body)
    assert result.accepted
    assert body["webhook_version"] == "v1"
