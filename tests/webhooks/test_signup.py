"""Keyword sign-up with double opt-in (issue 14): a number texts a list's keyword, gets
the question, and joins on YES within the window. STOP outranks it all."""

import threading
from datetime import timedelta

import pytest

from django.utils import timezone

from campaigns.models import Message
from campaigns.sending.direct import DirectSender
from contacts.models import (
    ConsentEvent,
    Contact,
    ListMembership,
    PendingSignup,
    Suppression,
)
from contacts.services import contacts_opt_out, signups_prune
from providers.messages import InboundSms
from tests.factories import ContactFactory, ListMembershipFactory, SignupKeywordFactory
from webhooks.models import InboundMessage
from webhooks.services import inbound_message_record

pytestmark = pytest.mark.django_db(transaction=True)

OUR_NUMBER = "+14155550100"
PERSON = "+14155550123"


def worker_sends() -> int:
    """What run_worker does with queued replies: the webhook itself sends nothing."""
    return DirectSender(concurrency=1, stop=threading.Event()).drain()


def text(body: str, sender: str = PERSON, message_id: str = "") -> InboundMessage:
    return inbound_message_record(
        provider="locmem",
        inbound=InboundSms(
            from_number=sender,
            to_number=OUR_NUMBER,
            text=body,
            provider_message_id=message_id,
        ),
    )


@pytest.fixture
def join(settings):
    settings.SMS_PROGRAM_NAME = "Acme"
    return SignupKeywordFactory(keyword="JOIN", contact_list__name="Deals")


def members(signup_keyword) -> list[str]:
    return list(
        signup_keyword.contact_list.contacts.order_by("phone").values_list(
            "phone", flat=True
        )
    )


def test_a_keyword_gets_the_question_and_changes_nothing_yet(join, sms_outbox):
    record = text("Join!")
    assert record.keyword == InboundMessage.Keyword.SIGNUP
    assert sms_outbox == []  # the webhook answers the vendor; the worker sends
    assert worker_sends() == 1
    [question] = sms_outbox
    assert question.to == PERSON
    assert question.sender == OUR_NUMBER
    assert question.text == (
        "Acme: Reply YES to get Deals texts. Msg frequency varies. "
        "Msg&data rates may apply. Reply STOP to opt out."
    )
    assert not Contact.objects.exists()
    assert not ConsentEvent.objects.exists()
    assert members(join) == []
    assert PendingSignup.objects.get().phone == PERSON


def test_yes_makes_a_contact_and_member_with_its_consent_and_welcome(join, sms_outbox):
    text("join", message_id="mo-1")
    asked_at = PendingSignup.objects.get().requested_at
    record = text("Yes", message_id="mo-2")
    worker_sends()

    assert record.keyword == InboundMessage.Keyword.CONFIRM
    contact = Contact.objects.get()
    assert contact.phone == PERSON
    assert record.contact == contact
    assert members(join) == [PERSON]
    assert ListMembership.objects.get().source == "keyword"
    event = ConsentEvent.objects.get()
    assert (event.kind, event.source, event.contact, event.provider) == (
        "opt_in",
        "keyword",
        contact,
        "locmem",
    )
    assert event.keyword == "JOIN"
    assert event.contact_list == join.contact_list
    assert event.question == sms_outbox[0].text
    assert event.text == "Yes"
    assert event.requested_at == asked_at
    assert event.created_at >= asked_at
    assert [sms.text for sms in sms_outbox] == [
        event.question,
        "Acme: Welcome to Deals! Msg&data rates may apply. "
        "Reply HELP for help, STOP to opt out.",
    ]
    assert not PendingSignup.objects.exists()

    # A second YES finds nothing waiting: no second welcome, no second membership.
    text("YES", message_id="mo-3")
    worker_sends()
    assert len(sms_outbox) == 3  # the plain START answer, as before sign-ups existed
    assert "subscribed again" in sms_outbox[2].text
    assert ListMembership.objects.count() == 1


def test_y_confirms_too_and_an_existing_contact_keeps_its_details(join, sms_outbox):
    contact = ContactFactory(phone=PERSON, first_name="Ada")
    text("JOIN")
    text("y")
    contact.refresh_from_db()
    assert contact.first_name == "Ada"
    assert Contact.objects.count() == 1
    assert members(join) == [PERSON]


def test_each_list_has_its_own_texts_and_the_latest_keyword_counts(
    settings, sms_outbox
):
    join = SignupKeywordFactory(keyword="JOIN", contact_list__name="Deals")
    vip = SignupKeywordFactory(
        keyword="vip",
        contact_list__name="VIP",
        question="Reply YES for {list} perks ({keyword}). Reply STOP to opt out.",
        welcome="You are in, {list}! Reply STOP to opt out. {not a placeholder}",
    )
    assert vip.keyword == "VIP"
    text("JOIN")
    text("VIP")
    text("YES")
    worker_sends()
    assert members(join) == []
    assert members(vip) == [PERSON]
    assert [sms.text for sms in sms_outbox][1:] == [
        "Reply YES for VIP perks (VIP). Reply STOP to opt out.",
        "You are in, VIP! Reply STOP to opt out. {not a placeholder}",
    ]


def test_a_late_yes_does_not_sign_up_and_is_told_once(join, sms_outbox):
    text("JOIN")
    PendingSignup.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    record = text("YES")
    worker_sends()
    assert record.keyword == InboundMessage.Keyword.CONFIRM
    assert members(join) == []
    assert not ConsentEvent.objects.exists()
    assert not Contact.objects.exists()
    assert (
        sms_outbox[-1].text
        == "Acme: That sign-up has expired. Text JOIN again to join."
    )
    assert not PendingSignup.objects.exists()


def test_the_window_is_the_keywords(join):
    join.confirm_within_hours = 2
    join.save()
    text("JOIN")
    pending = PendingSignup.objects.get()
    assert pending.expires_at - pending.requested_at == timedelta(hours=2)


def test_stop_while_pending_cancels_the_sign_up(join, sms_outbox):
    text("JOIN")
    text("STOP")
    assert not PendingSignup.objects.exists()
    assert Suppression.objects.filter(phone=PERSON, reason="opt_out").exists()
    # YES now means what it meant before sign-ups existed (START); it joins no list.
    text("YES")
    worker_sends()
    assert members(join) == []
    texts = [sms.text for sms in sms_outbox]
    assert len(texts) == 3
    assert "unsubscribed" in texts[1]
    assert "Welcome" not in texts[2]


def test_an_opt_out_from_anywhere_cancels_a_waiting_sign_up(join):
    contact = ContactFactory(phone=PERSON)
    text("JOIN")
    contacts_opt_out(contacts=Contact.objects.filter(pk=contact.pk), source="admin")
    assert not PendingSignup.objects.exists()


def test_an_opted_out_number_is_asked_and_opted_in_by_its_yes(join, sms_outbox):
    contact = ContactFactory(phone=PERSON)
    text("STOP")
    text("JOIN")
    contact.refresh_from_db()
    assert contact.opted_out  # asking changes nothing
    assert not Contact.objects.reachable().exists()
    text("YES")
    contact.refresh_from_db()
    assert not contact.opted_out
    assert Contact.objects.reachable().get() == contact
    assert members(join) == [PERSON]
    assert list(ConsentEvent.objects.order_by("id").values_list("kind", "keyword")) == [
        ("opt_out", ""),
        ("opt_in", "JOIN"),
    ]


def test_an_unknown_opted_out_number_joins_through_the_opt_in_rule(join):
    text("STOP")  # no contact: the number is suppressed
    assert Suppression.objects.filter(phone=PERSON).exists()
    text("JOIN")
    text("YES")
    assert not Suppression.objects.exists()
    assert Contact.objects.reachable().get().phone == PERSON


def test_a_suppression_added_by_hand_stays(join):
    Suppression.objects.create(phone=PERSON, reason=Suppression.Reason.MANUAL)
    text("JOIN")
    text("YES")
    assert members(join) == [PERSON]
    assert not Contact.objects.reachable().exists()


def test_start_keeps_its_meaning_while_a_sign_up_waits(join, sms_outbox):
    ContactFactory(phone=PERSON)
    text("STOP")
    text("JOIN")
    text("START")
    worker_sends()
    assert "subscribed again" in sms_outbox[-1].text
    assert members(join) == []
    assert PendingSignup.objects.exists()  # a YES still answers the question


def test_help_while_pending_is_answered_and_the_sign_up_still_waits(join, sms_outbox):
    text("JOIN")
    text("HELP")
    text("YES")
    worker_sends()
    assert "Help at" in sms_outbox[1].text
    assert members(join) == [PERSON]


def test_a_yes_with_nothing_waiting_means_what_it_meant_before(join, sms_outbox):
    record = text("YES")
    assert record.keyword == InboundMessage.Keyword.OPT_IN
    worker_sends()
    assert members(join) == []
    assert "subscribed again" in sms_outbox[0].text


def test_a_member_may_leave_and_join_again(join, sms_outbox):
    text("JOIN")
    text("YES")
    text("STOP")
    text("JOIN")
    text("YES")
    worker_sends()
    # A question and a welcome per sign-up, even within minutes.
    assert len([sms for sms in sms_outbox if "Reply YES" in sms.text]) == 2
    assert len([sms for sms in sms_outbox if "Welcome" in sms.text]) == 2
    assert members(join) == [PERSON]
    assert Contact.objects.reachable().count() == 1


def test_a_repeated_keyword_is_asked_once_in_the_reply_window(join, sms_outbox):
    text("JOIN")
    text("join")
    worker_sends()
    assert len(sms_outbox) == 1
    assert PendingSignup.objects.count() == 1


def test_words_that_are_not_a_keyword_are_stored_for_the_inbox(join, sms_outbox):
    for body in ("JOINT", "join us", "please join"):
        assert text(body).keyword == ""
    assert not PendingSignup.objects.exists()
    assert worker_sends() == 0


def test_a_sender_that_cannot_be_a_contact_gets_nothing(join, sms_outbox):
    record = text("JOIN", sender="ACME")
    assert record.keyword == InboundMessage.Keyword.SIGNUP
    assert not PendingSignup.objects.exists()
    assert worker_sends() == 0


def test_a_member_already_in_the_list_is_not_added_twice(join):
    contact = ContactFactory(phone=PERSON)
    ListMembershipFactory(contact=contact, contact_list=join.contact_list)
    text("JOIN")
    text("YES")
    assert ListMembership.objects.count() == 1
    assert ConsentEvent.objects.get().keyword == "JOIN"


def test_replies_are_recorded_as_messages_sent_by_the_worker(join):
    text("JOIN")
    reply = Message.objects.get(kind=Message.Kind.REPLY)
    assert reply.status == Message.Status.QUEUED
    worker_sends()
    reply.refresh_from_db()
    assert reply.status == Message.Status.SUBMITTED


def test_sign_ups_are_forgotten_a_week_after_their_window(join):
    text("JOIN")
    text("JOIN", sender="+14155550124")
    PendingSignup.objects.filter(phone=PERSON).update(
        expires_at=timezone.now() - timedelta(days=8)
    )
    assert signups_prune() == 1
    assert list(PendingSignup.objects.values_list("phone", flat=True)) == [
        "+14155550124"
    ]
