"""The composer reacts as the marketer types: length, encoding, segments, UCS-2
characters with a one-click fix, placeholders and the audience's cost."""

from decimal import Decimal

import pytest

from tests.factories import ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db(transaction=True)

# Characters that look harmless and force UCS-2 (half the characters per segment).
CURLY_APOSTROPHE = "\u2019"
EN_DASH = "\u2013"
# No GSM-7 stand-in. (ChromeDriver cannot type outside the BMP, so no emoji.)
STAR = "\u2605"


@pytest.fixture
def customers():
    customers = ContactListFactory(name="Customers")
    for index, name in enumerate(["Ada", "Grace", "Alan"]):
        contact = ContactFactory(
            phone=f"+1206555010{index}", first_name=name, attributes={"city": "Paris"}
        )
        contact.lists.add(customers)
    return customers


def _type(browser, css: str, text: str) -> None:
    field = browser.find(css)
    field.clear()
    field.send_keys(text)


def test_the_counter_follows_the_text(browser, customers, settings):
    settings.SMS_PRICE_PER_SEGMENT = {"locmem": Decimal("0.01")}
    browser.get("/admin/campaigns/campaign/add/")
    browser.wait_for_text("#composer-characters", "")
    # The default footer is there from the start, and counted.
    assert browser.find("#id_opt_out_footer").get_attribute("value") == (
        "Reply STOP to opt out"
    )

    _type(browser, "#id_body", "Spring sale: 20% off today")
    # 26 characters + a new line + the 21-character footer.
    browser.wait_for_text("#composer-characters", "48")
    assert "GSM-7" in browser.find("#composer-encoding").text
    assert "1" in browser.find("#composer-segments").text
    browser.screenshot("gsm-text", at="#composer")

    # A curly apostrophe, a dash and a star force UCS-2: the composer names them.
    browser.find("#id_body").send_keys(
        f" {EN_DASH} don{CURLY_APOSTROPHE}t miss it {STAR}"
    )
    browser.wait_for_text("#composer-encoding", "UCS-2")
    offending = browser.find("#composer-ucs2-chars").text
    assert CURLY_APOSTROPHE in offending
    assert EN_DASH in offending
    browser.screenshot("ucs2-text", at="#composer")

    # One click swaps them for GSM-7 stand-ins (the star has none and stays).
    browser.click("#composer-replace-gsm")
    browser.wait_for(
        lambda d: (
            CURLY_APOSTROPHE not in browser.find("#id_body").get_attribute("value")
        ),
        "the curly apostrophe was not replaced",
    )
    assert "don't" in browser.find("#id_body").get_attribute("value")
    browser.screenshot("after-replace", at="#composer")

    # Without the star the message is GSM-7 again.
    body = browser.find("#id_body").get_attribute("value").replace(STAR, "").strip()
    _type(browser, "#id_body", body)
    browser.wait_for_text("#composer-encoding", "GSM-7")

    # Longer than one segment: the count says so.
    browser.find("#id_body").send_keys(" More details at the shop." * 5)
    browser.wait_for_text("#composer-segments", "2")
    browser.screenshot("two-segments", at="#composer")


def test_placeholders_preview_for_a_contact_and_unknown_ones_are_flagged(
    browser, customers
):
    browser.get("/admin/campaigns/campaign/add/")
    _select_list(browser, customers)
    _type(browser, "#id_body", "Hi ")
    browser.wait_for(
        lambda d: browser.find_all('#composer-placeholders [data-placeholder="city"]'),
        "the audience's attributes were not offered as placeholders",
    )
    browser.click('#composer-placeholders [data-placeholder="first_name"]')
    browser.wait_for(
        lambda d: "{first_name}" in browser.find("#id_body").get_attribute("value"),
        "the placeholder was not inserted",
    )
    browser.wait_for_text("#composer-sample-text", "Hi Ada")
    browser.wait_for_text("#composer-recipients", "3")
    browser.wait_for_text("#composer-cost", "$")

    browser.find("#id_body").send_keys(" from {shoesize}")
    browser.wait_for_text("#composer-problems", "{shoesize}")
    browser.screenshot("unknown-placeholder", at="#composer")


def _select_list(browser, contact_list) -> None:
    """Pick a list in the form, whatever widget it uses (checkbox or select)."""
    boxes = browser.find_all(f'input[name="lists"][value="{contact_list.pk}"]')
    if boxes:
        boxes[0].click()
        return
    from selenium.webdriver.support.ui import Select

    available = browser.find_all("#id_lists_from")
    if available:  # filter_horizontal: choose, then move right
        Select(available[0]).select_by_value(str(contact_list.pk))
        browser.click("#id_lists_add")
        return
    Select(browser.find("#id_lists")).select_by_value(str(contact_list.pk))


def test_replacing_converts_the_text_as_it_is_now(browser):
    browser.get("/admin/campaigns/campaign/add/")
    body = browser.find("#id_body")
    body.send_keys(f"Don{CURLY_APOSTROPHE}t miss it")
    browser.wait_for(
        lambda d: browser.find("#composer-replace-gsm").is_displayed(),
        "the replace button never appeared",
    )
    # More text the panel has not been asked about yet (no input event).
    converting = browser.driver.execute_script(
        """
        const body = document.getElementById("id_body");
        body.value += " \u2013 it\u2019s on";
        const button = document.getElementById("composer-replace-gsm");
        button.click();
        return button.disabled;
        """
    )

    assert converting is True  # while the current text is being converted
    browser.wait_for(
        lambda d: body.get_attribute("value") == "Don't miss it - it's on",
        "the text typed after the last answer was lost or not converted",
    )
    browser.wait_for(
        lambda d: not browser.find("#composer-replace-gsm").get_attribute("disabled"),
        "the button stayed disabled",
    )
    browser.wait_for_text("#composer-encoding", "GSM-7")
    # The replacement is in the undo history.
    browser.driver.execute_script("document.execCommand('undo')")
    assert body.get_attribute("value") == (
        f"Don{CURLY_APOSTROPHE}t miss it {EN_DASH} it{CURLY_APOSTROPHE}s on"
    )


def test_an_expired_session_is_named_and_the_text_kept(browser):
    browser.get("/admin/campaigns/campaign/add/")
    browser.wait_for_text("#composer-characters", "")
    browser.driver.delete_cookie("sessionid")

    browser.find("#id_body").send_keys("Spring sale")

    browser.wait_for_text("#composer-error", "Your session has expired: log in again")
    assert browser.find("#composer-error").text == (
        "Your session has expired: log in again (your text is still here)."
    )
    assert browser.find("#id_body").get_attribute("value") == "Spring sale"
