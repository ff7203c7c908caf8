"""In a real browser: a campaign's CSV export, and an event webhook endpoint
subscribed in the admin whose receiver fails, then recovers."""

import csv
import io
import time

import pytest

from campaigns.models import Message
from contacts.models import Source
from contacts.services import contact_opt_out
from integrations.delivery import deliver_due
from integrations.models import WebhookEndpoint
from integrations.signing import SIGNATURE_HEADER, verify
from tests.factories import CampaignFactory, ContactFactory, MessageFactory
from tests.integrations.receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)

FETCH_TEXT = """
const done = arguments[arguments.length - 1];
fetch(arguments[0], {credentials: "same-origin"})
  .then(r => r.text().then(text => done([r.status, r.headers.get("content-type"), text])));
"""


def test_the_campaign_page_exports_its_results_as_csv(browser):
    campaign = CampaignFactory(name="Spring sale", provider="locmem")
    ada = ContactFactory(first_name="Ada", last_name="Lovelace", phone="+12065550100")
    MessageFactory(
        campaign=campaign, contact=ada, status=Message.Status.DELIVERED, segments=2
    )
    mallory = ContactFactory(first_name="=HYPERLINK(1)", phone="+12065550101")
    MessageFactory(campaign=campaign, contact=mallory, status="undelivered")

    browser.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    link = browser.find("#export-results")
    assert link.text.lower() == "export results (csv)"  # object-tools are upper case
    browser.screenshot("campaign-page-export", at="#export-results")

    # What the link downloads, fetched by the page itself (with its session).
    status, content_type, text = browser.driver.execute_async_script(
        FETCH_TEXT, link.get_attribute("href")
    )
    assert (status, content_type) == (200, "text/csv; charset=utf-8")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert [(r["phone"], r["first_name"], r["status"]) for r in rows] == [
        ("+12065550100", "Ada", "delivered"),
        ("+12065550101", "'=HYPERLINK(1)", "undelivered"),
    ]


def test_an_endpoint_subscribed_in_the_admin_fails_then_recovers(browser, settings):
    settings.WEBHOOK_ALLOW_LOCAL_URLS = True  # the receiver listens on 127.0.0.1
    settings.WEBHOOK_BACKOFF_BASE = 0.2
    with Receiver(status=503) as receiver:
        browser.get("/admin/integrations/webhookendpoint/add/")
        browser.find("#id_url").send_keys(receiver.url)
        browser.find("#id_description").send_keys("CRM")
        browser.click("input[name=events][value='contact.opted_out']")
        old = browser.find("html")
        browser.click("input[name=_save]")
        browser.wait_for(lambda d: old.id != browser.find("html").id, "not saved")
        endpoint = WebhookEndpoint.objects.get()
        notes = " ".join(e.text for e in browser.find_all(".messagelist li"))
        assert endpoint.secret in notes  # shown once, now
        browser.screenshot("endpoint-added-secret")

        contact = ContactFactory(phone="+12065550123")
        contact_opt_out(phone=contact.phone, source=Source.API)
        deliver_due(deadline=time.monotonic() + 5, concurrency=0)

        browser.get("/admin/integrations/webhookendpoint/")
        assert "Failing" in browser.find("#result_list").text
        browser.get("/admin/integrations/delivery/")
        log = browser.find("#result_list").text
        assert "HTTP 503" in log
        browser.screenshot("delivery-log-failing")

        # The receiver is back; the next attempt (after the backoff) delivers.
        receiver.status = 200
        time.sleep(0.3)
        assert deliver_due(deadline=time.monotonic() + 5, concurrency=0) == 1

        browser.get("/admin/integrations/webhookendpoint/")
        assert "OK" in browser.find("#result_list").text
        browser.get("/admin/integrations/delivery/")
        assert "Delivered" in browser.find("#result_list").text
        browser.screenshot("delivery-log-delivered")

        headers, body = receiver.received[-1]
        assert verify(endpoint.secret, body, headers[SIGNATURE_HEADER])
        assert len(receiver.received) == 2  # the failed attempt, then the delivery
