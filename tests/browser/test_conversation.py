"""A marketer answers a reply from the inbox, in a real browser."""

import threading

import pytest

from campaigns.models import Message
from campaigns.sending.direct import DirectSender
from providers.messages import InboundSms
from tests.factories import ContactFactory
from webhooks.services import inbound_message_record

pytestmark = pytest.mark.django_db(transaction=True)

OUR_NUMBER = "+14155550100"


def test_a_marketer_answers_a_reply_from_its_conversation(browser, sms_outbox):
    ContactFactory(phone="+14155550123", first_name="Ann", last_name="Lee")
    inbound_message_record(
        provider="locmem",
        inbound=InboundSms(
            from_number="+14155550123",
            to_number=OUR_NUMBER,
            text="Is the sale on Sunday too?",
        ),
    )

    browser.get("/admin/webhooks/inboundmessage/")
    browser.wait_for_text("#result_list", "Is the sale on Sunday too?")
    assert "1 unread" in browser.find(".inbox-unread").text
    browser.click("#result_list td.field-conversation_link a")

    browser.wait_for_text("h1", "Conversation with Ann Lee")
    assert "Is the sale on Sunday too?" in browser.find(".conversation-thread").text
    browser.screenshot("conversation", at=".conversation-thread")
    browser.find("#id_text").send_keys("Yes, Sunday too, until 6 pm.")
    browser.click(".conversation-reply input[type=submit]")

    browser.wait_for_text(".messagelist", "Reply queued")
    entries = browser.find_all(".conversation-entry")
    assert "Yes, Sunday too, until 6 pm." in entries[-1].text
    assert "queued" in entries[-1].text
    browser.screenshot("replied", at=".conversation-reply")

    # The worker sends it from the number Ann wrote to.
    DirectSender(concurrency=1, stop=threading.Event()).drain()
    [sms] = sms_outbox
    assert (sms.to, sms.sender) == ("+14155550123", OUR_NUMBER)
    assert Message.objects.get(kind=Message.Kind.REPLY).status == "submitted"
