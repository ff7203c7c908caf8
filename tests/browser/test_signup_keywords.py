"""A marketer sets up a sign-up keyword on a list's page; a number texts it and YES,
and shows up in the list with its consent, in a real browser."""

import threading

import pytest

from campaigns.sending.direct import DirectSender
from contacts.models import ContactList, SignupKeyword
from providers.messages import InboundSms
from webhooks.services import inbound_message_record

pytestmark = pytest.mark.django_db(transaction=True)

OUR_NUMBER = "+14155550100"
PERSON = "+14155550123"


def text(body: str) -> None:
    inbound_message_record(
        provider="locmem",
        inbound=InboundSms(from_number=PERSON, to_number=OUR_NUMBER, text=body),
    )


def test_a_keyword_set_up_on_the_list_page_grows_the_list(browser, sms_outbox):
    browser.get("/admin/contacts/contactlist/add/")
    browser.find("#id_name").send_keys("Spring deals")
    browser.click(".inline-group .add-row a")
    browser.wait_for(
        lambda d: browser.find_all("#id_signup_keywords-0-keyword"),
        "no keyword row was added",
    )
    browser.find("#id_signup_keywords-0-keyword").send_keys("join")
    # The default texts are there to edit, with the rates and STOP in them.
    question = browser.find("#id_signup_keywords-0-question").get_attribute("value")
    assert "Msg&data rates may apply. Reply STOP to opt out" in question
    browser.screenshot("keyword-on-list-page", at=".inline-group")
    browser.click("input[name=_save]")
    browser.wait_for_text(".messagelist", "was added successfully")
    assert "JOIN" in browser.find("#result_list").text
    keyword = SignupKeyword.objects.get()
    assert keyword.contact_list == ContactList.objects.get(name="Spring deals")

    text("JOIN")
    text("YES")
    DirectSender(concurrency=1, stop=threading.Event()).drain()
    assert "Welcome to Spring deals" in sms_outbox[-1].text

    browser.get(
        "/admin/contacts/contact/"
        f"?memberships__contact_list__id__exact={keyword.contact_list_id}"
    )
    browser.wait_for_text("#result_list", PERSON)
    browser.get("/admin/contacts/consentevent/")
    browser.wait_for_text("#result_list", "JOIN")
    browser.screenshot("signup-consent", at="#result_list")
