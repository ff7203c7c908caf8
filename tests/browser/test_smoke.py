"""The admin opens in a real browser, with its styles and scripts."""

import pytest


@pytest.mark.django_db(transaction=True)
def test_the_admin_index_opens_logged_in(browser):
    browser.get("/admin/")
    browser.wait_for_text("#site-name", "smscampaigns")
    # Admin CSS is served (the header is styled), so the page is not a bare table.
    header = browser.find("#header")
    assert header.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"
    assert browser.screenshot("admin-index").exists()
    # The start-here panel is the way in: its first link opens the import.
    browser.click("#start-here a")
    browser.wait_for(lambda d: browser.find_all("#id_file"), "the import did not open")
