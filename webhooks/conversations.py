"""Conversations: what was sent to a contact and what they sent back, as one thread.

A conversation is a contact's: their inbound messages (linked when stored) and the
messages sent to them (campaigns, replies), in one list, newest last. Only contacts
who wrote to us have one in the list of conversations; that is also who can be
answered (a reply goes out from the number they wrote to).
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import models
from django.db.models import Count, F, Max, Q, Value
from django.db.models.functions import Coalesce

from campaigns.models import Message
from contacts.models import Contact

from .models import InboundMessage

INBOUND = "inbound"
OUTBOUND = "outbound"


@dataclass(frozen=True)
class ThreadEntry:
    """One message of a conversation, sent or received."""

    direction: str
    """:data:`INBOUND` or :data:`OUTBOUND`."""
    id: int
    """The InboundMessage's id for inbound messages, the Message's for outbound."""
    at: datetime
    """Received; for outbound messages, accepted by the provider (or handed to it,
    or queued, for those not sent yet)."""
    text: str
    from_number: str
    to_number: str
    status: str
    """The outbound message's status; empty for inbound messages."""
    kind: str
    """The outbound message's kind (campaign, reply, test); empty for inbound."""
    keyword: str
    """The keyword an inbound message was (opt_out, opt_in, help); else empty."""
    campaign_id: int | None
    """The campaign an outbound message is part of, or the campaign of the
    message an inbound one answers."""
    in_reply_to_id: int | None
    """For inbound messages: the campaign message it answers (see
    ``webhooks.services.answered_message``)."""
    read_at: datetime | None

    @property
    def inbound(self) -> bool:
        return self.direction == INBOUND

    @property
    def unread(self) -> bool:
        return self.inbound and self.read_at is None


# Columns of both halves of the thread, in this order. Every one is an annotation
# under a name neither model has, so the two SELECTs list them in the same order.
_COLUMNS = (
    "t_direction",
    "t_id",
    "t_at",
    "t_text",
    "t_from",
    "t_to",
    "t_status",
    "t_kind",
    "t_keyword",
    "t_campaign",
    "t_in_reply_to",
    "t_read_at",
)


def _none(field: models.Field) -> Value:
    return Value(None, output_field=field)


class Thread:
    """A contact's messages both ways, oldest first, sliced in the database (one
    UNION query per page; a paginator's count is one more)."""

    def __init__(self, contact: Contact) -> None:
        self.contact = contact
        outbound = (
            Message.objects.filter(contact=contact)
            .order_by()
            .annotate(
                t_direction=Value(OUTBOUND, output_field=models.CharField()),
                t_id=F("id"),
                t_at=Coalesce("submitted_at", "handed_at", "queued_at"),
                t_text=F("body"),
                t_from=F("sender"),
                t_to=F("to"),
                t_status=F("status"),
                t_kind=F("kind"),
                t_keyword=Value("", output_field=models.CharField()),
                t_campaign=F("campaign_id"),
                t_in_reply_to=_none(models.IntegerField()),
                t_read_at=_none(models.DateTimeField()),
            )
            .values_list(*_COLUMNS)
        )
        inbound = (
            InboundMessage.objects.filter(contact=contact)
            .order_by()
            .annotate(
                t_direction=Value(INBOUND, output_field=models.CharField()),
                t_id=F("id"),
                t_at=F("received_at"),
                t_text=F("text"),
                t_from=F("from_number"),
                t_to=F("to_number"),
                t_status=Value("", output_field=models.CharField()),
                t_kind=Value("", output_field=models.CharField()),
                t_keyword=F("keyword"),
                t_campaign=F("in_reply_to__campaign_id"),
                t_in_reply_to=F("in_reply_to_id"),
                t_read_at=F("read_at"),
            )
            .values_list(*_COLUMNS)
        )
        self._query = outbound.union(inbound, all=True).order_by(
            "t_at", "t_direction", "t_id"
        )

    def count(self) -> int:
        return self._query.count()

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index: slice) -> list[ThreadEntry]:
        if not isinstance(index, slice):
            raise TypeError("a thread is read in pages: slice it")
        return [ThreadEntry(*row) for row in self._query[index]]


def contact_thread(contact: Contact) -> Thread:
    """The contact's conversation, oldest first: slice it, or hand it to a
    paginator (``?page=last`` is the newest page)."""
    return Thread(contact)


def conversations(*, unread_only: bool = False):
    """One row per contact who wrote to us: ``contact`` (the id),
    ``last_received_at`` and ``unread``; the most recent first.

    A GROUP BY over the inbound messages: :func:`conversation_summaries` fills in
    the page being shown.
    """
    rows = (
        InboundMessage.objects.filter(contact__isnull=False)
        .values("contact")
        .annotate(
            last_received_at=Max("received_at"),
            unread=Count("id", filter=Q(read_at__isnull=True)),
        )
        .order_by("-last_received_at", "-contact")
    )
    if unread_only:
        rows = rows.filter(unread__gt=0)
    return rows


@dataclass(frozen=True)
class ConversationSummary:
    contact: Contact
    last_received_at: datetime
    unread: int
    last: ThreadEntry | None
    """The newest message either way."""


def _newest_per_contact(queryset, contact_ids: list[int]) -> dict:
    """Each contact's newest row of ``queryset`` (highest id), by contact id: one query."""
    newest_ids = (
        queryset.model.objects.filter(contact_id__in=contact_ids)
        .values("contact_id")
        .annotate(newest=Max("id"))
        .values("newest")
    )
    return {row.contact_id: row for row in queryset.filter(pk__in=newest_ids)}


def conversation_summaries(rows) -> list[ConversationSummary]:
    """The contacts and newest messages of a page of :func:`conversations` rows, in
    a few queries whatever the page size."""
    rows = list(rows)
    ids = [row["contact"] for row in rows]
    contacts = Contact.objects.in_bulk(ids)
    last_out = _newest_per_contact(
        Message.objects.only(
            "contact_id",
            "body",
            "sender",
            "to",
            "status",
            "kind",
            "campaign_id",
            "submitted_at",
            "handed_at",
            "queued_at",
        ),
        ids,
    )
    last_in = _newest_per_contact(
        InboundMessage.objects.select_related("in_reply_to"), ids
    )
    summaries = []
    for row in rows:
        contact = contacts.get(row["contact"])
        if contact is None:  # deleted since the page was counted
            continue
        entries = [
            entry
            for entry in (
                _outbound_entry(last_out.get(contact.pk)),
                _inbound_entry(last_in.get(contact.pk)),
            )
            if entry is not None
        ]
        summaries.append(
            ConversationSummary(
                contact=contact,
                last_received_at=row["last_received_at"],
                unread=row["unread"],
                last=max(entries, key=lambda e: (e.at, e.direction), default=None),
            )
        )
    return summaries


def _outbound_entry(message: Message | None) -> ThreadEntry | None:
    if message is None:
        return None
    return ThreadEntry(
        direction=OUTBOUND,
        id=message.pk,
        at=message.submitted_at or message.handed_at or message.queued_at,
        text=message.body,
        from_number=message.sender,
        to_number=message.to,
        status=message.status,
        kind=message.kind,
        keyword="",
        campaign_id=message.campaign_id,
        in_reply_to_id=None,
        read_at=None,
    )


def _inbound_entry(message: InboundMessage | None) -> ThreadEntry | None:
    if message is None:
        return None
    return ThreadEntry(
        direction=INBOUND,
        id=message.pk,
        at=message.received_at,
        text=message.text,
        from_number=message.from_number,
        to_number=message.to_number,
        status="",
        kind="",
        keyword=message.keyword,
        campaign_id=message.in_reply_to.campaign_id if message.in_reply_to else None,
        in_reply_to_id=message.in_reply_to_id,
        read_at=message.read_at,
    )


def unread_count() -> int:
    """Unread inbound messages in the whole inbox (the partial index answers it)."""
    return InboundMessage.objects.filter(read_at__isnull=True).count()
