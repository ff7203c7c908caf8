"""A campaign with a tracked link and a text variant, from the composer to a click
on a sent link showing on the campaign page."""

import re
from datetime import timedelta
from io import StringIO

import pytest

from django.core.management import call_command
from django.db.models import F

from campaigns.models import Campaign, CampaignSnapshot, Message
from tests.factories import ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db(transaction=True)

# A phone's browser: headless Chrome names itself HeadlessChrome, which is counted
# as a link-preview bot, not as a person's click.
PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"
)


@pytest.fixture
def customers():
    customers = ContactListFactory(name="Customers")
    for index, name in enumerate(["Ada", "Grace", "Alan", "Edsger"]):
        ContactFactory(phone=f"+1206555010{index}", first_name=name).lists.add(
            customers
        )
    return customers


def test_a_tracked_link_and_a_variant_from_composing_to_a_click(
    browser, customers, site_server, settings
):
    settings.PUBLIC_BASE_URL = site_server.url
    link = f"{site_server.url}/health/"
    browser.get("/admin/campaigns/campaign/add/")
    browser.find("#id_name").send_keys("Spring sale")
    browser.find("#id_body").send_keys(f"Hi {{first_name}}, 20% off: {link}")
    # The preview shows the short link in the link's place, and counts it.
    browser.wait_for_text("#composer-sample-text", f"{site_server.url}/l/")
    assert link not in browser.find("#composer-sample-text").text
    browser.wait_for_text("#composer-links", "1 link tracked")

    browser.click(".inline-group .add-row a")
    browser.find("textarea[name='variants-0-body']").send_keys(
        f"{{first_name}}, your spring deal: {link}"
    )
    share = browser.find("input[name='variants-0-share']")
    share.clear()
    share.send_keys("50")
    browser.wait_for(
        lambda d: browser.find_all("#composer-variants tr[data-variant='B']"),
        "variant B never appeared in the composer",
    )
    browser.screenshot("link-and-variant", at="#composer")

    from selenium.webdriver.support.ui import Select

    # filter_horizontal: choose the list, then move it right.
    Select(browser.find("#id_lists_from")).select_by_value(str(customers.pk))
    browser.click("#id_lists_add")
    browser.click("input[name='_save']")
    browser.wait_for(lambda d: "/change/" in d.current_url, "not saved")
    campaign = Campaign.objects.get(name="Spring sale")
    assert campaign.variants.count() == 1

    call_command("send_campaign", str(campaign.pk), stdout=StringIO())
    Message.objects.filter(campaign=campaign).update(status=Message.Status.DELIVERED)
    message = Message.objects.filter(campaign=campaign).first()
    path = re.search(r"/l/\w{8}", message.body).group()

    own = browser.driver.execute_script("return navigator.userAgent")
    browser.driver.execute_cdp_cmd("Network.setUserAgentOverride", {"userAgent": PHONE})
    try:
        browser.get(path)
        browser.wait_for(lambda d: d.current_url == link, "the redirect did not land")
    finally:
        browser.driver.execute_cdp_cmd(
            "Network.setUserAgentOverride", {"userAgent": own}
        )

    # Figures are snapshots at most 30 s old: make the last one old, so the page
    # counts again at once instead of within the next half minute.
    CampaignSnapshot.objects.filter(campaign=campaign).update(
        taken_at=F("taken_at") - timedelta(minutes=5)
    )
    browser.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    browser.wait_for_text("#dashboard-count-clicked", "1")
    assert browser.find_all("#dashboard-variants tr[data-variant='B']")
    browser.screenshot("clicked", at="#dashboard")
