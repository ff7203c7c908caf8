"""Finding 4: a STOP from a sender phonenumbers refuses (an unassigned range,
international digits without "+", a short code, an alphanumeric ID) was a 500:
nothing stored, the opt-out lost, the vendor retrying."""

import uuid

import pytest

from campaigns.models import Message
from contacts.models import ConsentEvent, Suppression
from contacts.services import contact_opt_in
from providers.messages import InboundSms
from tests.webhooks.test_views import plivo_post, vendors  # noqa: F401 (fixture)
from webhooks.models import InboundMessage
from webhooks.services import inbound_message_record

pytestmark = pytest.mark.django_db

SENDERS = ["+19995550123", "447700900123", "72345", "MyBrand"]


@pytest.mark.parametrize("sender", SENDERS)
def test_a_stop_from_any_sender_is_stored_and_honoured(sender):
    inbound = InboundSms(
        from_number=sender,
        to_number="+14155550100",
        text="STOP",
        provider_message_id=str(uuid.uuid4()),
    )
    inbound_message_record(provider="locmem", inbound=inbound)

    assert InboundMessage.objects.get().from_number == sender
    assert Suppression.objects.get().phone == sender
    assert ConsentEvent.objects.get().phone == sender
    # START from the same sender lifts exactly that suppression.
    contact_opt_in(phone=sender, source="keyword", text="START")
    assert not Suppression.objects.exists()


@pytest.mark.parametrize("sender", ["MyBrand", "72345"])
def test_only_a_digit_sender_gets_a_confirmation(sender, sms_outbox):
    inbound = InboundSms(from_number=sender, to_number="+14155550100", text="STOP")
    inbound_message_record(provider="locmem", inbound=inbound)
    replies = list(Message.objects.filter(kind="reply").values_list("to", flat=True))
    assert replies == ([] if sender == "MyBrand" else ["72345"])


@pytest.mark.django_db(transaction=True)
def test_the_webhook_answers_200_for_an_unparseable_sender(client, sms_outbox):
    params = {
        "From": "19995550123",
        "To": "14155550100",
        "Text": "STOP",
        "Type": "sms",
        "MessageUUID": str(uuid.uuid4()),
    }
    with pytest.MonkeyPatch.context() as patch:
        # The confirmation goes out through Plivo; this test is about the STOP.
        patch.setattr("webhooks.services._reply", lambda *args: None)
        response = plivo_post(client, "/webhooks/plivo/inbound/", params)
    assert response.status_code == 200, response.content
    sender = InboundMessage.objects.get().from_number
    assert sender.lstrip("+") == "19995550123"
    assert Suppression.objects.filter(phone=sender).exists()
