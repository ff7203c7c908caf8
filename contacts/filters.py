"""Query filters for the contacts API: ``?list=``, ``?opted_out=`` and ``?search=``."""

from typing import Any

import django_filters as filters

from django import forms
from django.db.models import QuerySet

from .models import Contact, ContactList


class StrictBooleanField(forms.Field):
    """``true`` or ``false``, nothing else.

    Django's NullBooleanField reads any other value as "no filter", so a typo such as
    ``?opted_out=ture`` would quietly return everyone.
    """

    def to_python(self, value: Any) -> bool | None:
        if value in self.empty_values:
            return None
        if value in (True, "true"):
            return True
        if value in (False, "false"):
            return False
        raise forms.ValidationError("Enter true or false.", code="invalid")


class StrictBooleanFilter(filters.BooleanFilter):
    field_class = StrictBooleanField


class ContactFilter(filters.FilterSet):
    list = filters.ModelChoiceFilter(
        queryset=ContactList.objects.all(),
        field_name="memberships__contact_list",
        label="Only contacts in this list (id).",
    )
    opted_out = StrictBooleanFilter(
        method="filter_opted_out",
        label="true: only opted-out contacts; false: only the others.",
    )
    search = filters.CharFilter(
        method="filter_search",
        max_length=100,
        label="Text in the phone number or the first or last name.",
    )

    class Meta:
        model = Contact
        fields: list[str] = []

    def filter_opted_out(
        self, queryset: QuerySet[Contact], name: str, value: bool
    ) -> QuerySet[Contact]:
        return queryset.filter(opted_out_at__isnull=not value)

    def filter_search(
        self, queryset: QuerySet[Contact], name: str, value: str
    ) -> QuerySet[Contact]:
        return queryset.search(value)
