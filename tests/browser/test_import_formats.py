"""Importing a file as Excel saves it in France: semicolons, Windows-1252."""

import pytest

from contacts.models import Contact, ImportJob

pytestmark = pytest.mark.django_db(transaction=True)

FRENCH = (
    "Téléphone;Prénom;Nom;Ville\r\n"
    "06 12 34 56 78;Zoé;Lefèvre;Orléans\r\n"
    "+33 6 98 76 54 32;François;Dœuf;Besançon\r\n"
).encode("cp1252")


def _submit(browser, css: str) -> None:
    old = browser.find("html")
    browser.click(css)
    browser.wait_for(lambda d: old.id != browser.find("html").id, "no new page")


def test_a_semicolon_windows_1252_file_imports_with_its_accents(browser, tmp_path):
    from selenium.webdriver.support.ui import Select

    path = tmp_path / "clients.csv"
    path.write_bytes(FRENCH)
    browser.get("/admin/contacts/contact/import/")
    browser.wait_for(lambda d: browser.find_all("#id_file"), "no upload form")
    browser.find("#id_file").send_keys(str(path))
    Select(browser.find("#id_region")).select_by_value("FR")
    _submit(browser, 'input[type="submit"].default')

    # What was found is said, and the preview reads as the marketer typed it.
    found = browser.find(".import-format").text
    assert "Windows-1252" in found
    assert "semicolons" in found
    preview = browser.find("table.import-columns").text
    assert "Orléans" in preview
    assert "François" in preview
    # French column names are understood.
    guesses = [
        Select(browser.find(f"#id_column_{index}")).first_selected_option.text
        for index in range(4)
    ]
    assert guesses == ["Phone", "First name", "Last name", "Attribute “ville”"]
    browser.screenshot("import-columns-french")
    _submit(browser, 'input[type="submit"].default')

    browser.wait_for_text("#content", "new contacts")
    browser.screenshot("import-result-french")
    assert ImportJob.objects.get().result["error_count"] == 0
    zoe = Contact.objects.get(phone="+33612345678")
    assert (zoe.first_name, zoe.last_name, zoe.attributes) == (
        "Zoé",
        "Lefèvre",
        {"ville": "Orléans"},
    )
