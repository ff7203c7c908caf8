"""Conversations: replies linked to the campaign message they answer, read state,
threads both ways, and answering a contact."""

import threading
from datetime import timedelta

import pytest

from django.utils import timezone

from campaigns.models import Message
from campaigns.sending.direct import DirectSender
from contacts.models import Suppression
from contacts.services import contact_opt_out
from providers.messages import InboundSms
from tests.factories import CampaignFactory, ContactFactory, MessageFactory
from webhooks.conversations import (
    contact_thread,
    conversation_summaries,
    conversations,
    unread_count,
)
from webhooks.models import InboundMessage
from webhooks.services import (
    ReplyRefused,
    conversation_mark_read,
    conversation_reply,
    inbound_message_record,
)

pytestmark = pytest.mark.django_db

OUR_NUMBER = "+14155550100"
OTHER_NUMBER = "+14155550111"
PHONE = "+14155550123"


def receive(
    text: str = "Sounds good",
    *,
    sender: str = PHONE,
    to: str = OUR_NUMBER,
    provider: str = "locmem",
    at=None,
) -> InboundMessage:
    return inbound_message_record(
        provider=provider,
        inbound=InboundSms(from_number=sender, to_number=to, text=text, received_at=at),
    )


def sent(contact, *, hours_ago: float, sender: str = OUR_NUMBER, **fields) -> Message:
    """A campaign message to ``contact`` the provider accepted ``hours_ago``."""
    at = timezone.now() - timedelta(hours=hours_ago)
    campaign = CampaignFactory(provider="locmem", sender=sender)
    return MessageFactory(
        campaign=campaign,
        contact=contact,
        sender=sender,
        status=Message.Status.SUBMITTED,
        submitted_at=at,
        queued_at=at,
        **fields,
    )


def worker_sends() -> int:
    return DirectSender(concurrency=1, stop=threading.Event()).drain()


# --- Which campaign message a reply answers --------------------------------------


def test_a_reply_answers_the_last_message_sent_to_it_from_the_number_it_wrote_to():
    contact = ContactFactory(phone=PHONE)
    older = sent(contact, hours_ago=30)
    newest_from_ours = sent(contact, hours_ago=5)
    sent(contact, hours_ago=1, sender=OTHER_NUMBER)  # another of our numbers

    reply = receive()

    assert reply.in_reply_to == newest_from_ours
    assert reply.in_reply_to != older
    assert receive(to=OTHER_NUMBER).in_reply_to.sender == OTHER_NUMBER


def test_a_message_sent_longer_ago_than_the_setting_is_not_answered(settings):
    contact = ContactFactory(phone=PHONE)
    sent(contact, hours_ago=73)
    assert receive().in_reply_to is None

    settings.SMS_REPLY_ATTRIBUTION_HOURS = 80
    assert receive().in_reply_to is not None

    settings.SMS_REPLY_ATTRIBUTION_HOURS = 0
    assert receive().in_reply_to is None


def test_a_message_from_the_providers_default_number_is_answered_through_it():
    contact = ContactFactory(phone=PHONE)
    default = sent(contact, hours_ago=2, sender="")
    assert receive(provider="locmem").in_reply_to == default
    assert receive(provider="simulator").in_reply_to is None


def test_only_messages_the_provider_accepted_are_answered():
    contact = ContactFactory(phone=PHONE)
    MessageFactory(contact=contact, sender=OUR_NUMBER)  # queued, never sent
    test = sent(contact, hours_ago=1)
    Message.objects.filter(pk=test.pk).update(kind=Message.Kind.TEST)
    assert receive().in_reply_to is None


def test_the_number_it_wrote_to_matches_in_any_format():
    contact = ContactFactory(phone=PHONE)
    message = sent(contact, hours_ago=1)
    # Vonage writes our number without the "+".
    assert receive(to=OUR_NUMBER.lstrip("+")).in_reply_to == message


def test_a_number_that_is_no_contact_answers_nothing():
    assert receive(sender="+14155550177").in_reply_to is None


# --- Read state ------------------------------------------------------------------


def test_replies_arrive_unread_and_keywords_arrive_read():
    ContactFactory(phone=PHONE)
    question = receive("When do you open?")
    stop = receive("STOP")
    assert question.read_at is None
    assert stop.read_at is not None
    assert unread_count() == 1


def test_marking_a_conversation_read_touches_only_that_contact():
    mine = ContactFactory(phone=PHONE)
    ContactFactory(phone="+14155550124")
    receive("one")
    receive("two")
    receive("other", sender="+14155550124")

    assert conversation_mark_read(contact=mine) == 2
    assert conversation_mark_read(contact=mine) == 0
    assert unread_count() == 1


# --- The thread ------------------------------------------------------------------


def test_a_thread_holds_both_ways_oldest_first():
    contact = ContactFactory(phone=PHONE)
    now = timezone.now()
    campaign_message = sent(contact, hours_ago=3, body="Sale today!")
    receive("Is it on shoes too?", at=now - timedelta(hours=2))
    later = sent(contact, hours_ago=1, body="Yes, shoes too.")
    receive("Great", at=now - timedelta(minutes=5))
    ContactFactory()  # someone else's messages stay out
    MessageFactory()

    thread = contact_thread(contact)
    assert thread.count() == 4
    entries = thread[0:10]
    assert [(e.direction, e.text) for e in entries] == [
        ("outbound", "Sale today!"),
        ("inbound", "Is it on shoes too?"),
        ("outbound", "Yes, shoes too."),
        ("inbound", "Great"),
    ]
    first, question, _, last = entries
    assert (first.id, first.status, first.kind) == (
        campaign_message.pk,
        "submitted",
        "campaign",
    )
    assert first.campaign_id == campaign_message.campaign_id
    assert question.in_reply_to_id == campaign_message.pk
    assert question.campaign_id == campaign_message.campaign_id
    assert last.in_reply_to_id == later.pk
    assert last.unread
    assert [e.text for e in thread[2:4]] == ["Yes, shoes too.", "Great"]


def test_conversations_one_per_contact_who_wrote_most_recent_first():
    now = timezone.now()
    ann = ContactFactory(phone=PHONE)
    bob = ContactFactory(phone="+14155550124")
    ContactFactory(phone="+14155550125")  # never wrote: no conversation
    receive("hi", at=now - timedelta(hours=3))
    receive("hello?", at=now - timedelta(hours=2))
    receive("from bob", sender=bob.phone, at=now - timedelta(hours=1))
    receive("unknown", sender="+14155550177")  # no contact: no conversation
    sent(ann, hours_ago=0.5, body="Sorry for the wait")

    rows = list(conversations())
    assert [(r["contact"], r["unread"]) for r in rows] == [(bob.pk, 1), (ann.pk, 2)]

    bob_row, ann_row = conversation_summaries(rows)
    assert bob_row.contact == bob
    assert bob_row.last.text == "from bob"
    assert ann_row.last.direction == "outbound"
    assert ann_row.last.text == "Sorry for the wait"

    conversation_mark_read(contact=ann)
    assert [r["contact"] for r in conversations(unread_only=True)] == [bob.pk]


# --- Answering -------------------------------------------------------------------


def test_a_reply_goes_from_the_number_they_last_wrote_to_and_is_sent_by_the_worker(
    sms_outbox,
):
    contact = ContactFactory(phone=PHONE)
    receive("first", to=OTHER_NUMBER)
    receive("second")

    message = conversation_reply(contact=contact, text="  We open at 9.  ")

    assert (message.kind, message.status) == ("reply", "queued")
    assert (message.to, message.sender, message.provider) == (
        PHONE,
        OUR_NUMBER,
        "locmem",
    )
    assert message.body == "We open at 9."
    assert message.contact == contact
    assert sms_outbox == []  # queued: the worker sends it
    assert worker_sends() == 1
    [sms] = sms_outbox
    assert (sms.to, sms.sender, sms.text) == (PHONE, OUR_NUMBER, "We open at 9.")
    # Answering means it was read.
    assert unread_count() == 0


@pytest.mark.parametrize("how", ["stop", "admin", "suppressed"])
def test_no_reply_to_someone_who_opted_out_or_is_suppressed(how, sms_outbox):
    contact = ContactFactory(phone=PHONE)
    receive("question")
    if how == "stop":
        receive("STOP")
    elif how == "admin":
        contact_opt_out(phone=PHONE, source="admin")
    else:
        Suppression.objects.create(phone=PHONE, reason=Suppression.Reason.MANUAL)
    replies_before = Message.objects.count()

    with pytest.raises(ReplyRefused, match="opted out or is suppressed") as refused:
        conversation_reply(contact=contact, text="Still there?")

    assert refused.value.code == "opted_out"
    assert Message.objects.count() == replies_before
    worker_sends()
    assert [m.text for m in sms_outbox if m.text == "Still there?"] == []


@pytest.mark.parametrize(
    ("text", "code"),
    [("   ", "blank"), ("x" * 1601, "max_length"), ("a\x00b", "invalid")],
)
def test_an_invalid_reply_is_refused(text, code):
    contact = ContactFactory(phone=PHONE)
    receive()
    with pytest.raises(ReplyRefused) as refused:
        conversation_reply(contact=contact, text=text)
    assert refused.value.code == code
    assert not Message.objects.filter(kind=Message.Kind.REPLY).exists()


def test_someone_who_never_wrote_cannot_be_answered():
    contact = ContactFactory(phone=PHONE)
    sent(contact, hours_ago=1)
    with pytest.raises(ReplyRefused, match="has not written") as refused:
        conversation_reply(contact=contact, text="Hi")
    assert refused.value.code == "no_conversation"


def test_a_provider_that_can_no_longer_be_used_is_refused(settings):
    contact = ContactFactory(phone=PHONE)
    receive()
    settings.SMS_ALLOW_DEVELOPMENT_PROVIDERS = False
    with pytest.raises(ReplyRefused, match="locmem") as refused:
        conversation_reply(contact=contact, text="Hi")
    assert refused.value.code == "provider_unusable"


def test_the_inbound_event_names_the_campaign_message_it_answers():
    from integrations.events import inbound_data

    contact = ContactFactory(phone=PHONE)
    message = sent(contact, hours_ago=1)
    data = inbound_data(receive())["inbound_message"]
    assert (data["in_reply_to"], data["campaign"]) == (
        message.pk,
        message.campaign_id,
    )
