"""Forms for the admin's contact import wizard and contact actions."""

import json
from functools import cache

import phonenumbers
from phonenumbers import geocoder

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from .imports import (
    DELIMITERS,
    ENCODINGS,
    SNIFF_BYTES,
    ContactImportError,
    CsvFormat,
    csv_preview,
    encoding_label,
    normalize_encoding,
    sniff_csv,
)
from .models import ContactList
from .phones import InvalidPhoneNumber, parse_phone
from .validators import attribute_key, validate_attributes

PHONE, FIRST_NAME, LAST_NAME, ATTRIBUTE, IGNORE = (
    "phone",
    "first_name",
    "last_name",
    "attribute",
    "ignore",
)
COLUMN_CHOICES = [
    (PHONE, "Phone"),
    (FIRST_NAME, "First name"),
    (LAST_NAME, "Last name"),
    (ATTRIBUTE, "Attribute"),
    (IGNORE, "Ignore"),
]

REPORT_COLUMNS = ("Import row", "Import error")
"""The columns an import's error report puts before the file's own: ignored when
the report is imported again."""
_REPORT_KEYS = {"import_row", "import_error"}
# English, and the headers French, German and Spanish spreadsheets use.
_PHONE_NAMES = {
    "phone",
    "mobile",
    "cell",
    "number",
    "msisdn",
    "tel",
    "telephone",
    "téléphone",
    "portable",
    "telefon",
    "handy",
    "mobil",
    "teléfono",
    "telefono",
    "móvil",
    "movil",
    "celular",
}
_FIRST_NAMES = {
    "first_name",
    "firstname",
    "first",
    "given_name",
    "forename",
    "prénom",
    "prenom",
    "vorname",
    "nombre",
}
_LAST_NAMES = {
    "last_name",
    "lastname",
    "last",
    "surname",
    "family_name",
    "nom",
    "nom_de_famille",
    "nachname",
    "familienname",
    "apellido",
    "apellidos",
}
_HEADER_MAX_BYTES = 64 * 1024
# .xlsx (a zip) and .xls (an OLE file): the usual wrong upload.
_WORKBOOK_SIGNATURES = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")
# Regions that phonenumbers' geocoder cannot name from an example number.
_REGION_NAMES = {
    "AC": "Ascension Island",
    "BL": "Saint Barthélemy",
    "EH": "Western Sahara",
    "MF": "Saint Martin",
    "TA": "Tristan da Cunha",
    "XK": "Kosovo",
}


@cache
def region_choices() -> list[tuple[str, str]]:
    """Every region phonenumbers knows, as ("DE", "Germany (+49)"), sorted by name."""
    choices = []
    for region in phonenumbers.SUPPORTED_REGIONS:
        name = _REGION_NAMES.get(region)
        if name is None:
            example = phonenumbers.example_number(region)
            name = geocoder.country_name_for_number(example, "en") if example else ""
        code = phonenumbers.country_code_for_region(region)
        choices.append((region, f"{name or region} (+{code})"))
    return sorted(choices, key=lambda choice: choice[1])


def guess_column(column: str) -> str:
    key = attribute_key(column)
    words = set(key.split("_"))
    if key in _REPORT_KEYS:
        return IGNORE
    if key in _FIRST_NAMES:
        return FIRST_NAME
    if key in _LAST_NAMES:
        return LAST_NAME
    if words & _PHONE_NAMES or key.endswith(("phone", "mobile")):
        return PHONE
    return ATTRIBUTE


def guess_columns(header: list[str]) -> list[str]:
    """A first guess for each column; only the first phone-like column is the phone."""
    guesses = [guess_column(column) if column else IGNORE for column in header]
    seen: set[str] = set()
    for index, guess in enumerate(guesses):
        if guess in (PHONE, FIRST_NAME, LAST_NAME):
            if guess in seen:
                guesses[index] = ATTRIBUTE
            seen.add(guess)
    return guesses


def looks_like_phone(text: str) -> bool:
    try:
        parse_phone(text)
    except InvalidPhoneNumber:
        return False
    return True


class ListChoiceMixin(forms.Form):
    """Choose an existing list or name a new one."""

    contact_list = forms.ModelChoiceField(
        queryset=ContactList.objects.order_by("name"),
        required=False,
        label="Existing list",
        empty_label="—",
    )
    new_list_name = forms.CharField(
        max_length=ContactList._meta.get_field("name").max_length,
        required=False,
        label="…or a new list",
        help_text="Created for you. A name that is already taken means that list.",
    )

    def clean(self) -> dict:
        data = super().clean()
        name = (data.get("new_list_name") or "").strip()
        if "new_list_name" not in self.fields:
            name = ""
        data["new_list_name"] = name
        if data.get("contact_list") and name:
            raise ValidationError(
                "Choose an existing list or type a new name, not both."
            )
        if name:
            # "VIP" typed when "vip" exists means that list, not a second one.
            data["contact_list"] = ContactList.objects.filter(name__iexact=name).first()
            if data["contact_list"] is not None:
                data["new_list_name"] = ""
        return data


class ImportUploadForm(ListChoiceMixin):
    """Step 1: the file, the country for national numbers, and the target list."""

    file = forms.FileField(
        label="CSV file",
        help_text="A spreadsheet saved as CSV, with column names in the first row. "
        "Commas, semicolons or tabs; UTF-8 or Windows-1252: the next step shows "
        "what was found.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )
    region = forms.ChoiceField(
        label="Default country",
        help_text="For numbers written without a country code, e.g. (415) 555-0123. "
        "Numbers starting with + or 00 keep their own country.",
    )

    field_order = ["file", "region", "contact_list", "new_list_name"]

    def __init__(self, *args, allow_new: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["region"].choices = region_choices()
        self.fields["region"].initial = settings.PHONE_DEFAULT_REGION
        self.fields["contact_list"].label = "Add the contacts to a list"
        self.fields["contact_list"].help_text = "Optional."
        if allow_new:
            self.fields["new_list_name"].label = "…or a new list"
        else:
            # Creating lists needs the permission to add them.
            del self.fields["new_list_name"]

    def clean_file(self):
        upload = self.cleaned_data["file"]
        header = upload.readline(_HEADER_MAX_BYTES)
        upload.seek(0)
        if header.startswith(_WORKBOOK_SIGNATURES):
            raise ValidationError(
                "This is an Excel workbook, not a CSV file. In Excel choose File, "
                "Save As, CSV UTF-8 (Comma delimited), then upload that file."
            )
        if len(header) >= _HEADER_MAX_BYTES and not header.endswith(b"\n"):
            raise ValidationError(
                "The first row is longer than 64 KB: is this a CSV file with column "
                "names in the first row?"
            )
        # Semicolons and Windows-1252 (Excel in France and Germany) are told here;
        # the next step shows what was found, and lets the user change it.
        self.csv_format = sniff_csv(upload.read(SNIFF_BYTES))
        upload.seek(0)
        # The same checks the import makes before writing anything, so a file that
        # cannot be imported is refused here rather than after matching its columns.
        try:
            csv_preview(
                file=[header],
                rows=0,
                encoding=self.csv_format.encoding,
                delimiter=self.csv_format.delimiter,
            )
        except ContactImportError as exc:
            raise ValidationError(str(exc)) from exc
        return upload


DELIMITER_CHOICES = [
    (d, f"{name.capitalize()} ( {'⇥' if d == chr(9) else d} )")
    for d, name in DELIMITERS.items()
]


class ImportFormatForm(forms.Form):
    """Step 2, optional: read the file with another encoding or separator."""

    encoding = forms.ChoiceField(label="Encoding")
    delimiter = forms.ChoiceField(
        label="Columns separated by", choices=DELIMITER_CHOICES
    )

    def __init__(self, *args, csv_format: CsvFormat, **kwargs) -> None:
        kwargs.setdefault(
            "initial",
            {"encoding": csv_format.encoding, "delimiter": csv_format.delimiter},
        )
        super().__init__(*args, **kwargs)
        choices = dict(ENCODINGS)
        # The encoding found may be one the list does not offer: keep it choosable.
        choices.setdefault(csv_format.encoding, encoding_label(csv_format.encoding))
        self.fields["encoding"].choices = list(choices.items())

    def clean_encoding(self) -> str:
        try:
            return normalize_encoding(self.cleaned_data["encoding"])
        except ContactImportError as exc:
            raise ValidationError(str(exc)) from exc


class ColumnMappingForm(forms.Form):
    """Step 2: what each column of the file fills."""

    def __init__(self, header: list[str], *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.header = header
        for index, (column, guess) in enumerate(
            zip(header, guess_columns(header), strict=True)
        ):
            choices = [(IGNORE, "Ignore (no name)")]
            if column:
                # Say which attribute the column would fill, e.g. "shoe_size".
                key = attribute_key(column)
                choices = [
                    (
                        value,
                        f"Attribute “{key}”" if value == ATTRIBUTE and key else label,
                    )
                    for value, label in COLUMN_CHOICES
                ]
            self.fields[f"column_{index}"] = forms.ChoiceField(
                choices=choices, initial=guess, label=column or f"Column {index + 1}"
            )

    def column_fields(self) -> list[forms.BoundField]:
        return [self[f"column_{index}"] for index in range(len(self.header))]

    def clean(self) -> dict:
        data = super().clean()
        choices = [data.get(f"column_{index}") for index in range(len(self.header))]
        if None in choices:
            return data
        phones = choices.count(PHONE)
        if phones != 1:
            raise ValidationError(
                "Choose exactly one column as Phone."
                if phones
                else "Choose which column holds the phone number (Phone)."
            )
        for target, label in ((FIRST_NAME, "First name"), (LAST_NAME, "Last name")):
            if choices.count(target) > 1:
                raise ValidationError(f"Choose at most one column as {label}.")
        targets: dict[str, str] = {}
        for column, choice in zip(self.header, choices, strict=True):
            if choice == IGNORE:
                continue
            target = attribute_key(column) if choice == ATTRIBUTE else choice
            if choice == ATTRIBUTE and target in (PHONE, FIRST_NAME, LAST_NAME, ""):
                raise ValidationError(
                    f"Column “{column}” cannot be an attribute: choose "
                    f"{dict(COLUMN_CHOICES).get(target, 'another option')} or Ignore."
                )
            if target in targets:
                raise ValidationError(
                    f"Columns “{targets[target]}” and “{column}” would both fill "
                    f"“{target}”: ignore one of them."
                )
            targets[target] = column
        # The mapping goes by column name, so same-named columns cannot differ.
        for column, choice in zip(self.header, choices, strict=True):
            if column and choice != IGNORE and self.header.count(column) > 1:
                raise ValidationError(
                    f"Several columns are named “{column}”: rename them in your file "
                    f"and upload it again, or ignore them."
                )
        data["columns"] = {
            column: (
                None
                if choice == IGNORE
                else attribute_key(column)
                if choice == ATTRIBUTE
                else choice
            )
            for column, choice in zip(self.header, choices, strict=True)
            if column
        }
        return data


class ListActionForm(ListChoiceMixin):
    """The list to add the selected contacts to, or remove them from."""

    def __init__(self, *args, allow_new: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not allow_new:
            del self.fields["new_list_name"]
            self.fields["contact_list"].required = True
            self.fields["contact_list"].label = "List"

    def clean(self) -> dict:
        data = super().clean()
        no_list = not data.get("contact_list") and not data.get("new_list_name")
        if no_list and "new_list_name" in self.fields:
            raise ValidationError("Choose a list or type a new list name.")
        return data


class OptInEvidenceForm(forms.Form):
    """How the person asked to get messages again: kept on each opt-in's ConsentEvent."""

    evidence = forms.CharField(
        label="Evidence of consent",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="How and when they asked, e.g. “Signed form at the Austin store, "
        "2026-05-02” or “Called support, ticket 4411”. Kept in their consent history.",
    )

    def clean_evidence(self) -> str:
        evidence = self.cleaned_data["evidence"].strip()
        if not evidence:
            raise ValidationError("Say how these people gave their consent.")
        return evidence


class AttributesWidget(forms.Widget):
    """A contact's attributes as rows of name and value inputs, not raw JSON.

    Each value that is not text (a number, true/false, a list) is shown as JSON and
    carries a hidden flag, so saving the page unchanged keeps its type; anything
    typed fresh is text. A few empty rows take new attributes.
    """

    extra_rows = 3

    def render(self, name, value, attrs=None, renderer=None) -> str:
        rows = [*_attribute_rows(value), *[("", "", False)] * self.extra_rows]
        first_id = (attrs or {}).get("id", f"id_{name}")
        body = format_html_join(
            "\n",
            '<tr><td><input type="text" name="{}_key" value="{}" '
            'class="attribute-key" aria-label="Attribute name"{}></td>'
            '<td><input type="text" name="{}_value" value="{}" class="vTextField" '
            'aria-label="Value"><input type="hidden" name="{}_json" value="{}">'
            "</td></tr>",
            (
                (
                    name,
                    key,
                    format_html(' id="{}"', first_id) if index == 0 else "",
                    name,
                    text,
                    name,
                    "1" if is_json else "0",
                )
                for index, (key, text, is_json) in enumerate(rows)
            ),
        )
        return format_html(
            '<table class="attributes-widget"><thead><tr><th scope="col">Name</th>'
            '<th scope="col">Value</th></tr></thead><tbody>{}</tbody></table>',
            body,
        )

    def value_from_datadict(self, data, files, name) -> list[tuple[str, str, bool]]:
        keys = data.getlist(f"{name}_key") if hasattr(data, "getlist") else []
        texts = data.getlist(f"{name}_value") if hasattr(data, "getlist") else []
        flags = data.getlist(f"{name}_json") if hasattr(data, "getlist") else []
        flags = [*flags, *["0"] * (len(keys) - len(flags))]
        return [
            (key, text, flag == "1")
            for key, text, flag in zip(keys, texts, flags, strict=False)
        ]

    def value_omitted_from_data(self, data, files, name) -> bool:
        return f"{name}_key" not in data

    def id_for_label(self, id_: str) -> str:
        return id_


def _attribute_rows(value) -> list[tuple[str, str, bool]]:
    """(name, text, is JSON) rows for a stored dict, a JSON text or posted rows."""
    if isinstance(value, list):
        return [row for row in value if row[0].strip() or row[1].strip()]
    if isinstance(value, str):
        try:
            value = json.loads(value) if value else {}
        except ValueError:
            return []
    if not isinstance(value, dict):
        return []
    return [
        (key, item, False)
        if isinstance(item, str)
        else (key, json.dumps(item, ensure_ascii=False), True)
        for key, item in value.items()
    ]


class AttributesFormField(forms.Field):
    """Posted name/value rows as the attributes dict (see AttributesWidget)."""

    widget = AttributesWidget
    default_error_messages = {
        "no_name": "Give each value a name.",
        "repeated": "“%(name)s” is named twice.",
    }

    def to_python(self, value) -> dict:
        if isinstance(value, dict):
            return value
        attributes: dict = {}
        for key, text, is_json in value or []:
            key, stripped = key.strip(), text.strip()
            if not stripped:
                # An emptied value removes the attribute.
                continue
            if not key:
                raise ValidationError(self.error_messages["no_name"], code="no_name")
            if key in attributes:
                raise ValidationError(
                    self.error_messages["repeated"],
                    code="repeated",
                    params={"name": key},
                )
            item = text
            if is_json:
                try:
                    item = json.loads(text)
                except ValueError:
                    item = text
            attributes[key] = item
        return attributes

    def validate(self, value: dict) -> None:
        super().validate(value)
        validate_attributes(value)

    def prepare_value(self, value):
        return value

    def has_changed(self, initial, data) -> bool:
        try:
            return self.to_python(data) != (initial or {})
        except ValidationError:
            return True
