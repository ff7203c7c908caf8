"""Operations on people and lists that touch more than one row or model."""

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from .models import (
    ConsentEvent,
    Contact,
    ContactList,
    ListMembership,
    Source,
    Suppression,
)
from .phones import InvalidPhoneNumber, parse_phone


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
    ids = {c.pk for c in contacts}
    # Count only the given contacts already in the list, not the whole list.
    present = set(
        ListMembership.objects.filter(
            contact_list=contact_list, contact_id__in=ids
        ).values_list("contact_id", flat=True)
    )
    rows = [
        ListMembership(contact_list=contact_list, contact_id=pk, source=source)
        for pk in ids - present
    ]
    ListMembership.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    return len(rows)


@transaction.atomic
def contact_opt_out(
    *, phone: str, source: str, text: str = "", provider: str = ""
) -> tuple[ConsentEvent, bool]:
    """Record that ``phone`` revoked consent, with immediate effect.

    A known contact is marked opted out; an unknown number goes on the suppression list,
    so a contact created for it later still gets no marketing. Every request is kept as a
    ConsentEvent, even a repeat. Returns the event and whether the state changed.
    """
    e164 = _consent_phone(phone)
    now = timezone.now()
    contact = Contact.objects.filter(phone=e164).first()
    if contact is not None:
        changed = bool(
            Contact.objects.filter(pk=contact.pk, opted_out_at__isnull=True).update(
                opted_out_at=now, opt_out_source=source, updated_at=now
            )
        )
    else:
        _, changed = Suppression.objects.get_or_create(
            phone=e164,
            defaults={"reason": Suppression.Reason.OPT_OUT, "source": source},
        )
    event = ConsentEvent.objects.create(
        phone=e164,
        contact=contact,
        kind=ConsentEvent.Kind.OPT_OUT,
        source=source,
        text=text,
        provider=provider,
        created_at=now,
    )
    return event, changed


@transaction.atomic
def contact_opt_in(
    *, phone: str, source: str, text: str = "", provider: str = ""
) -> tuple[ConsentEvent, bool]:
    """Record that ``phone`` gave consent again, reversing an earlier opt-out.

    Suppressions added by hand or for invalid numbers stay: only an opt-out is reversed.
    Returns the event and whether the state changed.
    """
    e164 = _consent_phone(phone)
    now = timezone.now()
    contact = Contact.objects.filter(phone=e164).first()
    changed = False
    if contact is not None:
        changed = bool(
            Contact.objects.filter(pk=contact.pk, opted_out_at__isnull=False).update(
                opted_out_at=None, opt_out_source="", updated_at=now
            )
        )
    removed, _ = Suppression.objects.filter(
        phone=e164, reason=Suppression.Reason.OPT_OUT
    ).delete()
    event = ConsentEvent.objects.create(
        phone=e164,
        contact=contact,
        kind=ConsentEvent.Kind.OPT_IN,
        source=source,
        text=text,
        provider=provider,
        created_at=now,
    )
    return event, changed or bool(removed)


def _consent_phone(phone: str) -> str:
    # A consent request is honoured even from a number we cannot parse (a short code,
    # an odd vendor format): it is kept as received rather than dropped.
    try:
        return parse_phone(phone).e164
    except InvalidPhoneNumber:
        return phone.strip()
