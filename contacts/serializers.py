"""Serializers for the contacts REST API: strict input checks, exact output shapes.

Every input is checked for type, length and range here, so bad input becomes a 400
naming the field, never a database error. Serializers only validate and shape data;
writes that touch several rows or models happen in ``contacts.api`` through the
services.
"""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from phonenumbers import SUPPORTED_REGIONS
from rest_framework import serializers
from rest_framework.settings import api_settings

from .imports import DELIMITERS, ContactImportError, normalize_encoding
from .models import (
    Contact,
    ContactList,
    ImportJob,
    SignupKeyword,
    validate_time_zone,
)
from .phones import InvalidPhoneNumber, parse_phone, zones_of
from .validators import attributes_problem

MAX_ID = 2**63 - 1
"""The largest id a BigAutoField holds; a larger one could only fail in the database."""

MAX_IMPORT_RECORDS = 10_000
"""Contacts per JSON import request; larger imports upload a CSV file."""

MAX_MEMBERS_PER_REQUEST = 10_000
"""Contact ids per request to add to or remove from a list."""

MAX_LISTS_PER_CONTACT = 1000


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of converting them.

    DRF's CharField turns ``123`` into ``"123"``; an API whose schema says "string"
    should refuse it, or a fuzzer sending schema-violating data gets a 2xx.
    """

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class RegionField(serializers.ChoiceField):
    """An ISO 3166-1 alpha-2 region phonenumbers knows, e.g. "US" (upper case)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "help_text",
            "Region for numbers written in national format, e.g. GB; "
            "default: the server's PHONE_DEFAULT_REGION.",
        )
        # The region list belongs to phonenumbers; listing it in the schema lets
        # clients (and the fuzzer) know exactly what is accepted.
        super().__init__(choices=sorted(SUPPORTED_REGIONS), **kwargs)


class IdField(serializers.IntegerField):
    """A positive database id; booleans, floats and numeric strings are refused."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)

    def to_internal_value(self, data: Any) -> int:
        # JSON true would otherwise pass as 1, and "1.0" as 1.
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


def _reject_nul(value: Any, path: str = "") -> None:
    """Raise if a JSON value holds a NUL character anywhere.

    PostgreSQL refuses ``\\u0000`` in text and jsonb, so it must be stopped here
    rather than fail as a database error.
    """
    if isinstance(value, str):
        if "\x00" in value:
            where = f" (at {path})" if path else ""
            raise serializers.ValidationError(
                f"Text cannot contain NUL (\\u0000) characters{where}."
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key, path)
            _reject_nul(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_nul(item, f"{path}[{index}]")


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": True,
        "example": {"city": "Austin", "plan": "gold"},
    }
)
class AttributesField(serializers.JSONField):
    """Free-form personalization values: a JSON object, nothing else, within the
    size limit (``limit=False`` leaves that to the caller: an import reports it as a
    row error)."""

    def __init__(self, *, limit: bool = True, **kwargs: Any) -> None:
        self.limit = limit
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                f"Expected a JSON object, got {type(data).__name__}."
            )
        _reject_nul(data)
        problem = attributes_problem(data) if self.limit else None
        if problem is not None:
            raise serializers.ValidationError(problem)
        return super().to_internal_value(data)


class ListIdsField(serializers.ListField):
    """The ids of the lists a contact is in; read from prefetched memberships."""

    child = IdField()

    def get_attribute(self, instance: Contact) -> list[int]:
        return sorted(m.contact_list_id for m in instance.memberships.all())


def unknown_ids_message(kind: str, ids: list[int]) -> str:
    shown = ", ".join(map(str, ids[:100]))
    more = f" and {len(ids) - 100} more" if len(ids) > 100 else ""
    return f"Unknown {kind} ids: {shown}{more}."


class ContactSerializer(serializers.ModelSerializer):
    phone = StrictCharField(
        max_length=64,
        help_text="Returned in E.164 (+14155550123). Accepted in any common format: "
        "E.164, international without the +, or national for `region`.",
    )
    region = RegionField(write_only=True, required=False)
    first_name = StrictCharField(max_length=100, allow_blank=True, required=False)
    last_name = StrictCharField(max_length=100, allow_blank=True, required=False)
    attributes = AttributesField(required=False)
    lists = ListIdsField(
        required=False,
        max_length=MAX_LISTS_PER_CONTACT,
        help_text="Ids of the lists the contact is in. Setting it replaces them.",
    )
    time_zone = StrictCharField(
        source="time_zone_set",
        max_length=64,
        allow_blank=True,
        required=False,
        validators=[validate_time_zone],
        help_text="The recipient's IANA time zone (e.g. Europe/Moscow) when known; "
        '"" to go back to the zones of the number.',
    )
    time_zones = serializers.SerializerMethodField(
        help_text="The zones send windows use for this contact: the one set, else "
        "every zone the number may be in (a window opens only when open in all).",
    )
    opted_out = serializers.BooleanField(read_only=True)
    opted_out_at = serializers.DateTimeField(read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)

    class Meta:
        model = Contact
        fields = [
            "id",
            "phone",
            "region",
            "first_name",
            "last_name",
            "attributes",
            "time_zone",
            "time_zones",
            "lists",
            "opted_out",
            "opted_out_at",
            "created_at",
        ]
        # Uniqueness is checked in validate(), with a message naming the contact.
        validators = []

    def get_time_zones(self, contact: Contact) -> list[str]:
        return zones_of(contact.time_zone)

    def validate_lists(self, value: list[int]) -> list[int]:
        ids = sorted(set(value))
        found = set(ContactList.objects.filter(pk__in=ids).values_list("pk", flat=True))
        missing = [pk for pk in ids if pk not in found]
        if missing:
            raise serializers.ValidationError(unknown_ids_message("list", missing))
        return ids

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        region = attrs.pop("region", None)
        if "phone" in attrs:
            try:
                attrs["phone"] = parse_phone(attrs["phone"], region).e164
            except InvalidPhoneNumber as exc:
                raise serializers.ValidationError(
                    {"phone": [str(exc)]}, code="invalid_phone"
                ) from exc
            existing = duplicate_contact_id(attrs["phone"], exclude=self.instance)
            if existing is not None:
                raise serializers.ValidationError(
                    {"phone": [duplicate_phone_message(attrs["phone"], existing)]},
                    code="unique",
                )
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Contact:
        validated_data.pop("lists", None)
        return Contact.objects.create(**validated_data)

    def update(self, instance: Contact, validated_data: dict[str, Any]) -> Contact:
        validated_data.pop("lists", None)
        for name, value in validated_data.items():
            setattr(instance, name, value)
        instance.save()
        return instance


def duplicate_contact_id(e164: str, *, exclude: Contact | None = None) -> int | None:
    """The id of the contact that already has ``e164``, other than ``exclude``."""
    contacts = Contact.objects.filter(phone=e164)
    if exclude is not None:
        contacts = contacts.exclude(pk=exclude.pk)
    return contacts.values_list("pk", flat=True).first()


def duplicate_phone_message(e164: str, contact_id: int) -> str:
    return f"A contact with phone {e164} already exists (id {contact_id})."


class SignupKeywordSerializer(serializers.ModelSerializer):
    class Meta:
        model = SignupKeyword
        fields = ["keyword", "question", "welcome", "confirm_within_hours"]
        read_only_fields = fields


class ContactListSerializer(serializers.ModelSerializer):
    name = StrictCharField(max_length=200)
    description = StrictCharField(max_length=5000, allow_blank=True, required=False)
    contact_count = serializers.IntegerField(read_only=True)
    # Set up in the admin (the list's page); shown here so an integration can tell
    # people which word to text.
    signup_keywords = SignupKeywordSerializer(many=True, read_only=True)

    class Meta:
        model = ContactList
        fields = ["id", "name", "description", "contact_count", "signup_keywords"]
        validators = []

    def validate_name(self, value: str) -> str:
        existing = ContactList.objects.filter(name=value)
        if self.instance is not None:
            existing = existing.exclude(pk=self.instance.pk)
        existing_id = existing.values_list("pk", flat=True).first()
        if existing_id is not None:
            raise serializers.ValidationError(
                duplicate_list_message(value, existing_id), code="unique"
            )
        return value


def duplicate_list_message(name: str, list_id: int) -> str:
    return f"A list named {name!r} already exists (id {list_id})."


class ListMembersInputSerializer(serializers.Serializer):
    contacts = serializers.ListField(
        child=IdField(),
        allow_empty=False,
        max_length=MAX_MEMBERS_PER_REQUEST,
        help_text="Contact ids.",
    )

    def validate_contacts(self, value: list[int]) -> list[int]:
        ids = sorted(set(value))
        found = set(Contact.objects.filter(pk__in=ids).values_list("pk", flat=True))
        missing = [pk for pk in ids if pk not in found]
        if missing:
            raise serializers.ValidationError(unknown_ids_message("contact", missing))
        return ids


class ListMembersAddedSerializer(serializers.Serializer):
    added = serializers.IntegerField(help_text="Contacts added (not already members).")


class ListMembersRemovedSerializer(serializers.Serializer):
    removed = serializers.IntegerField(help_text="Contacts removed from the list.")


# --- Import ---------------------------------------------------------------------


class ImportRecordSerializer(serializers.Serializer):
    """One contact to import. Row problems (a bad number, a name too long) do not fail
    the request: they come back in ``errors`` with the record's 1-based index."""

    phone = StrictCharField(allow_blank=True, max_length=64, trim_whitespace=False)
    first_name = StrictCharField(
        allow_blank=True, required=False, max_length=1000, trim_whitespace=False
    )
    last_name = StrictCharField(
        allow_blank=True, required=False, max_length=1000, trim_whitespace=False
    )
    time_zone = StrictCharField(
        allow_blank=True,
        required=False,
        max_length=64,
        help_text="The contact's own IANA time zone, e.g. Europe/Paris.",
    )
    attributes = AttributesField(required=False, limit=False)

    def to_internal_value(self, data: Any) -> Any:
        # A JSON record names its fields: a misspelt one ("firstname") or a custom
        # value outside "attributes" would otherwise vanish without a word.
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {
                        api_settings.NON_FIELD_ERRORS_KEY: [
                            f"Unknown field{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(map(repr, unknown))}: a contact has "
                            f"{', '.join(self.fields)}; put other values in "
                            '"attributes", e.g. {"attributes": {"city": "Paris"}}.'
                        ]
                    }
                )
        return super().to_internal_value(data)


class _ImportOptionsSerializer(serializers.Serializer):
    list = serializers.PrimaryKeyRelatedField(
        queryset=ContactList.objects.all(),
        required=False,
        allow_null=True,
        help_text="Id of a list the imported contacts join.",
    )
    region = RegionField(required=False)
    keypad_letters = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Read letters in phone numbers as on a phone keypad "
        "(1-800-FLOWERS); by default a number with letters is a row error.",
    )


class ImportJsonInputSerializer(_ImportOptionsSerializer):
    contacts = serializers.ListField(
        child=ImportRecordSerializer(),
        allow_empty=False,
        max_length=MAX_IMPORT_RECORDS,
    )


_DELIMITER_NAMES = {
    **{d: d for d in DELIMITERS},
    **{n: d for d, n in DELIMITERS.items()},
}


class ImportCsvInputSerializer(_ImportOptionsSerializer):
    file = serializers.FileField(
        allow_empty_file=False,
        help_text="A CSV file with a header row and a phone column; first_name, "
        "last_name and time_zone fill those fields, other columns become attributes "
        'named in lower case with underscores ("Shoe size" → shoe_size).',
    )
    delimiter = serializers.ChoiceField(
        choices=sorted(_DELIMITER_NAMES),
        required=False,
        help_text="The column separator; default: told from the file. "
        "Also by name: comma, semicolon, tab, pipe.",
    )
    encoding = StrictCharField(
        required=False,
        max_length=40,
        help_text="The file's text encoding, e.g. utf-8, windows-1252, iso-8859-1; "
        "default: told from the file (UTF-8 whenever it reads as UTF-8).",
    )

    def validate_delimiter(self, value: str) -> str:
        return _DELIMITER_NAMES[value]

    def validate_encoding(self, value: str) -> str:
        try:
            return normalize_encoding(value)
        except ContactImportError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class ImportRowErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField(
        help_text="CSV: the row number as a spreadsheet shows it (header = 1). "
        "JSON: the 1-based index of the record."
    )
    phone = serializers.CharField(help_text="The phone value as given.")
    error = serializers.CharField()


class ImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    skipped = serializers.IntegerField()
    error_count = serializers.IntegerField(
        help_text="All rows in error; `errors` lists the first 1,000."
    )
    errors = ImportRowErrorSerializer(many=True)


class ImportJobAcceptedSerializer(serializers.Serializer):
    job = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ImportJob.Status.choices)
    url = serializers.CharField(help_text="Where to follow the job.")


class ImportJobSerializer(serializers.Serializer):
    """A background import; the result fields appear once it is done."""

    job = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ImportJob.Status.choices)
    created = serializers.IntegerField(required=False)
    updated = serializers.IntegerField(required=False)
    skipped = serializers.IntegerField(required=False)
    error_count = serializers.IntegerField(required=False)
    errors = ImportRowErrorSerializer(many=True, required=False)
    error = serializers.CharField(
        required=False, help_text="Why the import failed (status failed)."
    )
