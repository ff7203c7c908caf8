"""Contact import from CSV files and from API records."""

import io
import tracemalloc
from collections.abc import Iterator

import pytest

from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from contacts.imports import (
    ContactImportError,
    ImportResult,
    ImportRowError,
    contact_import_csv,
    contact_import_records,
)
from contacts.models import Contact, ListMembership, Source
from tests.factories import ContactFactory, ContactListFactory, ListMembershipFactory

pytestmark = pytest.mark.django_db

ANN = "+14155550123"
BOB = "+12125550123"
CAT = "+33612345678"


def csv_file(text: str, encoding: str = "utf-8") -> io.BytesIO:
    """An uploaded CSV file as the admin and the API receive it: binary."""
    return io.BytesIO(text.encode(encoding))


def contact(phone: str) -> Contact:
    return Contact.objects.get(phone=phone)


def test_csv_rows_become_contacts_with_other_columns_as_attributes():
    result = contact_import_csv(
        file=csv_file(
            "phone,first_name,last_name,city,plan\n"
            f"{ANN},Ann,Lee,Austin,gold\n"
            f"{CAT},Cat,Smith,Leeds,\n"
        )
    )

    assert result.to_dict() == {
        "created": 2,
        "updated": 0,
        "skipped": 0,
        "error_count": 0,
        "errors": [],
    }
    ann = contact(ANN)
    assert (ann.first_name, ann.last_name) == ("Ann", "Lee")
    assert ann.attributes == {"city": "Austin", "plan": "gold"}
    # A blank cell is no value, not an empty attribute.
    assert contact(CAT).attributes == {"city": "Leeds"}


def test_an_uploaded_excel_file_with_crlf_line_endings_imports():
    upload = SimpleUploadedFile(
        "contacts.csv",
        f'phone,first_name,note\r\n{ANN},Ann,"two\r\nlines"\r\n{BOB},Bob,\r\n'.encode(
            "utf-8-sig"
        ),
        content_type="text/csv",
    )

    result = contact_import_csv(file=upload)

    assert (result.created, result.error_count) == (2, 0)
    assert contact(ANN).attributes == {"note": "two\r\nlines"}


def test_created_contacts_get_the_country_and_time_zone_of_their_number():
    contact_import_csv(file=csv_file(f"phone\n{ANN}\n{CAT}\n"))

    ann, cat = contact(ANN), contact(CAT)
    assert (ann.country, ann.time_zone) == ("US", "America/Los_Angeles")
    assert (cat.country, cat.time_zone) == ("FR", "Europe/Paris")


def test_importing_the_same_file_again_skips_every_row_without_writing():
    text = f"phone,first_name,city\n{ANN},Ann,Austin\n{BOB},Bob,Boston\n"
    contact_import_csv(file=csv_file(text))
    Contact.objects.update(updated_at=timezone.now() - timezone.timedelta(days=1))
    before = {c.phone: c.updated_at for c in Contact.objects.all()}

    result = contact_import_csv(file=csv_file(text))

    assert (result.created, result.updated, result.skipped) == (0, 0, 2)
    assert {c.phone: c.updated_at for c in Contact.objects.all()} == before


def test_changed_rows_update_the_contact_and_keep_its_other_attributes():
    ContactFactory(
        phone=ANN,
        first_name="Ann",
        last_name="Lee",
        attributes={"city": "Austin", "vip": True},
    )
    ContactFactory(phone=BOB, first_name="Bob", last_name="Ray", attributes={})

    result = contact_import_csv(
        file=csv_file(
            f"phone,first_name,last_name,city\n{ANN},Anne,,Dallas\n{BOB},Bob,Ray,\n"
        )
    )

    assert (result.created, result.updated, result.skipped) == (0, 1, 1)
    ann = contact(ANN)
    # The blank last_name cell leaves the stored name alone.
    assert (ann.first_name, ann.last_name) == ("Anne", "Lee")
    assert ann.attributes == {"city": "Dallas", "vip": True}


def test_column_mapping_renames_and_drops_columns():
    result = contact_import_csv(
        file=csv_file(
            f"Mobile,Given name,Shoe size,Ignore me,Colour\n{ANN},Ann,38,secret,red\n"
        ),
        columns={
            "Mobile": "phone",
            "Given name": "first_name",
            "Shoe size": "shoe_size",
            "Ignore me": None,
        },
    )

    assert result.created == 1
    ann = contact(ANN)
    assert ann.first_name == "Ann"
    # Attributes are named by one rule, whatever the column's case.
    assert ann.attributes == {"shoe_size": "38", "colour": "red"}


def test_standard_columns_are_recognised_whatever_their_case_and_spacing():
    contact_import_csv(file=csv_file(f" Phone ,First Name,LAST_NAME\n{ANN},Ann,Lee\n"))

    ann = contact(ANN)
    assert (ann.first_name, ann.last_name, ann.attributes) == ("Ann", "Lee", {})


def test_a_mapping_naming_a_column_the_file_lacks_is_refused():
    with pytest.raises(ContactImportError, match="'Mobile'"):
        contact_import_csv(
            file=csv_file(f"phone\n{ANN}\n"), columns={"Mobile": "phone"}
        )
    assert not Contact.objects.exists()


def test_two_columns_filling_the_same_field_are_refused():
    with pytest.raises(ContactImportError, match="'phone'"):
        contact_import_csv(
            file=csv_file(f"phone,Mobile\n{ANN},{BOB}\n"), columns={"Mobile": "phone"}
        )


def test_a_file_without_a_phone_column_is_refused_before_any_row_is_written():
    with pytest.raises(ContactImportError, match="no phone column") as exc_info:
        contact_import_csv(file=csv_file(f"name,mobile\nAnn,{ANN}\n"))

    assert "name, mobile" in str(exc_info.value)
    assert not Contact.objects.exists()


def test_an_empty_file_is_refused():
    with pytest.raises(ContactImportError, match="empty"):
        contact_import_csv(file=csv_file(""))


def test_imported_contacts_join_the_list_once_with_the_import_source():
    contact_list = ContactListFactory()
    already_member = ListMembershipFactory(
        contact_list=contact_list, contact__phone=BOB, source=Source.ADMIN
    )

    result = contact_import_csv(
        file=csv_file(f"phone\n{ANN}\n{BOB}\n"), contact_list=contact_list
    )

    assert (result.created, result.skipped) == (1, 1)
    memberships = ListMembership.objects.filter(contact_list=contact_list)
    assert {(m.contact.phone, m.source) for m in memberships} == {
        (ANN, Source.IMPORT),
        (BOB, Source.ADMIN),
    }
    assert memberships.get(contact__phone=BOB).pk == already_member.pk


def test_an_invalid_phone_is_reported_with_its_row_and_the_other_rows_land():
    result = contact_import_csv(
        file=csv_file(
            "phone,first_name\n"  # row 1
            f"{ANN},Ann\n"  # row 2
            "\n"  # row 3: blank, skipped silently but still a spreadsheet row
            "555-not-a-number,Zed\n"  # row 4
            ",Nobody\n"  # row 5
            f"{BOB},Bob\n"  # row 6
        )
    )

    assert result.to_dict() == {
        "created": 2,
        "updated": 0,
        "skipped": 0,
        "error_count": 2,
        "errors": [
            {
                "row": 4,
                "phone": "555-not-a-number",
                "error": "Invalid phone number: it contains letters.",
            },
            {"row": 5, "phone": "", "error": "The phone number is missing."},
        ],
    }
    assert set(Contact.objects.values_list("phone", flat=True)) == {ANN, BOB}


def test_blank_rows_are_skipped_silently():
    result = contact_import_csv(file=csv_file(f"phone,city\n\n,\n  ,  \n{ANN},X\n\n"))

    assert (result.created, result.skipped, result.error_count) == (1, 0, 0)


def test_a_name_too_long_for_the_field_is_an_error_for_that_row_only():
    result = contact_import_csv(
        file=csv_file(f"phone,first_name\n{ANN},{'A' * 101}\n{BOB},Bob\n")
    )

    assert result.errors == [
        ImportRowError(2, ANN, "first_name is longer than 100 characters.")
    ]
    assert list(Contact.objects.values_list("phone", flat=True)) == [BOB]


def test_national_numbers_are_read_in_the_given_region(settings):
    settings.PHONE_DEFAULT_REGION = "US"
    text = "phone\n(415) 555-0123\n06 12 34 56 78\n"

    result = contact_import_csv(file=csv_file(text), region="FR")

    # (415) 555-0123 is not a French number; 06 12 34 56 78 is.
    assert result.created == 1
    assert [(error.row, error.phone) for error in result.errors] == [
        (2, "(415) 555-0123")
    ]
    assert "not a valid number in FR" in result.errors[0].error
    assert contact(CAT).country == "FR"


def test_national_numbers_default_to_the_configured_region(settings):
    settings.PHONE_DEFAULT_REGION = "US"

    contact_import_csv(file=csv_file("phone\n(415) 555-0123\n"))

    assert contact(ANN).time_zone == "America/Los_Angeles"


@pytest.mark.parametrize("chunk_size", [2000, 1], ids=["same chunk", "across chunks"])
def test_a_number_repeated_in_another_format_is_one_contact(chunk_size):
    result = contact_import_csv(
        file=csv_file(
            "phone,first_name,city\n"
            f"{ANN},Ann,Austin\n"
            "(415) 555-0123,Ann,Austin\n"  # exact repeat: changes nothing
            "1 415 555 0123,Annie,\n"  # later row wins for what it sets
        ),
        chunk_size=chunk_size,
    )

    assert (result.created, result.updated, result.skipped) == (1, 1, 1)
    ann = contact(ANN)
    assert (ann.first_name, ann.attributes) == ("Annie", {"city": "Austin"})


def test_a_utf8_bom_does_not_hide_the_phone_column():
    text = f"phone,first_name\n{ANN},Zoë\n"

    result = contact_import_csv(file=csv_file(text, "utf-8-sig"))
    assert result.created == 1
    assert contact(ANN).first_name == "Zoë"

    # Text-mode files keep the BOM as a character; it is dropped too.
    result = contact_import_csv(file=io.StringIO("\ufeff" + text))
    assert result.skipped == 1


def test_a_row_that_is_not_utf8_is_reported_and_the_others_land():
    data = (
        f"phone,first_name\n{ANN},Ann\n".encode()
        + f"{BOB},Zo\xeb\n".encode("latin-1")
        + f"{CAT},Cat\n".encode()
    )

    result = contact_import_csv(file=io.BytesIO(data))

    assert result.errors == [ImportRowError(3, BOB, "The row is not valid utf-8 text.")]
    assert set(Contact.objects.values_list("phone", flat=True)) == {ANN, CAT}


def test_a_file_that_is_not_utf8_at_all_is_refused_with_advice():
    with pytest.raises(ContactImportError, match="CSV UTF-8"):
        contact_import_csv(file=csv_file(f"phone\n{ANN}\n", "utf-16"))
    assert not Contact.objects.exists()


def test_another_single_byte_encoding_can_be_named():
    data = f"phone,first_name\n{ANN},Zoë\n".encode("cp1252")

    contact_import_csv(file=io.BytesIO(data), encoding="cp1252")

    assert contact(ANN).first_name == "Zoë"


def test_a_text_file_that_stops_decoding_keeps_the_rows_read_before():
    good_rows = "".join(f"+1415555{n:04d},Ann\n" for n in range(1000))
    data = ("phone,first_name\n" + good_rows).encode() + b"+14155559999,Zo\xeb\n"
    text_file = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline="")

    result = contact_import_csv(file=text_file)

    assert result.error_count == 1
    assert "could not be read from this row on" in result.errors[0].error
    # The decoder reads ahead in blocks: rows before the failing block are kept.
    assert result.created == result.errors[0].row - 2 > 0
    assert Contact.objects.count() == result.created


def test_importing_never_clears_an_opt_out():
    opted_out_at = timezone.now() - timezone.timedelta(days=3)
    ContactFactory(
        phone=ANN, first_name="Ann", opted_out_at=opted_out_at, opt_out_source="keyword"
    )

    result = contact_import_csv(file=csv_file(f"phone,first_name\n{ANN},Anne\n"))
    contact_import_records(records=[{"phone": ANN, "first_name": "Annie"}])

    assert result.updated == 1
    ann = contact(ANN)
    assert ann.first_name == "Annie"
    assert (ann.opted_out_at, ann.opt_out_source) == (opted_out_at, "keyword")


def test_records_import_like_the_json_body():
    contact_list = ContactListFactory()
    records = [
        {"phone": ANN, "first_name": "Ann", "attributes": {"city": "Austin"}},
        {"phone": 14155550123, "attributes": {"city": "Austin"}},  # JSON number
        {"phone": BOB, "last_name": "Ray", "plan": "gold", "attributes": None},
        {"phone": "nope"},
        "not an object",
        {"phone": CAT, "attributes": ["not", "an", "object"]},
        {"phone": CAT, "attributes": {"phone": "+15555555555"}},
        {},
    ]

    result = contact_import_records(records=iter(records), contact_list=contact_list)

    assert (result.created, result.updated, result.skipped) == (2, 0, 1)
    assert [(e.row, e.phone) for e in result.errors] == [
        (4, "nope"),
        (5, ""),
        (6, CAT),
        (7, CAT),
    ]
    assert result.errors[2].error == "attributes must be an object."
    assert result.errors[3].error == "attributes cannot be named phone."
    assert contact(ANN).attributes == {"city": "Austin"}
    assert contact(BOB).attributes == {"plan": "gold"}
    assert set(ListMembership.objects.values_list("contact__phone", "source")) == {
        (ANN, Source.API),
        (BOB, Source.API),
    }


def test_only_the_first_errors_are_kept_but_all_are_counted(monkeypatch):
    monkeypatch.setattr("contacts.imports.MAX_STORED_ERRORS", 3)

    result = contact_import_csv(file=csv_file("phone\n" + "bad\n" * 5 + f"{ANN}\n"))

    assert result.error_count == 5
    assert [error.row for error in result.errors] == [2, 3, 4]
    assert result.created == 1


def test_progress_is_reported_after_each_chunk():
    seen: list[tuple[int, int]] = []

    def on_chunk(result: ImportResult) -> None:
        seen.append((result.created, result.error_count))

    contact_import_csv(
        file=csv_file(f"phone\n{ANN}\nbad\n{BOB}\n{CAT}\n"),
        chunk_size=2,
        on_chunk=on_chunk,
    )

    assert seen == [(2, 1), (3, 1)]


def test_a_path_instead_of_a_file_is_a_type_error():
    with pytest.raises(TypeError, match="file object"):
        contact_import_csv(file="contacts.csv")


_AREA_CODES = ["415", "212", "312", "206", "512", "617", "303", "404", "702", "808"]


def generated_csv(rows: int, start: int = 0) -> Iterator[bytes]:
    """A CSV file produced line by line, so the test input itself takes no memory."""
    yield b"phone,first_name,last_name,city\n"
    for n in range(start, start + rows):
        area = _AREA_CODES[(n // 10000) % 10]
        yield f"+1{area}555{n % 10000:04d},Ann {n},Lee,Austin\n".encode()


def peak_memory_of_import(rows: int, start: int) -> int:
    tracemalloc.start()
    try:
        result = contact_import_csv(file=generated_csv(rows, start), chunk_size=500)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.created == rows
    return peak


def test_memory_stays_flat_however_long_the_file_is():
    # A first import loads phone metadata and compiles queries: one-off costs.
    contact_import_csv(file=generated_csv(200, start=90_000))

    small = peak_memory_of_import(1_000, start=0)
    large = peak_memory_of_import(10_000, start=1_000)

    # Holding the large file's rows would need about ten times the small one's peak.
    assert large < small * 1.5
    assert large < 10 * 1024 * 1024
    assert Contact.objects.count() == 11_200
