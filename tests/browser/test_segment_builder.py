"""The segment builder: conditions added and removed with the form, the live count
and sample follow, and the segment saves."""

import pytest

from campaigns.segments import Segment
from tests.factories import ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def contacts():
    vip = ContactListFactory(name="VIP")
    people = [
        ContactFactory(phone="+12065550100", first_name="Ada",
                       attributes={"city": "Austin"}),
        ContactFactory(phone="+12065550101", first_name="Grace",
                       attributes={"city": "Austin"}),
        ContactFactory(phone="+447400123456", first_name="Alan",
                       attributes={"city": "London"}),
    ]  # fmt: skip
    people[0].lists.add(vip)
    return people


def _select(browser, css: str, label: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find(css)).select_by_visible_text(label)


def test_building_a_segment_counts_as_it_goes(browser, contacts):
    browser.get("/admin/campaigns/segment/add/")
    browser.find("#id_name").send_keys("Austin")
    # The JSON field gives way to the builder.
    browser.wait_for(lambda d: not browser.find("#segment-add").get_attribute("hidden"))

    browser.click("#segment-add")  # a country condition, "US" by default
    browser.wait_for_text("#segment-count", "2 contacts match")

    browser.click("#segment-add")
    rows = browser.find_all(".segment-condition")
    assert len(rows) == 2
    _select(browser, ".segment-condition:nth-child(2) [data-key=type]", "Attribute")
    browser.find(".segment-condition:nth-child(2) [data-key=key]").send_keys("city")
    browser.find(".segment-condition:nth-child(2) [data-key=value]").send_keys("austin")
    browser.wait_for_text("#segment-count", "2 contacts match")
    sample = browser.find("#segment-sample").text
    assert "Ada" in sample
    assert "Grace" in sample
    browser.screenshot("segment-builder", at="#segment-builder")

    # Without the country condition the city alone still matches the two.
    browser.click(".segment-condition:nth-child(1) .segment-remove")
    browser.wait_for(lambda d: len(browser.find_all(".segment-condition")) == 1)
    browser.wait_for_text("#segment-count", "2 contacts match")

    browser.click("input[name=_save]")
    browser.wait_for(lambda d: Segment.objects.filter(name="Austin").exists())
    assert Segment.objects.get().conditions == [
        {"type": "attribute", "key": "city", "op": "equals", "value": "austin"}
    ]
