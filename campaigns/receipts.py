"""Delivery receipts: recording what providers report and moving messages forward."""

import logging
import uuid
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.models import DeliveryEvent, Message
from contacts.models import Source
from contacts.services import contact_opt_out
from providers.messages import DeliveryStatus, StatusEvent

logger = logging.getLogger(__name__)


def delivery_events_record(
    *, provider: str, events: Iterable[StatusEvent]
) -> list[DeliveryEvent]:
    """Store each receipt and apply it to its message.

    A receipt whose message cannot be found yet (it raced ahead of the send result that
    names the vendor's id) is kept unmatched and applied by ``delivery_events_apply_pending``
    once the message is known.
    """
    stored = []
    for event in events:
        with transaction.atomic():
            record = DeliveryEvent.objects.create(
                provider=provider,
                provider_message_id=event.provider_message_id[:64],
                recipient=event.recipient[:16],
                client_reference=event.reference[:100],
                status=""
                if event.status == DeliveryStatus.UNKNOWN
                else event.status.value,
                raw_status=event.raw_status[:64],
                error_code=event.error_code[:32],
                error_reason=event.error_reason[:255],
                price=event.price,
                currency=event.currency[:3],
                segments=event.segments,
                occurred_at=event.occurred_at,
                payload=dict(event.payload),
            )
            message = _find_message(provider, event)
            if message is not None:
                _apply(record, message)
            else:
                logger.info(
                    "%s receipt %s (%s) matches no message yet; kept for later",
                    provider,
                    record.pk,
                    event.raw_status,
                )
            if event.opt_out_signal and (event.recipient or message is not None):
                contact_opt_out(
                    phone=event.recipient or message.to,
                    source=Source.PROVIDER,
                    text=f"{event.raw_status} {event.error_code}".strip(),
                    provider=provider,
                )
        stored.append(record)
    return stored


def delivery_events_apply_pending(*, messages: Iterable[Message]) -> int:
    """Apply receipts that arrived before these messages' send results were recorded."""
    applied = 0
    for message in messages:
        if not message.provider_message_id:
            continue
        pending = DeliveryEvent.objects.filter(
            message__isnull=True,
            provider=message.provider,
            provider_message_id=message.provider_message_id,
        ).filter(Q(recipient="") | Q(recipient=message.to))
        for record in pending.order_by("id"):
            with transaction.atomic():
                _apply(record, message)
            applied += 1
    return applied


def _find_message(provider: str, event: StatusEvent) -> Message | None:
    messages = Message.objects.filter(provider=provider)
    if event.provider_message_id:
        by_id = messages.filter(provider_message_id=event.provider_message_id)
        if event.recipient:
            # Sinch names a batch: the recipient picks the message out of it.
            by_id = by_id.filter(to=event.recipient)
        found = by_id.order_by("id").first()
        if found is not None:
            return found
    reference = _as_uuid(event.reference)
    if reference is None:
        return None
    anchor = Message.objects.filter(client_reference=reference).first()
    if anchor is None or not event.recipient or anchor.to == event.recipient:
        return anchor
    # A batch-level reference (Plivo's callback URL, Sinch's client_reference) names the
    # batch's first message; the recipient picks the right one in the same campaign.
    return Message.objects.filter(
        campaign_id=anchor.campaign_id, to=event.recipient
    ).first()


def _apply(record: DeliveryEvent, message: Message) -> None:
    """Move the message forward to the receipt's status; never backwards, never twice."""
    now = timezone.now()
    if record.status:
        updates = {
            "status": record.status,
            "status_changed_at": record.occurred_at or now,
        }
        if record.error_code or record.error_reason:
            updates["error_code"] = record.error_code
            updates["error_reason"] = record.error_reason
        if record.segments:
            updates["segments"] = record.segments
        Message.objects.filter(
            pk=message.pk, status__in=Message.statuses_below(record.status)
        ).update(**updates)
    if (
        record.provider_message_id
        and message.provider_message_id
        and record.provider_message_id != message.provider_message_id
    ):
        # Two vendor ids for one of our references: the vendor got the message twice
        # (e.g. the Vonage SDK re-sent a POST after a dropped connection).
        logger.warning(
            "%s: message %s has a second provider id %s (possible duplicate send)",
            record.provider,
            message.pk,
            record.provider_message_id,
        )
    if record.provider_message_id and not message.provider_message_id:
        # Plivo accepts a bulk request without saying which id is whose; the receipt does.
        Message.objects.filter(pk=message.pk, provider_message_id="").update(
            provider_message_id=record.provider_message_id
        )
    if record.price is not None:
        Message.objects.filter(pk=message.pk, price__isnull=True).update(
            price=record.price, currency=record.currency
        )
    record.message = message
    record.applied_at = now
    record.save(update_fields=["message", "applied_at"])


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None
