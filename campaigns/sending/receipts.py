"""Delivery receipts: recording what providers report and moving messages forward."""

import json
import logging
import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
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
        record = _new_record(provider, event)
        with transaction.atomic():
            message = None
            if not (
                connection.vendor == "postgresql" and _record_in_one_statement(record)
            ):
                message = _find_message(provider, event)
                if message is not None:
                    _apply_to_message(record, message)
                    record.message = message
                    record.applied_at = timezone.now()
                else:
                    logger.info(
                        "%s receipt (%s) matches no message yet; kept for later",
                        provider,
                        event.raw_status,
                    )
                record.save(force_insert=True)
            phone = _opted_out_recipient(provider, event, record)
            if phone:
                contact_opt_out(
                    phone=phone,
                    source=Source.PROVIDER,
                    text=f"{event.raw_status} {event.error_code}".strip(),
                    provider=provider,
                )
        stored.append(record)
    return stored


def _opted_out_recipient(
    provider: str, event: StatusEvent, record: DeliveryEvent
) -> str:
    """The number a receipt's opt-out signal stands for, or "" for none.

    A provider speaks only for numbers we texted through it: the receipt's message,
    or (while that message is not known yet) a recipient this provider was sent to.
    A receipt at one provider's URL never opts out a number of another provider.
    """
    if not event.opt_out_signal:
        return ""
    if record.message_id:
        return Message.objects.values_list("to", flat=True).get(pk=record.message_id)
    if event.recipient and (
        Message.objects.filter(provider=provider, to=event.recipient).exists()
    ):
        return event.recipient
    return ""


def _new_record(provider: str, event: StatusEvent) -> DeliveryEvent:
    return DeliveryEvent(
        provider=provider,
        provider_message_id=event.provider_message_id[:64],
        recipient=event.recipient[:16],
        client_reference=event.reference[:100],
        status="" if event.status == DeliveryStatus.UNKNOWN else event.status.value,
        raw_status=event.raw_status[:64],
        error_code=event.error_code[:32],
        error_reason=event.error_reason[:255],
        price=event.price,
        currency=event.currency[:3],
        segments=event.segments,
        occurred_at=event.occurred_at,
        received_at=timezone.now(),
        payload=dict(event.payload),
    )


def _record_in_one_statement(record: DeliveryEvent) -> bool:
    """PostgreSQL: find the message by the vendor's id, move it forward and store the
    linked receipt in one statement (the hot path of a busy campaign: one round trip
    instead of four). Returns False, storing nothing, when no message has that id,
    so the caller can look further (by our reference) and store the receipt itself."""
    if not record.provider_message_id:
        return False
    now = timezone.now()
    recipient_filter = 'AND "to" = %(recipient)s' if record.recipient else ""
    params = {
        "provider": record.provider,
        "pid": record.provider_message_id,
        "recipient": record.recipient,
        "below": Message.statuses_below(record.status) if record.status else [],
        "status": record.status,
        "changed_at": record.occurred_at or now,
        "has_error": bool(record.error_code or record.error_reason),
        "error_code": record.error_code,
        "error_reason": record.error_reason,
        "segments": record.segments,
        "price": record.price,
        "currency": record.currency,
        "raw_status": record.raw_status,
        "client_reference": record.client_reference,
        "occurred_at": record.occurred_at,
        "received_at": record.received_at,
        "now": now,
        "payload": json.dumps(record.payload, cls=DjangoJSONEncoder),
    }
    sql = f"""
        WITH m AS (
            SELECT id FROM campaigns_message
            WHERE provider = %(provider)s AND provider_message_id = %(pid)s {recipient_filter}
            ORDER BY id LIMIT 1
            FOR UPDATE
        ), moved AS (
            UPDATE campaigns_message t SET
                status = CASE WHEN t.status = ANY(%(below)s::text[])
                              THEN %(status)s ELSE t.status END,
                status_changed_at = CASE WHEN t.status = ANY(%(below)s::text[])
                              THEN %(changed_at)s ELSE t.status_changed_at END,
                error_code = CASE WHEN t.status = ANY(%(below)s::text[]) AND %(has_error)s
                              THEN %(error_code)s ELSE t.error_code END,
                error_reason = CASE WHEN t.status = ANY(%(below)s::text[]) AND %(has_error)s
                              THEN %(error_reason)s ELSE t.error_reason END,
                segments = CASE WHEN t.status = ANY(%(below)s::text[])
                                 AND %(segments)s::int IS NOT NULL
                              THEN %(segments)s::int ELSE t.segments END,
                price = COALESCE(t.price, %(price)s::numeric),
                currency = CASE WHEN t.price IS NULL AND %(price)s::numeric IS NOT NULL
                              THEN %(currency)s ELSE t.currency END
            FROM m WHERE t.id = m.id
            RETURNING t.id
        )
        INSERT INTO campaigns_deliveryevent (
            message_id, provider, provider_message_id, recipient, client_reference,
            status, raw_status, error_code, error_reason, price, currency, segments,
            occurred_at, received_at, applied_at, payload
        )
        SELECT moved.id, %(provider)s, %(pid)s, %(recipient)s, %(client_reference)s,
               %(status)s, %(raw_status)s, %(error_code)s, %(error_reason)s,
               %(price)s::numeric, %(currency)s, %(segments)s::int,
               %(occurred_at)s, %(received_at)s, %(now)s, %(payload)s::jsonb
        FROM moved
        RETURNING id, message_id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    record.pk, record.message_id, record.applied_at = row[0], row[1], now
    record._state.adding = False
    return True


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
                _apply_to_message(record, message)
                record.message = message
                record.applied_at = timezone.now()
                record.save(update_fields=["message", "applied_at"])
            applied += 1
    return applied


def _find_message(provider: str, event: StatusEvent) -> Message | None:
    messages = Message.objects.filter(provider=provider).only(
        "id", "to", "provider", "provider_message_id", "price", "campaign_id"
    )
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
    # Only this provider's messages: a receipt posted to one provider's URL never
    # changes a message sent through another.
    anchor = messages.filter(client_reference=reference).first()
    if anchor is None or not event.recipient or anchor.to == event.recipient:
        return anchor
    # A batch-level reference (Plivo's callback URL, Sinch's client_reference) names the
    # batch's first message; the recipient picks the right one in the same campaign.
    return messages.filter(campaign_id=anchor.campaign_id, to=event.recipient).first()


def _apply_to_message(record: DeliveryEvent, message: Message) -> None:
    """Move the message forward to the receipt's status, never backwards, never
    twice; store price, error and segments; fill in the vendor's id if missing."""
    now = timezone.now()
    needs_price = record.price is not None and message.price is None
    moved = 0
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
        if needs_price:
            updates["price"] = record.price
            updates["currency"] = record.currency
        moved = Message.objects.filter(
            pk=message.pk, status__in=Message.statuses_below(record.status)
        ).update(**updates)
    if needs_price and not moved:
        Message.objects.filter(pk=message.pk, price__isnull=True).update(
            price=record.price, currency=record.currency
        )
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


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None


def delivery_events_sweep(*, limit: int = 1000) -> int:
    """Apply unmatched receipts whose message has since become known.

    The send path applies waiting receipts right after recording its results, but a
    receipt committed in the same instant can miss that look; this sweep (run by the
    scheduler) catches it.
    """
    since = timezone.now() - timedelta(days=3)
    waiting = (
        DeliveryEvent.objects.filter(message__isnull=True, received_at__gte=since)
        .exclude(provider_message_id="")
        .values_list("provider", "provider_message_id")
        .distinct()[:limit]
    )
    applied = 0
    for provider, provider_message_id in waiting:
        messages = Message.objects.filter(
            provider=provider, provider_message_id=provider_message_id
        )
        applied += delivery_events_apply_pending(messages=messages)
    return applied
