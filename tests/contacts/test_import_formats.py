"""Files as marketers save them (semicolons, tabs, Windows-1252), one attribute naming
rule for every import, strict JSON records and numbers with letters."""

import io

import pytest
from rest_framework.test import APIClient

from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from contacts.imports import (
    ContactImportError,
    contact_import_csv,
    contact_import_records,
    sniff_csv,
)
from contacts.models import Contact, ImportJob
from contacts.phones import InvalidPhoneNumber, parse_phone
from smscampaigns.models import ApiKey, Scope

pytestmark = pytest.mark.django_db

IMPORT = reverse("admin:contacts_contact_import")

# What Excel writes for "CSV (séparateur : point-virgule)" on a French Windows.
FRENCH = (
    "Téléphone;Prénom;Nom;Ville\r\n"
    "06 12 34 56 78;Zoé;Lefèvre;Orléans\r\n"
    "+33 6 98 76 54 32;François;Dœuf;Besançon\r\n"
).encode("cp1252")
GERMAN_TABS = (
    "Telefon\tVorname\tStraße\r\n+49 1512 3456789\tJürgen\tHauptstraße 5\r\n"
).encode("cp1252")


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def api() -> APIClient:
    cache.clear()
    _, raw = ApiKey.generate(name="tests", scopes=Scope.values)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def csv_upload(data: bytes, name: str = "clients.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="text/csv")


# --- 1, 2: separator and encoding --------------------------------------------------


@pytest.mark.parametrize(
    ("data", "encoding", "delimiter"),
    [
        (FRENCH, "cp1252", ";"),
        (GERMAN_TABS, "cp1252", "\t"),
        ("phone|name\n+14155550123|Zoë\n".encode(), "utf-8", "|"),
        ("\ufeffphone,name\n+14155550123,Zoë\n".encode(), "utf-8", ","),
        (b"phone\n+14155550123\n", "utf-8", ","),
        ("phone;name\n+79161234567;Привет мир\n".encode("cp1251"), "cp1251", ";"),
    ],
)
def test_the_separator_and_encoding_are_told_from_the_file(data, encoding, delimiter):
    found = sniff_csv(data)
    assert (found.encoding, found.delimiter) == (encoding, delimiter)


def test_a_semicolon_windows_1252_file_imports_with_its_accents():
    result = contact_import_csv(
        file=io.BytesIO(FRENCH),
        encoding=None,
        delimiter=None,
        columns={"Téléphone": "phone", "Prénom": "first_name", "Nom": "last_name"},
        region="FR",
    )
    assert (result.created, result.error_count) == (2, 0)
    zoe = Contact.objects.get(phone="+33612345678")
    assert (zoe.first_name, zoe.last_name) == ("Zoé", "Lefèvre")
    assert zoe.attributes == {"ville": "Orléans"}


def test_a_single_column_holding_semicolons_says_which_separator_it_uses():
    with pytest.raises(ContactImportError) as caught:
        contact_import_csv(file=[b"phone;name\n", b"+14155550123;Ann\n"])
    assert "separated by semicolons" in str(caught.value)
    assert "<column>" not in str(caught.value)


def test_the_api_tells_the_format_and_accepts_it_given(api):
    told = "phone;first_name;Ville\r\n+33612345678;Zoé;Orléans\r\n".encode("cp1252")
    response = api.post(
        "/api/v1/contacts/import/", {"file": csv_upload(told)}, format="multipart"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["created"] == 1
    zoe = Contact.objects.get(phone="+33612345678")
    assert (zoe.first_name, zoe.attributes) == ("Zoé", {"ville": "Orléans"})

    # Given: a file too short to tell its encoding from ("Zoë" only).
    given = "phone|first_name\r\n+14155550123|Zoë\r\n".encode("cp1252")
    response = api.post(
        "/api/v1/contacts/import/",
        {"file": csv_upload(given), "delimiter": "pipe", "encoding": "windows-1252"},
        format="multipart",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["created"] == 1
    assert Contact.objects.get(phone="+14155550123").first_name == "Zoë"


def test_the_api_refuses_an_unknown_encoding_or_separator(api):
    data = b"phone\n+14155550123\n"
    response = api.post(
        "/api/v1/contacts/import/",
        {"file": csv_upload(data), "encoding": "klingon", "delimiter": "#"},
        format="multipart",
    )
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert "Unknown encoding" in fields["encoding"][0]
    assert "delimiter" in fields


def test_the_admin_wizard_shows_the_format_found_and_reads_it_another_way(
    admin_client,
):
    response = admin_client.post(
        IMPORT, {"file": csv_upload(FRENCH), "region": "FR"}, follow=True
    )
    job = ImportJob.objects.get()
    assert (job.encoding, job.delimiter) == ("cp1252", ";")
    page = response.content.decode()
    assert "Windows-1252" in page
    assert "semicolons" in page
    assert "Orléans" in page
    assert "Zoé" in page
    assert "Orl\u00c3\u00a9ans" not in page

    columns = reverse("admin:contacts_contact_import_columns", args=[job.pk])
    # Commas: the whole line is one column, as the marketer sees in the preview.
    response = admin_client.post(
        columns, {"reformat": "1", "encoding": "cp1252", "delimiter": ","}, follow=True
    )
    job.refresh_from_db()
    assert (job.encoding, job.delimiter) == ("cp1252", ",")
    assert 'id="id_column_1"' not in response.content.decode()

    # UTF-8 cannot read its accents: refused, and the page says so.
    response = admin_client.post(
        columns, {"reformat": "1", "encoding": "utf-8", "delimiter": ";"}
    )
    assert "The file cannot be read that way" in response.content.decode()
    job.refresh_from_db()
    assert job.encoding == "cp1252"

    admin_client.post(
        columns, {"reformat": "1", "encoding": "cp1252", "delimiter": ";"}
    )
    response = admin_client.post(
        columns,
        {"column_0": "phone", "column_1": "first_name", "column_2": "last_name"}
        | {"column_3": "attribute"},
    )
    assert response.status_code == 302
    assert Contact.objects.get(phone="+33612345678").first_name == "Zoé"
    job.refresh_from_db()
    assert job.result["error_count"] == 0


# --- 3: one attribute naming rule ---------------------------------------------------


def test_the_admin_and_the_api_name_attributes_alike(admin_client, api):
    data = b"phone,City,Shoe size\n+14155550123,Paris,38\n"
    api.post("/api/v1/contacts/import/", {"file": csv_upload(data)}, format="multipart")
    by_api = Contact.objects.get(phone="+14155550123").attributes

    other = data.replace(b"+14155550123", b"+14155550124")
    admin_client.post(IMPORT, {"file": csv_upload(other), "region": "US"})
    job = ImportJob.objects.get()
    admin_client.post(
        reverse("admin:contacts_contact_import_columns", args=[job.pk]),
        {"column_0": "phone", "column_1": "attribute", "column_2": "attribute"},
    )
    by_admin = Contact.objects.get(phone="+14155550124").attributes
    assert by_api == by_admin == {"city": "Paris", "shoe_size": "38"}


def test_the_composer_suggests_the_imported_spelling():
    from campaigns.templating import validate

    [problem] = validate("Hi from {City}", known_attributes={"city"})
    assert "Did you mean {city}?" in problem


# --- 4: JSON records ----------------------------------------------------------------


def test_a_json_record_with_an_unknown_key_is_refused_naming_it(api):
    response = api.post(
        "/api/v1/contacts/import/",
        {"contacts": [{"phone": "+14155550123", "City": "Paris", "firstname": "A"}]},
        format="json",
    )
    assert response.status_code == 400
    [message] = response.json()["error"]["fields"]["contacts"]["0"]["non_field_errors"]
    assert "'City'" in message
    assert "'firstname'" in message
    assert "attributes" in message
    assert not Contact.objects.exists()


def test_a_json_record_takes_its_time_zone_and_attributes_as_given(api):
    response = api.post(
        "/api/v1/contacts/import/",
        {
            "contacts": [
                {
                    "phone": "+14155550123",
                    "time_zone": "Europe/Paris",
                    "attributes": {"loyaltyTier": "gold"},
                }
            ]
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    contact = Contact.objects.get()
    assert contact.time_zone == "Europe/Paris"
    assert contact.attributes == {"loyaltyTier": "gold"}


# --- 5: letters in numbers ----------------------------------------------------------


def test_letters_in_a_number_are_refused_unless_asked():
    with pytest.raises(InvalidPhoneNumber, match="letters"):
        parse_phone("+1 415 555 ABCD")
    assert parse_phone("+1 415 555 ABCD", keypad_letters=True).e164 == "+14155552223"


def test_imports_refuse_letters_unless_asked(api):
    result = contact_import_records(records=[{"phone": "+1 415 555 ABCD"}])
    assert result.errors[0].error == "Invalid phone number: it contains letters."
    assert not Contact.objects.exists()

    response = api.post(
        "/api/v1/contacts/import/",
        {"contacts": [{"phone": "+1 415 555 ABCD"}], "keypad_letters": True},
        format="json",
    )
    assert response.json()["created"] == 1
    assert Contact.objects.get().phone == "+14155552223"
