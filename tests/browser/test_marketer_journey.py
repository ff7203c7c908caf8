"""A marketer's whole path through the admin, in a real browser: import contacts,
compose, send a test, schedule, send, and watch the campaign to completion."""

import re
from datetime import timedelta
from io import StringIO

import pytest

from django.core.management import call_command
from django.utils import timezone

from campaigns.models import Campaign, Message
from contacts.models import Contact
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db(transaction=True)

CSV = (
    "Mobile,First name,Last name,City\n"
    "(206) 555-0100,Ada,Lovelace,London\n"
    "206 555 0101,Grace,Hopper,Arlington\n"
    "not a number,Alan,Turing,Wilmslow\n"
    "+1 206 555 0102,Edsger,Dijkstra,Austin\n"
    "+1 206 555 0103,Barbara,Liskov,Boston\n"
)


@pytest.fixture
def simulator(settings):
    """Every message delivered, its receipt due at once: a campaign completes."""
    providers = {**settings.SMS_PROVIDERS}
    providers["simulator"] = {
        **providers["simulator"],
        "OPTIONS": {
            **providers["simulator"].get("OPTIONS", {}),
            "delivered_rate": 1.0,
            "undelivered_rate": 0.0,
            "report_delay": "0,0",
        },
    }
    settings.SMS_PROVIDERS = providers
    settings.SMS_DEFAULT_PROVIDER = "simulator"


def _set_value(browser, css: str, value: str) -> None:
    """Date and time inputs take typed text in the browser's locale: set the value."""
    browser.driver.execute_script(
        "arguments[0].value = arguments[1];"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
        "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
        browser.find(css),
        value,
    )


def _select(browser, css: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find(css)).select_by_value(value)


def _submit(browser, css: str) -> None:
    old = browser.find("html")
    browser.click(css)
    browser.wait_for(lambda d: old.id != browser.find("html").id, "no new page")


def _success(browser) -> str:
    return " ".join(
        element.text for element in browser.find_all(".messagelist .success")
    )


def test_import_compose_test_schedule_send_and_watch(browser, simulator, tmp_path):
    # Barbara opted out long ago: she is imported (her details update) but not texted.
    ContactFactory(
        phone="+12065550103", first_name="Barbara", opted_out_at=timezone.now()
    )

    # --- Import contacts -----------------------------------------------------------
    csv_file = tmp_path / "spring.csv"
    csv_file.write_text(CSV)
    browser.get("/admin/contacts/contact/")
    browser.click('a[href$="/admin/contacts/contact/import/"]')
    browser.wait_for(lambda d: browser.find_all("#id_file"), "no upload form")
    browser.find("#id_file").send_keys(str(csv_file))
    _select(browser, "#id_region", "US")
    browser.find("#id_new_list_name").send_keys("Spring customers")
    browser.screenshot("import-upload")
    _submit(browser, 'input[type="submit"].default')

    # The columns are matched by their names; the marketer confirms.
    assert "(206) 555-0100" in browser.find("#content-main table").text
    from selenium.webdriver.support.ui import Select

    mobile = Select(browser.find("#id_column_0")).first_selected_option
    assert mobile.text == "Phone"
    browser.screenshot("import-columns")
    _submit(browser, 'input[type="submit"].default')

    # Three new contacts, Barbara updated, the bad row reported with its number.
    browser.wait_for_text("#content", "new contacts")
    errors = browser.find("#import-errors").text
    assert "4" in errors  # spreadsheet row 4: "not a number"
    assert "not a number" in errors
    assert browser.find_all('a[href$="errors.csv"]')
    browser.screenshot("import-result")
    assert Contact.objects.filter(lists__name="Spring customers").count() == 4

    # --- Compose -------------------------------------------------------------------
    browser.get("/admin/campaigns/campaign/add/")
    browser.find("#id_name").send_keys("Spring sale")
    from tests.browser.test_composer import _select_list

    spring = Contact.objects.get(phone="+12065550100").lists.get()
    _select_list(browser, spring)
    browser.find("#id_body").send_keys("Hi {first_name|there}, spring sale today!")
    # Four in the list, one opted out: three recipients.
    browser.wait_for_text("#composer-recipients", "3")
    browser.wait_for_text("#composer-sample-text", "Hi Ada, spring sale today!")
    browser.screenshot("compose", at="#composer")
    _submit(browser, 'input[name="_continue"]')
    campaign = Campaign.objects.get(name="Spring sale")
    assert campaign.status == Campaign.Status.DRAFT

    # --- Send a test ---------------------------------------------------------------
    browser.click("#action-test")
    browser.wait_for(lambda d: browser.find_all("#id_numbers"), "no test form")
    browser.find("#id_numbers").send_keys("+1 206 555 0199")
    browser.screenshot("test-send")
    _submit(browser, "#confirm-action")
    # "sent", or "queued" when the provider had not answered before the redirect.
    assert re.search(r"Test (sent|queued) to", _success(browser))
    test = Message.objects.get(kind=Message.Kind.TEST)
    assert test.to == "+12065550199"
    assert test.body == "Hi Ada, spring sale today!\nReply STOP to opt out"

    # --- Schedule it for tomorrow morning, Paris time --------------------------------
    browser.click("#action-schedule")
    browser.wait_for(lambda d: browser.find_all("#id_date"), "no schedule form")
    assert "3" in browser.find("#confirm-recipients").text
    tomorrow = (timezone.now() + timedelta(days=1)).date()
    _set_value(browser, "#id_date", tomorrow.isoformat())
    _set_value(browser, "#id_time", "09:30")
    _select(browser, "#id_time_zone", "Europe/Paris")
    browser.screenshot("schedule")
    _submit(browser, "#confirm-action")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED
    local = timezone.localtime(campaign.scheduled_at, timezone=_zone("Europe/Paris"))
    assert (local.date(), local.strftime("%H:%M")) == (tomorrow, "09:30")
    # The text is still editable while it is only scheduled.
    assert browser.find_all("#id_body")

    # --- Changed their mind: send now ------------------------------------------------
    browser.click("#action-send")
    browser.wait_for(lambda d: browser.find_all("#confirm-recipients"), "no send page")
    assert "3" in browser.find("#confirm-recipients").text
    assert "$" in browser.find("#confirm-cost").text
    browser.screenshot("send-confirm")
    _submit(browser, "#confirm-action")
    assert _success(browser)

    # The worker beside the web server sends it (here: in the test, between pages;
    # the live server answers one request at a time on the same database).
    browser.driver.get("about:blank")
    for _ in range(3):
        call_command("run_worker", "--once", stdout=StringIO())
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED

    # --- Watch it ------------------------------------------------------------------
    browser.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    browser.wait_for_text("#dashboard-count-delivered", "3")
    assert browser.find_all("#dashboard-chart svg, svg#dashboard-chart")
    # Sending has started: the text cannot change any more.
    assert not browser.find_all("textarea#id_body")
    browser.screenshot("dashboard")
    delivered = sorted(
        Message.objects.filter(campaign=campaign).values_list("to", "status")
    )
    assert delivered == [
        ("+12065550100", "delivered"),
        ("+12065550101", "delivered"),
        ("+12065550102", "delivered"),
    ]


def _zone(name: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def test_the_page_follows_the_campaign_from_send_now_to_completed(browser, simulator):
    """After "Send now" the page says Starting; once a worker completed the
    campaign, the page's next refresh shows Completed and takes away the buttons
    that no longer apply, without a reload."""
    from selenium.webdriver.support.ui import WebDriverWait

    contact_list = ContactListFactory(name="Regulars")
    for name in ("Ada", "Grace"):
        ContactFactory(first_name=name).lists.add(contact_list)
    campaign = CampaignFactory(
        name="Weekend", lists=[contact_list], provider="simulator", opt_out_footer=""
    )

    browser.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    browser.click("#action-send")
    browser.wait_for(lambda d: browser.find_all("#confirm-recipients"), "no send page")
    _submit(browser, "#confirm-action")
    assert _success(browser)
    assert browser.find("#content h1").text == "Weekend (starting)"
    assert browser.find("#campaign-status").text == "Starting"
    assert not browser.find_all("#action-send")
    assert browser.find_all("#action-pause")
    browser.screenshot("starting")
    marker = browser.driver.execute_script(
        "document.documentElement.dataset.marker = 'same page'; return 'same page';"
    )

    # The worker runs while the page stays open. The live server shares this
    # thread's database connection: run it before the panel's first refresh, once
    # the page's scripts are idle.
    browser.wait_for(
        lambda d: d.execute_script(
            "const c = document.getElementById('composer');"
            "return document.readyState === 'complete'"
            " && !(c && c.dataset.pending);"
        ),
        "the page never settled",
    )
    for _ in range(3):
        call_command("run_worker", "--once", stdout=StringIO())
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED

    # The panel refreshes itself every 10 seconds.
    WebDriverWait(browser.driver, 25).until(
        lambda d: browser.find("#content h1").text == "Weekend (completed)",
        "the page's title never followed the campaign",
    )
    assert browser.find("#campaign-status").text == "Completed"
    for gone in ("send", "schedule", "pause", "cancel"):
        assert not browser.find_all(f"#action-{gone}"), gone
    assert browser.find_all("#action-retry")
    assert browser.find_all("#action-duplicate")
    assert "Weekend (completed)" in browser.driver.title
    # Updated in place: the same document, not a reload.
    assert (
        browser.driver.execute_script("return document.documentElement.dataset.marker")
        == marker
    )
    browser.screenshot("completed")
