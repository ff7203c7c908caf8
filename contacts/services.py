"""Operations on people and lists that touch more than one row or model."""

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from functools import partial

from django.db import (
    DEFAULT_DB_ALIAS,
    IntegrityError,
    connection,
    connections,
    transaction,
)
from django.db.models import Q, QuerySet
from django.utils import timezone

from integrations.events import EventType, consent_data
from integrations.services import publish_many

from .models import (
    ConsentEvent,
    Contact,
    ContactList,
    ListMembership,
    PendingSignup,
    SignupKeyword,
    Source,
    Suppression,
)
from .phones import InvalidPhoneNumber, parse_phone, sender_key
from .querysets import SuppressionProtected


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
    """Add contacts to a list, skipping those already in it. Return how many were added.

    A QuerySet is added in one INSERT … SELECT, whatever its size (the admin's "select
    all" can mean a million contacts).
    """
    if isinstance(contacts, QuerySet):
        return _list_add_queryset(contact_list, contacts, source)
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


def _list_add_queryset(
    contact_list: ContactList, contacts: QuerySet[Contact], source: str
) -> int:
    selected_sql, selected_params = _pk_subquery(contacts)
    membership, contact = ListMembership._meta, Contact._meta
    qn = connection.ops.quote_name
    sql = f"""
        INSERT INTO {qn(membership.db_table)}
            ({qn("contact_list_id")}, {qn("contact_id")}, {qn("added_at")}, {qn("source")})
        SELECT %s, c.{qn("id")}, %s, %s
        FROM {qn(contact.db_table)} c
        WHERE c.{qn("id")} IN ({selected_sql})
        ON CONFLICT DO NOTHING
    """
    params = [
        contact_list.pk,
        connection.ops.adapt_datetimefield_value(timezone.now()),
        source,
        *selected_params,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return max(cursor.rowcount, 0)


def list_remove_contacts(
    *, contact_list: ContactList, contacts: Iterable[Contact]
) -> int:
    """Take contacts out of a list (the contacts are kept). Return how many were in it.

    A QuerySet is removed in one DELETE, whatever its size.
    """
    if isinstance(contacts, QuerySet):
        selected = contacts.order_by().values("pk")
    else:
        selected = [c.pk for c in contacts]
    removed, _ = ListMembership.objects.filter(
        contact_list=contact_list, contact_id__in=selected
    ).delete()
    return removed


def contacts_opt_out(*, contacts: QuerySet[Contact], source: str) -> int:
    """Opt out every subscribed contact in ``contacts``: :func:`contact_opt_out` for many.

    Each contact whose state changes gets its ConsentEvent; contacts already opted
    out are left alone (an admin re-selecting them is not a new request from the
    person). Works in chunks of set-based statements. Returns how many changed.
    """
    changed = 0
    for ids in _pk_chunks(contacts):
        with transaction.atomic():
            now = timezone.now()
            targets = Contact.objects.filter(pk__in=ids, opted_out_at__isnull=True)
            changed += _record_consent(targets, ConsentEvent.Kind.OPT_OUT, source, now)
            _publish_consent_recorded(EventType.CONTACT_OPTED_OUT, ids, now)
            targets.update(opted_out_at=now, opt_out_source=source, updated_at=now)
            _signups_cancel(Contact.objects.filter(pk__in=ids).values("phone"))
    return changed


def contacts_opt_in(*, contacts: QuerySet[Contact], source: str, text: str = "") -> int:
    """Opt back in every contact in ``contacts`` that opted out: :func:`contact_opt_in`
    for many.

    Like the single form it also lifts opt-out suppressions of their numbers (other
    suppressions stay), and records a ConsentEvent for each contact whose state
    changes, with ``text`` (the evidence of consent) on each. Returns how many changed.
    """
    changed = 0
    opt_out_suppressions = Suppression.objects.filter(reason=Suppression.Reason.OPT_OUT)
    for ids in _pk_chunks(contacts):
        with transaction.atomic():
            now = timezone.now()
            selected = Contact.objects.filter(pk__in=ids)
            targets = selected.filter(
                Q(opted_out_at__isnull=False)
                | Q(phone__in=opt_out_suppressions.values("phone"))
            )
            changed += _record_consent(
                targets, ConsentEvent.Kind.OPT_IN, source, now, text=text
            )
            _publish_consent_recorded(EventType.CONTACT_OPTED_IN, ids, now)
            opt_out_suppressions.filter(
                phone__in=selected.values("phone")
            ).lift_opt_outs()
            selected.filter(opted_out_at__isnull=False).update(
                opted_out_at=None, opt_out_source="", updated_at=now
            )
    return changed


def _record_consent(
    contacts: QuerySet[Contact], kind: str, source: str, now: datetime, text: str = ""
) -> int:
    """One ConsentEvent per contact in ``contacts``, in one INSERT … SELECT."""
    selected_sql, selected_params = _pk_subquery(contacts)
    event, contact = ConsentEvent._meta, Contact._meta
    qn = connection.ops.quote_name
    columns = [
        "phone",
        "contact_id",
        "kind",
        "source",
        "text",
        "provider",
        "created_at",
    ]
    sql = f"""
        INSERT INTO {qn(event.db_table)} ({", ".join(qn(c) for c in columns)})
        SELECT c.{qn("phone")}, c.{qn("id")}, %s, %s, %s, '', %s
        FROM {qn(contact.db_table)} c
        WHERE c.{qn("id")} IN ({selected_sql})
        ORDER BY c.{qn("id")}
    """
    params = [kind, source, text, connection.ops.adapt_datetimefield_value(now)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *selected_params])
        return max(cursor.rowcount, 0)


def _publish_consent_recorded(event_type: str, ids: list[int], now: datetime) -> None:
    """The events of the consent changes _record_consent just wrote for ``ids``."""
    kind = (
        ConsentEvent.Kind.OPT_OUT
        if event_type == EventType.CONTACT_OPTED_OUT
        else ConsentEvent.Kind.OPT_IN
    )
    _publish_consent(
        event_type,
        ConsentEvent.objects.filter(
            contact_id__in=ids, kind=kind, created_at=now
        ).order_by("pk"),
    )


_CHUNK_SIZE = 2000


def _pk_chunks(contacts: QuerySet[Contact]) -> Iterator[list[int]]:
    """The ids of ``contacts`` in ascending chunks.

    Each chunk is a fixed list, so changing those contacts cannot change which ones a
    later statement (or chunk) finds, even when ``contacts`` filters on the state
    being changed.
    """
    last = 0
    while True:
        ids = list(
            contacts.filter(pk__gt=last)
            .order_by("pk")
            .values_list("pk", flat=True)[:_CHUNK_SIZE]
        )
        if not ids:
            return
        yield ids
        last = ids[-1]


def _pk_subquery(contacts: QuerySet[Contact]) -> tuple[str, tuple]:
    query = contacts.order_by().values("pk").query
    return query.get_compiler(using=contacts.db).as_sql()


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
    if changed:
        _publish_consent(EventType.CONTACT_OPTED_OUT, [event])
    # STOP outranks a sign-up still waiting for its YES: the YES must not undo it.
    _signups_cancel([e164])
    return event, changed


@transaction.atomic
def contact_opt_in(
    *,
    phone: str,
    source: str,
    text: str = "",
    provider: str = "",
    signup: PendingSignup | None = None,
) -> tuple[ConsentEvent, bool]:
    """Record that ``phone`` gave consent again, reversing an earlier opt-out.

    Suppressions added by hand or for invalid numbers stay: only an opt-out is reversed.
    ``signup``, when the consent is the YES to a keyword sign-up, gives the event its
    keyword, question, list and the time the keyword arrived.
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
    removed = Suppression.objects.filter(
        phone=e164, reason=Suppression.Reason.OPT_OUT
    ).lift_opt_outs()
    evidence = {}
    if signup is not None:
        evidence = {
            "keyword": signup.signup_keyword.keyword,
            "question": signup.question,
            "requested_at": signup.requested_at,
            "contact_list": signup.signup_keyword.contact_list,
        }
    event = ConsentEvent.objects.create(
        phone=e164,
        contact=contact,
        kind=ConsentEvent.Kind.OPT_IN,
        source=source,
        text=text,
        provider=provider,
        created_at=now,
        **evidence,
    )
    # A sign-up's YES is news to integrators too, even for a number never out.
    if changed or removed or signup is not None:
        _publish_consent(EventType.CONTACT_OPTED_IN, [event])
    return event, changed or bool(removed)


def _publish_consent(event_type: str, consents: Iterable[ConsentEvent]) -> None:
    """One contact.opted_out / contact.opted_in event per consent change, in the
    transaction that records it (integrations delivers them to subscribers)."""
    # A generator: nothing is read when nobody subscribes.
    publish_many(
        event_type,
        (
            partial(
                consent_data,
                phone=consent.phone,
                contact_id=consent.contact_id,
                source=consent.source,
                text=consent.text,
                at=consent.created_at,
            )
            for consent in consents
        ),
    )


def _consent_phone(phone: str) -> str:
    # A consent request is honoured even from a number we cannot parse (a short code,
    # an odd vendor format): it is kept as received rather than dropped.
    return sender_key(phone)


def contacts_delete(*, contacts: QuerySet[Contact]) -> int:
    """Delete contacts, keeping the opt-out of each one that opted out.

    The opt-out belongs to the number, not to the contact row: each opted-out
    number goes on the suppression list first (:func:`opted_out_numbers_keep`, which
    the queryset's ``delete()`` calls), so a contact created for it later, by an
    import or the API, still gets no marketing. Their ConsentEvents stay too
    (detached from the contact). In chunks, so a million contacts never lock the
    table in one statement. Returns how many contacts were deleted.
    """
    deleted = 0
    for ids in _pk_chunks(contacts):
        chunk = Contact.objects.filter(pk__in=ids)
        deleted += chunk.delete()[1].get(Contact._meta.label, 0)
    return deleted


def contact_delete(*, contact: Contact) -> None:
    """Delete one contact, keeping its opt-out: :func:`contacts_delete` for one."""
    contacts_delete(contacts=Contact.objects.filter(pk=contact.pk))


# Messages name their contact without a foreign-key constraint in the database:
# checking it cost a launch of a million messages 4 s (an index probe and a row lock
# on the contact per message). What it guaranteed, that no message is left naming a
# deleted contact, comes from this lock instead: whatever writes messages for
# contacts holds it shared until it commits, a deletion of contacts exclusively, so
# the deletion's SET NULL on the contacts' messages sees every message written for
# them, and a write that starts after the deletion does not see the contacts.
_MESSAGE_CONTACTS_LOCK = 0x636F6E7461637473  # PostgreSQL advisory lock key: "contacts"


def message_contacts_lock(*, exclusive: bool, using: str | None = None) -> None:
    """Hold the lock between writing messages for contacts (``exclusive`` false) and
    deleting contacts (true) until the transaction ends; call it inside one."""
    conn = connections[using or DEFAULT_DB_ALIAS]
    if conn.vendor != "postgresql":
        return  # SQLite lets one transaction write at a time: nothing runs beside it
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s)", [_MESSAGE_CONTACTS_LOCK])


KEPT_ON_DELETE = "Kept when the opted-out contact was deleted."
KEPT_ON_NUMBER_CHANGE = "Kept when the opted-out contact's number changed."


def opted_out_numbers_keep(*, contacts: QuerySet[Contact], note: str) -> None:
    """The rule "a number that opted out stays suppressed", applied before
    ``contacts`` lose their current numbers (deleted, or given new ones).

    Each opted-out contact's number, as stored now, gets an opt-out suppression, so
    a contact created for it later (import, API, admin) still gets no marketing.
    A number already suppressed keeps its row. One INSERT … SELECT, whatever the
    number of contacts. Every path that deletes a contact or changes its number
    reaches this: ``Contact.delete()``, ``Contact.save()`` with a new number and
    ``ContactQuerySet.delete()`` / ``.update(phone=…)``.
    """
    contacts = contacts.filter(opted_out_at__isnull=False)
    selected_sql, selected_params = _pk_subquery(contacts)
    suppression, contact = Suppression._meta, Contact._meta
    qn = connection.ops.quote_name
    sql = f"""
        INSERT INTO {qn(suppression.db_table)}
            ({qn("phone")}, {qn("reason")}, {qn("source")}, {qn("note")},
             {qn("created_at")})
        SELECT c.{qn("phone")}, %s,
            CASE WHEN c.{qn("opt_out_source")} = '' THEN %s
                 ELSE c.{qn("opt_out_source")} END,
            %s, %s
        FROM {qn(contact.db_table)} c
        WHERE c.{qn("id")} IN ({selected_sql})
        ON CONFLICT DO NOTHING
    """
    params = [
        Suppression.Reason.OPT_OUT,
        Source.ADMIN,
        note,
        connection.ops.adapt_datetimefield_value(timezone.now()),
    ]
    with connections[contacts.db].cursor() as cursor:
        cursor.execute(sql, [*params, *selected_params])


_NUMBERS_CHUNK = 1000


def blocked_numbers(numbers: Sequence[str]) -> set[str]:
    """Of ``numbers`` (E.164), those nobody may text but to answer STOP, START or
    HELP: their contact opted out, or they are on the suppression list. The rule
    test sends, ad-hoc sends and conversation replies apply (a campaign's launch
    applies it in SQL)."""
    blocked: set[str] = set()
    for start in range(0, len(numbers), _NUMBERS_CHUNK):
        chunk = numbers[start : start + _NUMBERS_CHUNK]
        blocked.update(
            Contact.objects.filter(
                phone__in=chunk, opted_out_at__isnull=False
            ).values_list("phone", flat=True)
        )
        blocked.update(
            Suppression.objects.filter(phone__in=chunk).values_list("phone", flat=True)
        )
    return blocked


@transaction.atomic
def suppression_add(
    *, phone: str, reason: str, source: str = Source.ADMIN, note: str = ""
) -> tuple[Suppression, bool]:
    """Put ``phone`` on the suppression list; return the row and whether it is new.

    A suppression for reason opt-out records the person's opt-out: it gets its
    ConsentEvent (with ``note`` as the text), and a contact with that number is
    marked opted out as well. Other reasons are our decision, not the person's,
    so they leave the consent history alone.
    """
    e164 = parse_phone(phone).e164
    suppression, created = Suppression.objects.get_or_create(
        phone=e164, defaults={"reason": reason, "source": source, "note": note}
    )
    if created and reason == Suppression.Reason.OPT_OUT:
        now = timezone.now()
        contact = Contact.objects.filter(phone=e164).first()
        if contact is not None and contact.opted_out_at is None:
            Contact.objects.filter(pk=contact.pk).update(
                opted_out_at=now, opt_out_source=source, updated_at=now
            )
        ConsentEvent.objects.create(
            phone=e164,
            contact=contact,
            kind=ConsentEvent.Kind.OPT_OUT,
            source=source,
            text=note,
            created_at=now,
        )
        _signups_cancel([e164])
    return suppression, created


def suppression_delete(*, suppression: Suppression) -> None:
    """Take a number off the suppression list.

    Raises SuppressionProtected for an opt-out: deleting it would message someone
    who said STOP; it is lifted only by an opt-in (:func:`contact_opt_in`), which
    records the consent.
    """
    if suppression.reason == Suppression.Reason.OPT_OUT:
        raise SuppressionProtected(
            f"{suppression.phone} opted out; only an opt-in can lift that."
        )
    suppression.delete()


def suppressions_delete(*, suppressions: QuerySet[Suppression]) -> tuple[int, int]:
    """Delete the suppressions that are not opt-outs; return (deleted, kept opt-outs)."""
    with transaction.atomic():
        kept = suppressions.filter(reason=Suppression.Reason.OPT_OUT).count()
        deleted, _ = suppressions.exclude(reason=Suppression.Reason.OPT_OUT).delete()
    return deleted, kept


def contact_list_get_or_create(*, name: str) -> tuple[ContactList, bool]:
    """The list named ``name`` (ignoring case: "VIP" means "vip"), created if missing.

    Returns the list and whether it was created.
    """
    name = name.strip()
    existing = ContactList.objects.filter(name__iexact=name).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            return ContactList.objects.create(name=name), True
    except IntegrityError:
        # Created by someone else since the lookup.
        return ContactList.objects.get(name__iexact=name), False


# --- Keyword sign-up (double opt-in) --------------------------------------------------


def signup_request(
    *, phone: str, signup_keyword: SignupKeyword, text: str, provider: str = ""
) -> tuple[PendingSignup | None, bool]:
    """``phone`` texted ``signup_keyword``: keep the sign-up waiting for its YES.

    Nothing changes for the number yet (an opted-out number stays opted out until
    the YES). One sign-up waits per number: a newer keyword replaces the older one
    and starts its window again. Returns it (its ``question`` is the text to send),
    or None for a sender that cannot become a contact (a short code, an alphanumeric
    ID), and whether it repeats the same keyword while that one was still waiting.
    """
    try:
        e164 = parse_phone(phone).e164
    except InvalidPhoneNumber:
        return None, False
    now = timezone.now()
    repeat = PendingSignup.objects.filter(
        phone=e164, signup_keyword=signup_keyword, expires_at__gt=now
    ).exists()
    pending, _ = PendingSignup.objects.update_or_create(
        phone=e164,
        defaults={
            "signup_keyword": signup_keyword,
            "keyword_text": text,
            "question": signup_keyword.render(signup_keyword.question),
            "provider": provider,
            "requested_at": now,
            "expires_at": now + signup_keyword.confirm_within,
        },
    )
    return pending, repeat


def signup_pending(*, phone: str) -> PendingSignup | None:
    """The sign-up waiting for ``phone``'s YES (perhaps expired), with its keyword and
    list."""
    return (
        PendingSignup.objects.select_related("signup_keyword__contact_list")
        .filter(phone=sender_key(phone))
        .first()
    )


@transaction.atomic
def signup_confirm(
    *, pending: PendingSignup, text: str, provider: str = ""
) -> tuple[Contact, ConsentEvent] | None:
    """The YES to a waiting sign-up: the number becomes a contact (if new) and a member
    of the keyword's list.

    The consent goes through :func:`contact_opt_in`, the one path that may lift an
    opt-out, with the keyword, the question and both times on its ConsentEvent.
    Returns the contact and the event, or None when the sign-up was confirmed,
    cancelled (STOP) or replaced meanwhile, or has expired: nothing happens then.
    """
    if pending.expired:
        return None
    # Claimed by deleting it: of two YESes at once, one finds nothing to delete.
    claimed, _ = PendingSignup.objects.filter(
        pk=pending.pk, signup_keyword_id=pending.signup_keyword_id
    ).delete()
    if not claimed:
        return None
    contact, _ = Contact.objects.get_or_create(phone=pending.phone)
    event, _ = contact_opt_in(
        phone=contact.phone,
        source=Source.KEYWORD,
        text=text,
        provider=provider,
        signup=pending,
    )
    list_add_contacts(
        contact_list=pending.signup_keyword.contact_list,
        contacts=[contact],
        source=Source.KEYWORD,
    )
    return contact, event


def signup_expire(*, pending: PendingSignup) -> bool:
    """Forget a sign-up whose window has passed; return whether it was still there."""
    deleted, _ = PendingSignup.objects.filter(
        pk=pending.pk, expires_at__lte=timezone.now()
    ).delete()
    return bool(deleted)


#: How long a sign-up is kept past its window: a late YES in this time is told it
#: came too late; after it the number is forgotten (a YES then means START).
SIGNUP_KEEP_EXPIRED = timedelta(days=7)


def signups_prune() -> int:
    """Forget sign-ups whose window closed over :data:`SIGNUP_KEEP_EXPIRED` ago (no
    number is kept for ever for a question nobody answered). Returns how many."""
    deleted, _ = PendingSignup.objects.filter(
        expires_at__lt=timezone.now() - SIGNUP_KEEP_EXPIRED
    ).delete()
    return deleted


def _signups_cancel(phones: Iterable[str] | QuerySet) -> None:
    PendingSignup.objects.filter(phone__in=phones).delete()
