"""The shared CSV export: formula-safe cells and a response written as it is read."""

import csv
import io
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from smscampaigns import csv_export
from smscampaigns.csv_export import csv_lines, csv_response, safe_cell


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("-", "'-"),
        # Numbers can only evaluate to themselves: a phone number keeps its "+".
        ("+14155550123", "+14155550123"),
        ("-0.5", "-0.5"),
        ("Ann", "Ann"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_cells_a_spreadsheet_would_run_start_with_an_apostrophe(value, cell):
    assert safe_cell(value) == cell


def test_values_are_written_plainly():
    assert safe_cell(None) == ""
    assert safe_cell(True) == "yes"
    assert "".join(csv_lines(["n"], [[3], [-7]])) == "n\r\n3\r\n-7\r\n"
    assert safe_cell(Decimal("0.07500")) == "0.075"
    assert safe_cell(Decimal("0.00000")) == "0"
    paris = timezone(timedelta(hours=1))
    assert safe_cell(datetime(2026, 12, 5, 7, 30, tzinfo=paris)) == (
        "2026-12-05T06:30:00Z"
    )
    assert safe_cell(datetime(2026, 12, 5, 6, 30, 15, 999, tzinfo=UTC)) == (
        "2026-12-05T06:30:15Z"
    )


def test_the_file_reads_back_as_written_with_the_unsafe_cells_escaped():
    rows = [["+14155550123", 'Ann "the" =1', "line\nbreak"], ["@x", None, 2]]
    text = "".join(csv_lines(["phone", "name", "note"], rows))
    assert list(csv.reader(io.StringIO(text))) == [
        ["phone", "name", "note"],
        ["+14155550123", 'Ann "the" =1', "line\nbreak"],
        ["'@x", "", "2"],
    ]


def test_rows_are_written_a_few_hundred_at_a_time(monkeypatch):
    monkeypatch.setattr(csv_export, "ROWS_PER_WRITE", 2)
    consumed = []

    def rows():
        for n in range(5):
            consumed.append(n)
            yield [n]

    pieces = csv_lines(["n"], rows())
    assert next(pieces) == "n\r\n0\r\n1\r\n"
    # Only the rows of the first piece were read to write it.
    assert consumed == [0, 1]
    assert "".join(pieces) == "2\r\n3\r\n4\r\n"


def test_the_response_streams_an_attachment_nobody_caches():
    response = csv_response("out.csv", ["a"], iter([["=1"]]), bom=True)
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="out.csv"'
    assert "no-store" in response["Cache-Control"]
    body = b"".join(response.streaming_content).decode()
    assert body == "\ufeffa\r\n'=1\r\n"
