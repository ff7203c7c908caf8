"""Operations on people and lists that touch more than one row or model."""

from collections.abc import Iterable

from django.db import transaction

from .models import Contact, ContactList, ListMembership, Source
from .phones import parse_phone


@transaction.atomic
def contact_upsert(
    *,
    phone: str,
    first_name: str = "",
    last_name: str = "",
    attributes: dict | None = None,
    region: str | None = None,
) -> tuple[Contact, bool]:
    """Create the contact for ``phone``, or update its details. Return it and whether it is new."""
    e164 = parse_phone(phone, region).e164
    defaults = {"first_name": first_name, "last_name": last_name}
    if attributes is not None:
        defaults["attributes"] = attributes
    return Contact.objects.update_or_create(phone=e164, defaults=defaults)


def list_add_contacts(
    *,
    contact_list: ContactList,
    contacts: Iterable[Contact],
    source: str = Source.ADMIN,
) -> int:
    """Add contacts to a list, skipping those already in it. Return how many were added."""
    rows = [
        ListMembership(contact_list=contact_list, contact=c, source=source)
        for c in contacts
    ]
    before = ListMembership.objects.filter(contact_list=contact_list).count()
    ListMembership.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    return ListMembership.objects.filter(contact_list=contact_list).count() - before
