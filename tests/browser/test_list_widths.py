"""The campaign and message lists fit a 1,400 px window (the browser's size here)."""

import pytest

from django.utils import timezone

from campaigns.models import Campaign
from tests.factories import CampaignFactory, ContactFactory, MessageFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _page_width(browser) -> int:
    return browser.driver.execute_script("return document.documentElement.scrollWidth")


def test_the_campaign_and_message_lists_fit_the_window(browser):
    campaign = CampaignFactory(
        name="Spring sale for our most loyal customers in every region " * 2,
        status=Campaign.Status.SENDING,
        started_at=timezone.now(),
    )
    ada = ContactFactory(first_name="Ada", last_name="Lovelace-Byron")
    MessageFactory(
        campaign=campaign,
        contact=ada,
        to=ada.phone,
        body="Spring sale: 20% off everything in store and online this weekend " * 3,
        error_code="30007",
    )
    window = browser.driver.execute_script("return window.innerWidth")
    for path in ("/admin/campaigns/campaign/", "/admin/campaigns/message/"):
        browser.get(path)
        browser.wait_for(lambda d: browser.find_all("#result_list"), "no list")
        browser.screenshot(path.strip("/").replace("/", "-"))
        assert _page_width(browser) <= window, path
