"""CSV downloads streamed as they are read: formula-safe cells, flat memory.

Every export (a campaign's results, contacts) goes through here, from the admin and
the API alike:

- :func:`stream_rows` reads a queryset in chunks (a server-side cursor on
  PostgreSQL), never the whole result at once;
- :func:`safe_cell` neutralises cells a spreadsheet would run as a formula (OWASP
  "CSV injection");
- :func:`csv_response` turns header and rows into a ``StreamingHttpResponse`` that
  writes a few hundred rows at a time.

Served by a WSGI server (gunicorn, runserver), the rows go out as they are made.
Under ASGI Django reads a synchronous stream whole before sending it: serve exports
through WSGI.
"""

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rest_framework.renderers import BaseRenderer, JSONRenderer

from django.db import connections, transaction
from django.db.models import QuerySet
from django.http import StreamingHttpResponse

#: A cell starting with one of these is read as a formula by Excel, LibreOffice or
#: Google Sheets (tab and carriage return too: some strip them and then see "=").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_FORMULA_CHARS = frozenset("".join(FORMULA_STARTS))

# A number with a sign ("+14155550123", "-0.5") evaluates to itself: it can call
# nothing, so it stays as it is and a phone number keeps its "+".
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?\Z")

#: Rows written between two chunks of the response.
ROWS_PER_WRITE = 500
#: Rows fetched from the database at a time.
FETCH_CHUNK = 2000

#: Lets Excel read the file as UTF-8 (without it, accents come out garbled).
UTF8_BOM = "\ufeff"


def safe_cell(value: Any) -> str | int:
    """``value`` as a CSV cell that no spreadsheet runs as a formula.

    Text starting with ``= + - @``, a tab or a carriage return gets a leading
    apostrophe, which spreadsheets read as "this is text". Dates are ISO 8601 in
    UTC; None is empty.
    """
    # Most cells are text or whole numbers: their checks come first (a million-row
    # export calls this ten million times).
    kind = type(value)
    if kind is str:
        if value and value[0] in _FORMULA_CHARS and not _PLAIN_NUMBER.match(value):
            return "'" + value
        return value
    if kind is int:
        return value  # the csv module writes it; it cannot be a formula
    if value is None:
        return ""
    if isinstance(value, datetime):
        return (
            value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        )
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        value = format(value.normalize(), "f")
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def stream_rows(queryset: QuerySet, *, chunk_size: int = FETCH_CHUNK) -> Iterator:
    """The queryset's rows, fetched ``chunk_size`` at a time.

    On PostgreSQL ``iterator()`` reads through a server-side cursor. Outside a
    transaction Django declares it ``WITH HOLD``, and PostgreSQL then computes the
    whole result before the first row; inside one it streams, so the rows are read in
    a (read-only) transaction of their own. SQLite streams without one: a
    transaction there would take the write lock (``transaction_mode=IMMEDIATE``) for
    the whole download.
    """
    alias = queryset.db
    if connections[alias].vendor == "postgresql":
        with transaction.atomic(using=alias):
            yield from queryset.iterator(chunk_size=chunk_size)
    else:
        yield from queryset.iterator(chunk_size=chunk_size)


def csv_lines(
    header: Sequence[str], rows: Iterable[Sequence[Any]], *, bom: bool = False
) -> Iterator[str]:
    """The CSV text of ``header`` and ``rows``, a few hundred rows per piece."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if bom:
        buffer.write(UTF8_BOM)
    writer.writerow([safe_cell(name) for name in header])
    for written, row in enumerate(rows, 1):
        writer.writerow([safe_cell(value) for value in row])
        if written % ROWS_PER_WRITE == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if tail := buffer.getvalue():
        yield tail


def csv_response(
    filename: str,
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    bom: bool = False,
) -> StreamingHttpResponse:
    """A download of ``rows`` as ``filename``, streamed.

    ``bom`` starts the file with a UTF-8 byte order mark, for Excel (the admin's
    downloads); programs reading the API's exports do not need it.
    """
    response = StreamingHttpResponse(
        csv_lines(header, rows, bom=bom), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    # Contact data: no shared cache keeps a copy.
    response["Cache-Control"] = "private, no-store"
    # A proxy such as nginx would otherwise buffer the whole file before sending it.
    response["X-Accel-Buffering"] = "no"
    return response


class CSVRenderer(BaseRenderer):
    """Lets an API export answer ``Accept: text/csv`` (or ``?format=csv``).

    The export itself is a streamed response that no renderer touches; an error is
    JSON all the same (:class:`JSONErrorsMixin`).
    """

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return JSONRenderer().render(data)


class JSONErrorsMixin:
    """For API views with a CSV export: whatever the client asked for, an answer
    that is not the file (an error, a 429) is the API's usual JSON."""

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(getattr(request, "accepted_renderer", None), CSVRenderer):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)
