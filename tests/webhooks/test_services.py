import threading
from datetime import timedelta

import pytest

from django.utils import timezone

from campaigns.models import Message
from campaigns.sending.direct import DirectSender
from contacts.models import ConsentEvent, Contact, Suppression
from providers.messages import InboundSms
from tests.factories import ContactFactory
from webhooks.models import InboundMessage
from webhooks.services import inbound_message_record

pytestmark = pytest.mark.django_db(transaction=True)

OUR_NUMBER = "+14155550100"


def worker_sends() -> int:
    """What run_worker does with queued replies: the webhook itself sends nothing."""
    return DirectSender(concurrency=1, stop=threading.Event()).drain()


def inbound(
    text: str, sender: str = "+14155550123", message_id: str = "", hint: str = ""
) -> InboundSms:
    return InboundSms(
        from_number=sender,
        to_number=OUR_NUMBER,
        text=text,
        provider_message_id=message_id,
        keyword_hint=hint,
    )


def test_stop_opts_the_contact_out_and_confirms_once_from_our_number(sms_outbox):
    contact = ContactFactory(phone="+14155550123")
    record = inbound_message_record(
        provider="locmem", inbound=inbound("Stop", message_id="mo-1")
    )
    assert record.keyword == "opt_out"
    assert record.contact == contact
    contact.refresh_from_db()
    assert contact.opted_out
    assert sms_outbox == []  # the webhook answers the vendor without sending
    assert worker_sends() == 1
    event = ConsentEvent.objects.get()
    assert (event.kind, event.source, event.text, event.provider) == (
        "opt_out",
        "keyword",
        "Stop",
        "locmem",
    )

    [reply] = sms_outbox
    assert reply.to == "+14155550123"
    assert reply.sender == OUR_NUMBER
    assert "unsubscribed" in reply.text
    sent = Message.objects.get(kind=Message.Kind.REPLY)
    assert sent.status == Message.Status.SUBMITTED

    # A second STOP within five minutes is recorded but not answered again.
    inbound_message_record(
        provider="locmem", inbound=inbound("STOP", message_id="mo-2")
    )
    assert worker_sends() == 0
    assert len(sms_outbox) == 1
    assert ConsentEvent.objects.count() == 2


def test_confirmation_is_sent_again_after_the_window(sms_outbox):
    inbound_message_record(provider="locmem", inbound=inbound("STOP", message_id="a"))
    Message.objects.update(queued_at=timezone.now() - timedelta(minutes=6))
    inbound_message_record(provider="locmem", inbound=inbound("STOP", message_id="b"))
    worker_sends()
    assert len(sms_outbox) == 2


def test_stop_from_an_unknown_number_suppresses_it(sms_outbox):
    inbound_message_record(
        provider="locmem", inbound=inbound("unsubscribe", sender="12125550188")
    )
    assert Suppression.objects.filter(phone="+12125550188").exists()
    worker_sends()
    assert sms_outbox[0].to == "+12125550188"


def test_start_reverses_the_opt_out_with_its_own_confirmation(sms_outbox):
    contact = ContactFactory(phone="+14155550123")
    inbound_message_record(provider="locmem", inbound=inbound("STOP"))
    inbound_message_record(provider="locmem", inbound=inbound("start"))
    contact.refresh_from_db()
    assert not contact.opted_out
    assert Contact.objects.reachable().filter(pk=contact.pk).exists()
    worker_sends()
    assert "subscribed again" in sms_outbox[1].text


def test_help_gets_the_configured_reply(settings, sms_outbox):
    settings.SMS_PROGRAM_NAME = "Acme Deals"
    settings.SMS_HELP_CONTACT = "help@acme.test"
    inbound_message_record(provider="locmem", inbound=inbound("HELP"))
    worker_sends()
    [reply] = sms_outbox
    assert reply.text.startswith("Acme Deals: Help at help@acme.test.")
    assert "Msg & data rates may apply" in reply.text
    assert "Reply STOP to opt out" in reply.text
    assert ConsentEvent.objects.count() == 0


def test_other_replies_are_stored_for_the_inbox_without_answer(sms_outbox):
    record = inbound_message_record(
        provider="locmem", inbound=inbound("What time do you open?")
    )
    assert record.keyword == ""
    assert InboundMessage.objects.get().text == "What time do you open?"
    assert sms_outbox == []


def test_a_retried_callback_is_stored_and_acted_on_once(sms_outbox):
    first = inbound_message_record(
        provider="locmem", inbound=inbound("STOP", message_id="same")
    )
    again = inbound_message_record(
        provider="locmem", inbound=inbound("STOP", message_id="same")
    )
    assert first.pk == again.pk
    assert InboundMessage.objects.count() == 1
    assert ConsentEvent.objects.count() == 1


def test_vendor_intent_opts_out(sms_outbox):
    inbound_message_record(
        provider="locmem", inbound=inbound("Arrêtez s'il vous plaît", hint="optout")
    )
    assert Suppression.objects.filter(phone="+14155550123").exists()
