"""Findings 5 and 10 (imports): a NUL byte in an imported CSV was a 500 that dropped
the whole 2,000-row chunk; an oversized header line was a 500."""

import io

import pytest

from contacts.imports import ContactImportError, contact_import_csv
from contacts.models import Contact
from smscampaigns.storable import unstorable_text

pytestmark = pytest.mark.django_db


def _phones(count: int) -> list[str]:
    return [f"+1415555{n:04d}" for n in range(count)]


def test_a_nul_byte_is_an_error_for_its_row_and_the_chunk_lands():
    phones = _phones(2000)
    lines = [b"phone,first_name,city"]
    for n, phone in enumerate(phones):
        city = b"Aus\x00tin" if n == 700 else b"Austin"
        lines.append(phone.encode() + b",Ann," + city)
    lines.append(phones[1].encode() + b"\x00,Bob,Boston")  # in the phone itself

    result = contact_import_csv(file=io.BytesIO(b"\n".join(lines) + b"\n"))

    assert result.created == 1999
    assert [(e.row, e.error) for e in result.errors] == [
        (702, "The row contains a NUL character."),
        (2002, "The row contains a NUL character."),
    ]
    assert Contact.objects.count() == 1999
    assert not Contact.objects.filter(phone=phones[700]).exists()
    # The stored report (the admin's error file) holds the row, made storable.
    report = result.to_dict(with_cells=True)
    assert unstorable_text(report) == ""
    assert report["errors"][0]["cells"] == [phones[700], "Ann", "Aus\\x00tin"]


def test_an_oversized_header_line_is_a_clear_error():
    header = b"phone," + b"x" * 200_000 + b"\n"
    with pytest.raises(ContactImportError, match="header row cannot be read"):
        contact_import_csv(file=io.BytesIO(header + b"+14155550123,1\n"))
    assert not Contact.objects.exists()


def test_a_header_with_too_many_columns_is_a_clear_error():
    header = b"phone," + b",".join(b"c%d" % n for n in range(5000)) + b"\n"
    with pytest.raises(ContactImportError, match="5,001 columns"):
        contact_import_csv(file=io.BytesIO(header + b"+14155550123\n"))


def test_a_nul_in_the_header_is_a_clear_error():
    with pytest.raises(ContactImportError, match="NUL"):
        contact_import_csv(file=io.BytesIO(b"phone,ci\x00ty\n+14155550123,x\n"))
