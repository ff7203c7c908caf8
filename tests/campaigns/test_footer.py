"""The opt-out footer: on by default, sent on its own line, counted, never a placeholder."""

import time

import pytest

from django.test import override_settings

from campaigns.models import Campaign, Message
from campaigns.preview import campaign_preview
from campaigns.sending.dispatch import Dispatcher
from campaigns.sending.launch import campaign_launch
from tests.factories import ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def audience():
    contact_list = ContactListFactory()
    contact = ContactFactory(phone="+12065550100", first_name="Ada")
    contact.lists.add(contact_list)
    return contact_list


def test_a_new_campaign_gets_the_configured_footer():
    with override_settings(SMS_OPT_OUT_FOOTER="Text STOP to end"):
        campaign = Campaign.objects.create(name="Sale", body="Hi!")
    assert campaign.opt_out_footer == "Text STOP to end"
    assert campaign.template_source == "Hi!\nText STOP to end"


def test_an_empty_footer_sends_the_body_alone():
    campaign = Campaign(name="Receipt", body="Your order shipped", opt_out_footer="")
    assert campaign.template_source == "Your order shipped"


def test_the_footer_is_sent_counted_and_its_braces_are_text(audience, sms_outbox):
    campaign = Campaign.objects.create(
        name="Sale",
        body="Hi {first_name|there}! " + "x" * 130,
        opt_out_footer="Reply STOP {to} opt out",
        provider="locmem",
    )
    campaign.lists.add(audience)
    preview = campaign_preview(campaign=campaign)
    # 154 characters of body alone fit one segment; the footer makes it two.
    assert preview.segments == 2
    assert preview.samples[0].text.endswith("\nReply STOP {to} opt out")

    campaign_launch(campaign=campaign)
    Dispatcher(campaign.pk).run(deadline=time.monotonic() + 10)
    assert [sms.text for sms in sms_outbox] == [
        "Hi Ada! " + "x" * 130 + "\nReply STOP {to} opt out"
    ]
    assert Message.objects.get(campaign=campaign).segments == 2
