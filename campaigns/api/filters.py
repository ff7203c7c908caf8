"""Query-string filters of the messages API."""

from datetime import UTC, timedelta

import django_filters

from django import forms

from contacts.phones import InvalidPhoneNumber, normalize_phone

from ..models import Message


class PhoneNumberFormField(forms.CharField):
    """A number in any common format, cleaned to E.164."""

    def clean(self, value: str | None) -> str:
        value = super().clean(value)
        if not value:
            return value
        try:
            return normalize_phone(value)
        except InvalidPhoneNumber as error:
            raise forms.ValidationError(
                "%(value)s is not a valid phone number (%(reason)s).",
                code="invalid_phone",
                params={"value": value, "reason": error.reason},
            ) from error


class InstantField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 time with a real-world UTC offset (at most ±14:00), as UTC.

    Python accepts offsets up to ±23:59 that PostgreSQL refuses, and a bad query
    string must be a 400, never a database error.
    """

    def clean(self, value):
        value = super().clean(value)
        if value is None:
            return value
        offset = value.utcoffset()
        if offset is not None and abs(offset) > timedelta(hours=14):
            raise forms.ValidationError(
                "%(value)s has a UTC offset beyond ±14:00.",
                code="invalid",
                params={"value": value},
            )
        try:
            return value.astimezone(UTC)
        except OverflowError:
            # 0001-01-01T00:00+01:00 is before year 1 in UTC.
            raise forms.ValidationError(
                "%(value)s is out of range.", code="invalid", params={"value": value}
            ) from None


class InstantFilter(django_filters.IsoDateTimeFilter):
    field_class = InstantField


class PhoneNumberFilter(django_filters.CharFilter):
    field_class = PhoneNumberFormField


class IdFilter(django_filters.Filter):
    field_class = forms.IntegerField


class MessageFilter(django_filters.FilterSet):
    campaign = IdFilter(
        field_name="campaign_id",
        # Past the 64-bit id range SQLite would overflow; nothing is there anyway.
        max_value=2**63 - 1,
        help_text="Only messages of this campaign (id).",
    )
    status = django_filters.ChoiceFilter(choices=Message.Status.choices)
    to = PhoneNumberFilter(
        max_length=40, help_text="Recipient, in any common format (normalized)."
    )
    since = InstantFilter(
        field_name="status_changed_at",
        lookup_expr="gte",
        help_text="Status changed at or after this ISO 8601 time.",
    )
    until = InstantFilter(
        field_name="status_changed_at",
        lookup_expr="lte",
        help_text="Status changed at or before this ISO 8601 time.",
    )

    class Meta:
        model = Message
        fields = ["campaign", "status", "to", "since", "until"]
