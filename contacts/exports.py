"""Contacts as CSV rows, attributes, lists and opt-out state included (the admin and
the API serve them through smscampaigns.csv_export).

Phone, first_name and last_name come first and each attribute has a column of its
own, named as the import names it (an import of the file keeps the other columns as
attributes: pick the columns to import).
"""

import json
from collections.abc import Iterator, Sequence

from django.db import connections
from django.db.models import Exists, OuterRef, QuerySet, StringAgg, Subquery, Value
from django.utils import timezone

from smscampaigns.csv_export import stream_rows

from .models import Contact, ListMembership, Suppression

BASE_COLUMNS = (
    "phone",
    "first_name",
    "last_name",
    "country",
    "time_zone",
    "lists",
    "opted_out",
    "opted_out_at",
    "opt_out_source",
    "suppressed",
    "created_at",
    "id",
)

#: Between the names of a contact's lists in the "lists" column.
LIST_SEPARATOR = "; "
# Between the names as the database joins them: no list name holds it.
_UNIT_SEPARATOR = "\x1f"


def attribute_keys(contacts: QuerySet[Contact]) -> list[str]:
    """Every attribute name the contacts use, sorted: one column each.

    Asked of the database (one pass over the attributes, nothing kept but the
    names), not by reading every contact into memory.
    """
    inner, params = contacts.order_by().values("attributes").query.sql_with_params()
    connection = connections[contacts.db]
    if connection.vendor == "postgresql":
        keys_of = "jsonb_object_keys(c.attributes) AS k(key)"
    else:
        keys_of = "json_each(c.attributes) AS k"
    sql = f"SELECT DISTINCT k.key FROM ({inner}) AS c, {keys_of} ORDER BY 1"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [key for (key,) in cursor.fetchall()]


def contact_columns(keys: Sequence[str]) -> list[str]:
    """The header: the base columns, then the attributes (an attribute named like a
    base column gets an "attribute:" prefix)."""
    return [
        *BASE_COLUMNS,
        *(f"attribute:{key}" if key in BASE_COLUMNS else key for key in keys),
    ]


def contact_rows(contacts: QuerySet[Contact], keys: Sequence[str]) -> Iterator[list]:
    """One row per contact (contact_columns(keys)), read a chunk at a time, in id
    order."""
    lists = (
        ListMembership.objects.filter(contact=OuterRef("pk"))
        .order_by()
        .values("contact")
        # Sorted here, not in SQL: SQLite before 3.44 cannot order an aggregate.
        .annotate(names=StringAgg("contact_list__name", Value(_UNIT_SEPARATOR)))
        .values("names")
    )
    rows = (
        contacts.order_by("pk")
        .annotate(
            list_names=Subquery(lists),
            is_suppressed=Exists(Suppression.objects.filter(phone=OuterRef("phone"))),
        )
        .values_list(
            "phone",
            "first_name",
            "last_name",
            "country",
            "time_zone",
            "list_names",
            "opted_out_at",
            "opt_out_source",
            "is_suppressed",
            "created_at",
            "pk",
            "attributes",
        )
    )
    for row in stream_rows(rows):
        (
            *head,
            list_names,
            opted_out_at,
            source,
            suppressed,
            created_at,
            pk,
            attributes,
        ) = row
        attributes = attributes or {}
        yield [
            *head,
            LIST_SEPARATOR.join(sorted((list_names or "").split(_UNIT_SEPARATOR)))
            if list_names
            else "",
            opted_out_at is not None,
            opted_out_at,
            source,
            suppressed,
            created_at,
            pk,
            *(_attribute_cell(attributes.get(key)) for key in keys),
        ]


def _attribute_cell(value) -> object:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def contacts_filename() -> str:
    return f"contacts-{timezone.localdate().isoformat()}.csv"
