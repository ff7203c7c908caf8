"""Bulk contact import from a CSV file or from records, with flat memory.

The REST API, the admin CSV import and the ``import_contacts`` command all call
:func:`contact_import_csv` or :func:`contact_import_records`. Both read their input
one row at a time and write it in chunks of ``chunk_size`` rows; a chunk costs a
handful of queries (find the numbers that exist, insert the new contacts, update the
changed ones, add list memberships) in its own transaction, so a million-row file
imports in constant memory and a failure part-way keeps the chunks already written.
Importing the same file again is safe: it finds every row already stored and skips it.

What a row does:

- **created**: its number is not stored yet; a contact is created.
- **updated**: the contact exists and the row changes something.
- **skipped**: the row changes nothing. That is a row identical to what is stored, and
  also a repeat of a number seen earlier in the same import (in any format) that brings
  nothing new. Rows are applied in input order, as if one at a time: when a number
  appears twice, the later row is applied on top of the earlier one (the last value for
  each field wins), and counts as updated if it changes something.
- **error**: the row is not imported and is reported with its row number, the raw phone
  value and the reason; every other row is still imported. Only the first
  :data:`MAX_STORED_ERRORS` errors are kept, so a broken million-row file cannot fill
  memory; ``error_count`` counts them all.

Rows with every cell blank are skipped silently and counted nowhere.

Merging into an existing contact: a blank value never overwrites a stored one (an empty
cell means "no information", not "erase"); imported attributes overwrite the same keys
and other stored keys are kept. Importing never touches ``opted_out_at``: an opted-out
contact stays opted out, because consent is only given back by the person
(``contacts.services.contact_opt_in``), never by a file.
"""

import codecs
import csv
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from smscampaigns.storable import storable, unstorable_text

from .models import Contact, ContactList, ListMembership, Source, validate_time_zone
from .phones import InvalidPhoneNumber, parse_phone
from .validators import attribute_key, attributes_problem

CHUNK_SIZE = 2000
"""Rows per chunk: one transaction and a handful of queries each."""

MAX_STORED_ERRORS = 1000
"""Errors kept in ``ImportResult.errors``; ``error_count`` counts all of them."""

_MAX_RAW_PHONE = 64
"""Longest raw phone value echoed back in an error, so a garbage cell stays small."""
MAX_COLUMNS = 1000
"""Columns a CSV header may have: a wider header is a corrupt or hostile file."""

_STANDARD_FIELDS = ("phone", "first_name", "last_name", "time_zone")
_NAME_MAX_LENGTH = {
    "first_name": Contact._meta.get_field("first_name").max_length,
    "last_name": Contact._meta.get_field("last_name").max_length,
}
_ATTRIBUTES_KEY = "attributes"

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
"""The column separators a CSV file may use, and their names."""
SNIFF_BYTES = 64 * 1024
"""How much of a file :func:`sniff_csv` reads to tell its encoding and separator."""
_WESTERN = "cp1252"
_OTHER_SCRIPTS = frozenset(
    {
        "Arabic",
        "Belarusian",
        "Bulgarian",
        "Chinese",
        "Farsi",
        "Greek",
        "Hebrew",
        "Hindi",
        "Japanese",
        "Kazakh",
        "Korean",
        "Macedonian",
        "Russian",
        "Serbian",
        "Thai",
        "Ukrainian",
    }
)
"""Languages (as charset-normalizer names them) not written in the Latin script."""

Records = Iterable[Mapping[str, Any]]
ChunkCallback = Callable[["ImportResult"], None]
_Numbered = tuple[int, "dict[str, Any] | ImportRowError", "list[str] | None"]
"""A row's number, its values (or why it cannot be read) and its CSV cells."""


class ContactImportError(ValueError):
    """The input as a whole cannot be imported (no phone column, not text, …).

    Raised before any row is written. Problems with single rows are not raised: they
    are reported in ``ImportResult.errors``.
    """


@dataclass(frozen=True, slots=True)
class ImportRowError:
    row: int
    """CSV: the row as a spreadsheet numbers it (header = 1). Records: 1-based index."""
    phone: str
    """The phone value as given (cut to 64 characters)."""
    error: str
    cells: list[str] | None = field(default=None, compare=False)
    """CSV: the row's cells as read, so an error report can be fixed and imported
    again as it is."""

    def to_dict(self, *, with_cells: bool = False) -> dict[str, Any]:
        values = {"row": self.row, "phone": self.phone, "error": self.error}
        if with_cells and self.cells is not None:
            values["cells"] = self.cells
        return values


@dataclass(slots=True)
class ImportResult:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: list[ImportRowError] = field(default_factory=list)
    """The first ``MAX_STORED_ERRORS`` errors, in input order."""
    error_count: int = 0
    """All rows in error, including those not kept in ``errors``."""
    header: list[str] | None = None
    """CSV: the header row as read, naming the ``cells`` of each error."""

    def add_error(
        self, row: int, phone: str, error: str, cells: list[str] | None = None
    ) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_STORED_ERRORS:
            # Errors are stored (the job's report): no NUL or lone surrogate may
            # reach the database in them, whatever the row held.
            self.errors.append(
                ImportRowError(
                    row,
                    storable(phone[:_MAX_RAW_PHONE]),
                    error,
                    None if cells is None else [storable(c) for c in cells],
                )
            )

    def to_dict(self, *, with_cells: bool = False) -> dict[str, Any]:
        """The counts and errors; ``with_cells`` adds the header and each error's
        cells (stored for the admin's error report, not part of the API)."""
        values = {
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "error_count": self.error_count,
            "errors": [error.to_dict(with_cells=with_cells) for error in self.errors],
        }
        if with_cells and self.header is not None:
            values["header"] = self.header
        return values


@dataclass(slots=True)
class _Row:
    """One valid input row, normalized; ``None`` and missing keys mean "no value"."""

    phone: str
    country: str
    time_zone: str
    """The zones of the number."""
    time_zone_set: str | None
    """The ``time_zone`` column: the recipient's own zone (None: no value)."""
    first_name: str | None
    last_name: str | None
    attributes: dict[str, Any]


def contact_import_csv(
    *,
    file: IO[bytes] | IO[str] | Iterable[bytes] | Iterable[str],
    columns: Mapping[str, str | None] | None = None,
    contact_list: ContactList | None = None,
    region: str | None = None,
    source: str = Source.IMPORT,
    encoding: str | None = "utf-8",
    delimiter: str | None = ",",
    keypad_letters: bool = False,
    chunk_size: int = CHUNK_SIZE,
    on_chunk: ChunkCallback | None = None,
) -> ImportResult:
    """Import contacts from a CSV file with a header row.

    ``file`` is a file object opened in binary mode (an uploaded file) or text mode
    (opened with ``newline=""``), or any iterable of lines. Columns ``phone``,
    ``first_name`` and ``last_name`` (matched ignoring case, spaces for underscores)
    fill those fields; every other named column becomes a key in ``attributes``.
    ``columns`` renames header cells before that, e.g. ``{"Mobile": "phone", "Shoe
    size": "shoe_size", "Notes": None}``; ``None`` drops a column. Columns with an
    empty header are dropped.

    Binary input is decoded as ``encoding`` (UTF-8 by default, with or without a BOM;
    any other encoding must be ASCII-compatible, e.g. ``"cp1252"``). A row that does
    not decode is reported as an error and the rest still import. Text input that
    fails to decode mid-file stops the import there, with an error for that row;
    the rows before it are kept. ``delimiter`` is one of :data:`DELIMITERS`. Either
    may be ``None``: it is then told from the start of the file (:func:`sniff_csv`).
    A phone number with letters is refused unless ``keypad_letters`` reads them as
    on a phone keypad (1-800-FLOWERS).

    Raises ContactImportError, before writing anything, when the file is empty, its
    header does not decode, it has no phone column, two columns map to the same
    field, or ``columns`` names a column the header lacks.
    """
    file, encoding, delimiter = _with_format(file, encoding, delimiter)
    lines, reader, header = _open_csv(file, encoding, delimiter)
    targets = _column_targets(header, columns or {})

    def rows() -> Iterator[_Numbered]:
        # Spreadsheet numbering: the header is row 1, so data starts at row 2.
        number = 1
        while True:
            number += 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                yield number, ImportRowError(number, "", _stopped_message(exc)), None
                return
            except csv.Error as exc:
                error = ImportRowError(number, "", f"Unreadable CSV row: {exc}")
                yield number, error, None
                continue
            values = {
                target: cell
                for target, cell in zip(targets, cells, strict=False)
                if target is not None
            }
            if lines.undecodable:
                lines.undecodable = False
                raw = str(values.get("phone", ""))
                message = f"The row is not valid {encoding} text."
                yield number, ImportRowError(number, raw, message), cells
                continue
            yield number, values, cells

    return _import(
        rows(),
        header=header,
        contact_list=contact_list,
        region=region,
        keypad_letters=keypad_letters,
        source=source,
        chunk_size=chunk_size,
        on_chunk=on_chunk,
    )


def csv_preview(
    *,
    file: IO[bytes] | IO[str] | Iterable[bytes] | Iterable[str],
    rows: int = 5,
    encoding: str | None = "utf-8",
    delimiter: str | None = ",",
) -> tuple[list[str], list[list[str]]]:
    """The header and up to ``rows`` first data rows of a CSV file, to show before importing.

    Reads the file as :func:`contact_import_csv` does (same decoding, blank rows left
    out) and raises ContactImportError for the same whole-file problems it would: an
    empty file or a header that does not decode. A data row that does not decode is
    shown with replacement characters; the import reports it as an error.
    """
    file, encoding, delimiter = _with_format(file, encoding, delimiter)
    lines, reader, header = _open_csv(file, encoding, delimiter)
    sample: list[list[str]] = []
    while len(sample) < rows:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except (UnicodeDecodeError, csv.Error):
            # The preview is a glimpse: the import itself reports the bad rows.
            break
        lines.undecodable = False
        if any(cell.strip() for cell in cells):
            sample.append(cells)
    return [cell.strip() for cell in header], sample


@dataclass(frozen=True, slots=True)
class CsvFormat:
    """How a CSV file is written: its text encoding and column separator."""

    encoding: str
    """A Python codec name, e.g. "utf-8" or "cp1252"."""
    delimiter: str
    """One of :data:`DELIMITERS`."""

    @property
    def encoding_label(self) -> str:
        return encoding_label(self.encoding)

    @property
    def delimiter_label(self) -> str:
        return DELIMITERS.get(self.delimiter, repr(self.delimiter))


ENCODINGS = {
    "utf-8": "UTF-8",
    "cp1252": "Windows-1252 (Western Europe, Americas)",
    "iso8859-1": "ISO-8859-1 (Latin-1)",
    "iso8859-15": "ISO-8859-15 (Latin-9)",
    "cp1250": "Windows-1250 (Central Europe)",
    "cp1251": "Windows-1251 (Cyrillic)",
    "mac-roman": "Mac Roman",
}
"""The encodings offered in the admin's import wizard, by codec name."""


def encoding_label(encoding: str) -> str:
    return ENCODINGS.get(encoding, encoding)


def normalize_encoding(name: str) -> str:
    """The codec name of ``name`` ("Windows-1252" → "cp1252"), or ContactImportError
    when it is unknown or cannot be read line by line (UTF-16 and the like)."""
    try:
        codec = codecs.lookup(name.strip()).name
    except (LookupError, ValueError) as exc:  # ValueError: a NUL or a surrogate
        raise ContactImportError(f"Unknown encoding {name!r}.") from exc
    if codec == "utf-8-sig":
        return "utf-8"
    try:
        ascii_compatible = "\n,;|\t".encode(codec) == b"\n,;|\t"
    except (UnicodeError, LookupError):
        ascii_compatible = False
    if not ascii_compatible:
        raise ContactImportError(
            f"Encoding {name!r} is not supported; save the file as CSV UTF-8."
        )
    return codec


def sniff_csv(sample: bytes | str) -> CsvFormat:
    """Tell the encoding and the separator of a CSV file from its first bytes.

    UTF-8 (with or without a byte-order mark) is taken whenever the sample decodes
    as UTF-8: other encodings rarely do by accident. Otherwise it is Windows-1252,
    what Excel writes in Western Europe and the Americas, unless charset-normalizer
    recognises a language written in another script (Cyrillic in Windows-1251…): a
    few hundred bytes of French or German fit several Latin code pages equally well,
    and its first guess among them is often a Baltic or DOS one. The separator is what
    ``csv.Sniffer`` finds among :data:`DELIMITERS`, else the one the header row holds
    most of, else a comma.
    """
    if isinstance(sample, str):
        return CsvFormat("utf-8", _sniff_delimiter(sample))
    encoding = _sniff_encoding(sample)
    text = sample.decode(encoding, errors="replace")
    return CsvFormat(encoding, _sniff_delimiter(text))


def _sniff_encoding(sample: bytes) -> str:
    # The sample may end inside a multi-byte character: judge whole lines only.
    whole = sample[: sample.rfind(b"\n") + 1] or sample
    if b"\x00" in whole:
        # Binary, or UTF-16: no guess reads it line by line. UTF-8 refuses it with
        # the hint to save the file as CSV UTF-8.
        return "utf-8"
    try:
        whole.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8"
    from charset_normalizer import from_bytes

    matches = list(from_bytes(whole))
    western = _decoded(whole, _WESTERN)
    if matches:
        least = min(match.chaos for match in matches)
        best = [match for match in matches if match.chaos == least]
        if any(
            match.encoding == _WESTERN or _decoded(whole, match.encoding) == western
            for match in best
        ):
            return _WESTERN
        # Text in another script (Cyrillic, Greek…) reads as Latin-1 letters too:
        # only a language charset-normalizer recognises says it is not Western.
        for match in best:
            if match.language in _OTHER_SCRIPTS and _keeps_structure(whole, match):
                try:
                    return normalize_encoding(match.encoding)
                except ContactImportError:
                    continue
    if western is not None:
        return _WESTERN
    for match in matches:
        if _keeps_structure(whole, match):
            try:
                return normalize_encoding(match.encoding)
            except ContactImportError:
                continue
    return "iso8859-1"  # decodes any byte: the preview shows what it reads


def _keeps_structure(data: bytes, match) -> bool:
    """Whether decoding ``data`` as ``match`` keeps every separator and line end: a
    multi-byte guess (Big5, GBK…) that swallows "é;" into one character is wrong
    for a CSV file, however well it scores."""
    text = _decoded(data, match.encoding)
    return text is not None and all(
        text.count(char) == data.count(char.encode()) for char in ",;\t\n"
    )


def _decoded(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


_SNIFF_LINES = 50
"""Lines csv.Sniffer looks at: enough to see a pattern, few enough to stay fast."""


def _sniff_delimiter(text: str) -> str:
    text = text.removeprefix("\ufeff")
    # Whole lines only, so a line cut short does not skew the counts.
    lines = text.splitlines(keepends=True)
    if len(lines) > 1 and not lines[-1].endswith(("\n", "\r")):
        lines.pop()
    text = "".join(lines[:_SNIFF_LINES])
    try:
        return csv.Sniffer().sniff(text, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        header = text.split("\n", 1)[0]
        counts = {d: header.count(d) for d in DELIMITERS}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def _with_format(
    file: Any, encoding: str | None, delimiter: str | None
) -> tuple[Any, str, str]:
    """``file`` (still readable from its start), with the encoding and delimiter to
    read it with: those given, and :func:`sniff_csv`'s for any left ``None``."""
    if encoding is not None:
        encoding = normalize_encoding(encoding)
    if encoding is not None and delimiter is not None:
        return file, encoding, delimiter
    file, sample = _peek(file)
    if isinstance(sample, str):
        encoding, text = encoding or "utf-8", sample
    else:
        encoding = encoding or _sniff_encoding(sample)
        text = sample.decode(encoding, "replace")
    return file, encoding, delimiter or _sniff_delimiter(text)


def _peek(file: Any) -> tuple[Any, bytes | str]:
    """The first :data:`SNIFF_BYTES` of ``file``, and ``file`` to read from its start."""
    if isinstance(file, str | bytes):
        raise TypeError(
            "file must be a file object or an iterable of lines, not a path"
        )
    if hasattr(file, "read") and hasattr(file, "seek"):
        position = file.tell()
        sample = file.read(SNIFF_BYTES)
        file.seek(position)
        return file, sample
    iterator = iter(file)
    head: list = []
    size = 0
    for line in iterator:
        head.append(line)
        size += len(line)
        if size >= SNIFF_BYTES:
            break
    empty = b"" if head and isinstance(head[0], bytes) else ""
    return itertools.chain(head, iterator), empty.join(head)


def _delimiter_list() -> str:
    return ", ".join(f"{name} ({d!r})" for d, name in DELIMITERS.items())


def contact_import_records(
    *,
    records: Records,
    contact_list: ContactList | None = None,
    region: str | None = None,
    source: str = Source.API,
    keypad_letters: bool = False,
    chunk_size: int = CHUNK_SIZE,
    on_chunk: ChunkCallback | None = None,
) -> ImportResult:
    """Import contacts from mappings shaped like the API's JSON body.

    Each record is ``{"phone": …, "first_name": …, "last_name": …, "time_zone": …,
    "attributes": {…}}``; only ``phone`` is required. The keys of ``attributes`` are
    stored as given (as the contact API stores them); the API refuses any other
    top-level key (``ImportRecordSerializer``), so a misspelt field is an error, not
    an attribute nobody asked for. Row numbers in errors are 1-based indexes.
    ``records`` may be a generator; it is consumed once, a chunk at a time.
    """

    rows = (
        (number, _record_values(number, record), None)
        for number, record in enumerate(records, start=1)
    )
    return _import(
        rows,
        contact_list=contact_list,
        region=region,
        keypad_letters=keypad_letters,
        source=source,
        chunk_size=chunk_size,
        on_chunk=on_chunk,
    )


def _import(
    rows: Iterator[_Numbered],
    *,
    header: list[str] | None = None,
    contact_list: ContactList | None,
    region: str | None,
    keypad_letters: bool = False,
    source: str,
    chunk_size: int,
    on_chunk: ChunkCallback | None,
) -> ImportResult:
    result = ImportResult(
        header=None if header is None else [storable(c) for c in header]
    )
    chunk: list[_Row] = []
    for number, values, cells in rows:
        row = (
            values
            if isinstance(values, ImportRowError)
            else _row(number, values, region, keypad_letters)
        )
        if isinstance(row, ImportRowError):
            result.add_error(row.row, row.phone, row.error, cells)
        elif row is not None:
            chunk.append(row)
        if len(chunk) >= chunk_size:
            _write(chunk, contact_list, source, result, on_chunk)
            chunk = []
    if chunk:
        _write(chunk, contact_list, source, result, on_chunk)
    return result


def _row(
    number: int, values: dict[str, Any], region: str | None, keypad_letters: bool
) -> _Row | ImportRowError | None:
    """Normalize one row; ``None`` for a row with nothing in it."""
    cleaned = {key: _blank_to_none(value) for key, value in values.items()}
    if all(value is None for value in cleaned.values()):
        return None
    raw_phone = cleaned.pop("phone", None)
    raw_text = _text(raw_phone)
    unstorable = unstorable_text(cleaned) or unstorable_text(raw_phone)
    if unstorable:
        # PostgreSQL refuses these in text and JSON: one row's error, not the chunk's.
        return ImportRowError(number, raw_text, f"The row contains {unstorable}.")
    if raw_phone is None:
        return ImportRowError(number, "", "The phone number is missing.")
    if not isinstance(raw_phone, str | int) or isinstance(raw_phone, bool):
        return ImportRowError(number, raw_text, "The phone number must be text.")
    try:
        parsed = parse_phone(str(raw_phone), region, keypad_letters=keypad_letters)
    except InvalidPhoneNumber as exc:
        return ImportRowError(number, raw_text, f"Invalid phone number: {exc.reason}.")

    names: dict[str, str | None] = {}
    for name, max_length in _NAME_MAX_LENGTH.items():
        value = cleaned.pop(name, None)
        names[name] = None if value is None else str(value)
        if value is not None and len(names[name]) > max_length:
            error = f"{name} is longer than {max_length} characters."
            return ImportRowError(number, raw_text, error)
    zone = cleaned.pop("time_zone", None)
    zone = None if zone is None else str(zone)
    if zone is not None:
        try:
            validate_time_zone(zone)
        except ValidationError as exc:
            return ImportRowError(number, raw_text, exc.messages[0])
    attributes = {key: value for key, value in cleaned.items() if value is not None}
    problem = attributes_problem(attributes)
    if problem is not None:
        return ImportRowError(number, raw_text, problem)
    return _Row(
        phone=parsed.e164,
        country=parsed.country,
        time_zone=parsed.time_zone,
        time_zone_set=zone,
        first_name=names["first_name"],
        last_name=names["last_name"],
        attributes=attributes,
    )


def _write(
    chunk: list[_Row],
    contact_list: ContactList | None,
    source: str,
    result: ImportResult,
    on_chunk: ChunkCallback | None,
) -> None:
    try:
        created, updated, skipped = _write_chunk(chunk, contact_list, source)
    except IntegrityError:
        # Another import created one of these numbers between the lookup and the
        # insert; the chunk was rolled back, and a second pass finds it stored.
        created, updated, skipped = _write_chunk(chunk, contact_list, source)
    result.created += created
    result.updated += updated
    result.skipped += skipped
    if on_chunk is not None:
        on_chunk(result)


@transaction.atomic
def _write_chunk(
    chunk: list[_Row], contact_list: ContactList | None, source: str
) -> tuple[int, int, int]:
    """Write one chunk; return how many rows created, updated and skipped contacts."""
    stored = {
        contact.phone: contact
        for contact in Contact.objects.filter(
            phone__in={row.phone for row in chunk}
        ).only(
            "id",
            "phone",
            "first_name",
            "last_name",
            "attributes",
            "country",
            "time_zone",
            "time_zone_set",
        )
    }
    new: dict[str, Contact] = {}
    changed: dict[str, Contact] = {}
    changed_fields: set[str] = set()
    created = updated = skipped = 0
    for row in chunk:
        contact = stored.get(row.phone) or new.get(row.phone)
        if contact is None:
            new[row.phone] = Contact(
                phone=row.phone,
                country=row.country,
                time_zone=row.time_zone_set or row.time_zone,
                time_zone_set=row.time_zone_set or "",
                first_name=row.first_name or "",
                last_name=row.last_name or "",
                attributes=dict(row.attributes),
            )
            created += 1
            continue
        fields = _merge(contact, row)
        if not fields:
            skipped += 1
            continue
        updated += 1
        if row.phone in stored:
            changed[row.phone] = contact
            changed_fields |= fields

    Contact.objects.bulk_create(new.values(), batch_size=1000)
    if changed:
        now = timezone.now()
        for contact in changed.values():
            contact.updated_at = now
        # Only the fields some row changed, so the CASE WHEN statement stays small.
        Contact.objects.bulk_update(
            changed.values(), [*sorted(changed_fields), "updated_at"], batch_size=500
        )
    if contact_list is not None:
        _add_to_list(contact_list, [*stored.values(), *new.values()], source)
    return created, updated, skipped


def _merge(contact: Contact, row: _Row) -> set[str]:
    """Apply ``row`` to ``contact`` in memory; return the names of the fields it changed."""
    fields = set()
    for name in ("first_name", "last_name"):
        value = getattr(row, name)
        if value is not None and value != getattr(contact, name):
            setattr(contact, name, value)
            fields.add(name)
    if row.time_zone_set is not None and row.time_zone_set != contact.time_zone_set:
        contact.time_zone_set = row.time_zone_set
        fields.add("time_zone_set")
    # Bulk writes bypass Contact.save(), which keeps these in step with the number
    # (and the zone set by hand).
    zone = contact.time_zone_set or row.time_zone
    if (contact.country, contact.time_zone) != (row.country, zone):
        contact.country, contact.time_zone = row.country, zone
        fields |= {"country", "time_zone"}
    stored = contact.attributes if isinstance(contact.attributes, dict) else {}
    merged = {**stored, **row.attributes}
    if merged != contact.attributes:
        contact.attributes = merged
        fields.add("attributes")
    return fields


def _add_to_list(
    contact_list: ContactList, contacts: list[Contact], source: str
) -> None:
    ids = [contact.pk for contact in contacts if contact.pk is not None]
    missing = [contact.phone for contact in contacts if contact.pk is None]
    if missing:
        # Databases that cannot return ids from a bulk insert.
        ids += Contact.objects.filter(phone__in=missing).values_list("pk", flat=True)
    ListMembership.objects.bulk_create(
        (
            ListMembership(contact_list=contact_list, contact_id=pk, source=source)
            for pk in ids
        ),
        batch_size=1000,
        ignore_conflicts=True,
    )


def _open_csv(
    file: Any, encoding: str, delimiter: str
) -> tuple["_DecodedLines", Any, list[str]]:
    """Decode ``file`` and read its header row: (lines, csv reader, header).

    Raises ContactImportError for what makes the whole file unreadable: it is
    empty, or its header is not ``encoding`` text.
    """
    if isinstance(file, str | bytes):
        raise TypeError(
            "file must be a file object or an iterable of lines, not a path"
        )
    if delimiter not in DELIMITERS:
        raise ContactImportError(
            f"Columns can be separated by {_delimiter_list()}, not {delimiter!r}."
        )
    lines = _DecodedLines(file, encoding)
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader, None)
    except UnicodeDecodeError as exc:
        raise ContactImportError(_not_text_message(encoding)) from exc
    except csv.Error as exc:
        # e.g. a header cell over csv.field_size_limit() (128 KiB): not a CSV header.
        raise ContactImportError(
            f"The header row cannot be read as CSV ({exc}); the first row must name "
            "the columns."
        ) from exc
    if header is None:
        raise ContactImportError("The file is empty: expected a header row.")
    if lines.undecodable:
        raise ContactImportError(_not_text_message(encoding))
    if len(header) > MAX_COLUMNS:
        raise ContactImportError(
            f"The header row has {len(header):,} columns; at most {MAX_COLUMNS:,} "
            "can be imported."
        )
    bad = unstorable_text(header)
    if bad:
        raise ContactImportError(f"The header row contains {bad}.")
    return lines, reader, header


class _DecodedLines:
    """Text lines from binary or text lines, noting lines that do not decode.

    Decoding line by line (rather than through one TextIOWrapper) keeps a bad byte from
    ending the import: the reader flags the record it lands in and carries on. Newline
    bytes never occur inside a multi-byte UTF-8 character, so splitting first is safe
    for UTF-8 and for the single-byte encodings.
    """

    def __init__(self, lines: Iterable[bytes] | Iterable[str], encoding: str) -> None:
        try:
            is_ascii_compatible = "\n,".encode(encoding) == b"\n,"
        except LookupError as exc:
            raise ContactImportError(f"Unknown encoding {encoding!r}.") from exc
        if not is_ascii_compatible:
            raise ContactImportError(
                f"Encoding {encoding!r} is not supported; save the file as CSV UTF-8."
            )
        self._lines = lines
        self._encoding = encoding
        self.undecodable = False
        """True once a line failed to decode; the reader resets it."""

    def __iter__(self) -> Iterator[str]:
        first = True
        for line in self._lines:
            if isinstance(line, bytes):
                encoding = self._encoding
                if first and encoding.replace("_", "-").lower() in ("utf-8", "utf8"):
                    encoding = "utf-8-sig"
                try:
                    text = line.decode(encoding)
                except UnicodeDecodeError:
                    self.undecodable = True
                    text = line.decode(encoding, errors="replace")
            else:
                text = line.removeprefix("\ufeff") if first else line
            first = False
            yield text


def _column_targets(
    header: list[str], columns: Mapping[str, str | None]
) -> list[str | None]:
    """The field or attribute each column fills, or ``None`` for a dropped column."""
    names = [cell.strip() for cell in header]
    unknown = [name for name in columns if name not in names]
    if unknown:
        raise ContactImportError(
            f"The column mapping names columns the file does not have: "
            f"{', '.join(map(repr, unknown))}."
        )
    targets: list[str | None] = []
    for name in names:
        target = columns.get(name, name)
        if target is not None:
            # The admin's wizard and the API name attributes by the same rule, so
            # one file never gives "City" one way and "city" the other.
            target = attribute_key(target)
        targets.append(target or None)
    repeated = sorted({t for t in targets if t is not None and targets.count(t) > 1})
    if repeated:
        raise ContactImportError(
            f"Several columns fill {', '.join(map(repr, repeated))}; map all but one "
            f"to None."
        )
    if "phone" not in targets:
        message = (
            f"The file has no phone column (columns: {', '.join(names)}); name the "
            'column holding the numbers "phone" in the header row.'
        )
        others = [d for d in DELIMITERS if len(names) == 1 and d in names[0]]
        if others:
            # One column whose name holds a separator: the file uses another one.
            message += (
                f" The columns seem to be separated by {DELIMITERS[others[0]]}s: "
                "choose that separator."
            )
        raise ContactImportError(message)
    return targets


def _record_values(number: int, record: Any) -> dict[str, Any] | ImportRowError:
    """A record's fields and attributes as one flat mapping, like a CSV row's."""
    if not isinstance(record, Mapping):
        return ImportRowError(number, "", "A contact must be an object.")
    values = {
        str(key): value for key, value in record.items() if key != _ATTRIBUTES_KEY
    }
    attributes = record.get(_ATTRIBUTES_KEY)
    if attributes is None:
        return values
    if not isinstance(attributes, Mapping):
        raw_phone = _text(record.get("phone"))
        return ImportRowError(number, raw_phone, "attributes must be an object.")
    attributes = {str(key): value for key, value in attributes.items()}
    clashing = sorted(set(attributes) & set(_STANDARD_FIELDS))
    if clashing:
        raw_phone = _text(record.get("phone"))
        error = f"attributes cannot be named {', '.join(clashing)}."
        return ImportRowError(number, raw_phone, error)
    return {**values, **attributes}


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _not_text_message(encoding: str) -> str:
    return (
        f"The file is not {encoding} text. Save it as CSV UTF-8 (in Excel: "
        f'"CSV UTF-8 (Comma delimited)") and try again.'
    )


def _stopped_message(exc: UnicodeDecodeError) -> str:
    return (
        f"The file could not be read from this row on ({exc.reason}); the rows before "
        f"it were imported. Save it as CSV UTF-8 and import it again."
    )
