"""Delivery receipts: recording what providers report and moving messages forward."""

import json
import logging
import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from campaigns import lifecycle
from campaigns.models import Campaign, DeliveryEvent, Message
from contacts.models import Source
from contacts.services import contact_opt_out
from integrations.events import EventType, message_status_data
from integrations.services import publish
from providers.messages import DeliveryStatus, StatusEvent

from .queue import enqueue_dispatch
from .recording import retry_delay

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
            # A receipt that sends the message again takes the general path: it is
            # rare, and it writes more than the one statement does.
            if not (
                connection.vendor == "postgresql"
                and not record.resend
                and _record_in_one_statement(record)
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
        resend=event.resend and event.status == DeliveryStatus.FAILED,
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
        "queued": Message.Status.QUEUED,
        "changed_at": record.occurred_at or now,
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
            SELECT id, status AS old_status FROM campaigns_message
            WHERE provider = %(provider)s AND provider_message_id = %(pid)s {recipient_filter}
              AND status <> %(queued)s
            ORDER BY id LIMIT 1
            FOR UPDATE
        ), moved AS (
            UPDATE campaigns_message t SET
                status = CASE WHEN t.status = ANY(%(below)s::text[])
                              THEN %(status)s ELSE t.status END,
                status_changed_at = CASE WHEN t.status = ANY(%(below)s::text[])
                              THEN %(changed_at)s ELSE t.status_changed_at END,
                error_code = CASE WHEN t.status = ANY(%(below)s::text[])
                              THEN %(error_code)s ELSE t.error_code END,
                error_reason = CASE WHEN t.status = ANY(%(below)s::text[])
                              THEN %(error_reason)s ELSE t.error_reason END,
                segments = COALESCE(%(segments)s::int, t.segments),
                price = COALESCE(t.price, %(price)s::numeric),
                currency = CASE WHEN t.price IS NULL AND %(price)s::numeric IS NOT NULL
                              THEN %(currency)s ELSE t.currency END
            FROM m WHERE t.id = m.id
            RETURNING t.id, m.old_status, t.status, t.campaign_id, t.contact_id,
                      t."to", t.provider_message_id, t.error_code, t.error_reason,
                      t.segments, t.price, t.currency, t.status_changed_at
        ), stored AS (
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
        )
        SELECT stored.id, moved.* FROM stored JOIN moved ON moved.id = stored.message_id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    record.pk, record.message_id, record.applied_at = row[0], row[1], now
    record._state.adding = False
    (_, message_id, old_status, new_status, campaign_id, contact_id, to, pid) = row[:8]
    if new_status != old_status:
        error_code, error_reason, segments, price, currency, changed_at = row[8:]
        publish(
            EventType.MESSAGE_STATUS_CHANGED,
            lambda: message_status_data(
                message_id=message_id,
                campaign_id=campaign_id,
                contact_id=contact_id,
                to=to,
                provider=record.provider,
                provider_message_id=pid,
                status=new_status,
                previous_status=old_status,
                error_code=error_code,
                error_reason=error_reason,
                segments=segments,
                price=price,
                currency=currency,
                changed_at=changed_at,
            ),
        )
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
    # A queued message has not been handed over in its current attempt: a receipt
    # naming it is about an earlier attempt (one a receipt sent again), not this one.
    messages = (
        Message.objects.filter(provider=provider)
        .exclude(status=Message.Status.QUEUED)
        .only(
            "id",
            "to",
            "provider",
            "provider_message_id",
            "price",
            "currency",
            "segments",
            "campaign_id",
            "contact_id",
            "status",
            "attempts",
            "kind",
        )
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
    anchor = Message.objects.filter(
        provider=provider, client_reference=reference
    ).first()
    if anchor is None:
        return None
    if not event.recipient or anchor.to == event.recipient:
        return messages.filter(pk=anchor.pk).first()
    # A batch-level reference (Plivo's callback URL, Sinch's client_reference) names the
    # batch's first message; the recipient picks the right one in the same campaign,
    # unless that one already carries another vendor id (a later attempt of it).
    candidate = messages.filter(
        campaign_id=anchor.campaign_id, to=event.recipient
    ).first()
    if (
        candidate is not None
        and event.provider_message_id
        and candidate.provider_message_id
        and candidate.provider_message_id != event.provider_message_id
    ):
        return None
    return candidate


def _apply_to_message(record: DeliveryEvent, message: Message) -> None:
    """Move the message forward to the receipt's status, never backwards, never
    twice; store price, error and segments; fill in the vendor's id if missing.

    A receipt saying the message never left the vendor (``resend``) queues it again
    instead, under the send errors' attempt limit and backoff (:func:`_send_again`).
    """
    now = timezone.now()
    needs_price = record.price is not None and message.price is None
    if record.resend and _send_again(record, message, now):
        return
    moved = 0
    if record.status:
        updates = {
            "status": record.status,
            "status_changed_at": record.occurred_at or now,
            # The latest status explains itself: an error of an earlier step (a
            # retried send, a progress code) does not stay on a delivered message.
            "error_code": record.error_code,
            "error_reason": record.error_reason,
        }
        if needs_price:
            updates["price"] = record.price
            updates["currency"] = record.currency
        moved = Message.objects.filter(
            pk=message.pk, status__in=Message.statuses_below(record.status)
        ).update(**updates)
        if moved:
            _publish_status_change(record, message, updates)
    if needs_price and not moved:
        Message.objects.filter(pk=message.pk, price__isnull=True).update(
            price=record.price, currency=record.currency
        )
    if record.segments:
        # The vendor's part count is authoritative, whichever receipt carries it
        # (Vonage puts sms.count_total on "submitted", which may arrive late).
        Message.objects.filter(pk=message.pk).exclude(segments=record.segments).update(
            segments=record.segments
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


def _publish_status_change(
    record: DeliveryEvent, message: Message, updates: dict
) -> None:
    """The message.status_changed event of a receipt that moved ``message``
    (``updates``: what was written), in the receipt's transaction."""
    publish(
        EventType.MESSAGE_STATUS_CHANGED,
        lambda: message_status_data(
            message_id=message.pk,
            campaign_id=message.campaign_id,
            contact_id=message.contact_id,
            to=message.to,
            provider=message.provider,
            provider_message_id=message.provider_message_id
            or record.provider_message_id,
            status=updates["status"],
            previous_status=message.status,
            error_code=updates["error_code"],
            error_reason=updates["error_reason"],
            segments=record.segments or message.segments,
            price=updates.get("price", message.price),
            currency=updates.get("currency", message.currency),
            changed_at=updates["status_changed_at"],
        ),
    )


def _send_again(record: DeliveryEvent, message: Message, now) -> bool:
    """Queue a message the vendor says never left it, as a retryable send error
    would be (campaigns.sending.recording): same attempt limit, same backoff.

    The new attempt gets a new client reference and no vendor id, so receipts of
    the abandoned attempt can never settle it. Returns False, queuing nothing, when
    the attempts are spent or its campaign cannot send any more (cancelled): the
    caller then records the receipt's "failed", which "Retry failed" counts.
    """
    if message.attempts >= settings.SMS_SEND_MAX_ATTEMPTS:
        return False
    campaign = None
    if message.kind == Message.Kind.CAMPAIGN:
        campaign = (
            Campaign.objects.select_for_update().filter(pk=message.campaign_id).first()
        )
        if campaign is None or not lifecycle.can(campaign, "retry_failed"):
            return False
    requeued = Message.objects.filter(
        pk=message.pk, status__in=Message.statuses_below(Message.Status.FAILED)
    ).update(
        status=Message.Status.QUEUED,
        client_reference=uuid.uuid4(),
        provider_message_id="",
        claimed_by=None,
        next_attempt_at=now + retry_delay(message.attempts),
        error_code=record.error_code or record.raw_status[:32],
        error_reason=(
            f"{record.raw_status}: {record.error_reason}"
            if record.error_reason
            else record.raw_status
        )[:255],
        status_changed_at=now,
    )
    if not requeued:
        # Already final (a late duplicate of the receipt): nothing to send again.
        return True
    # A finished campaign sends again; a paused one when it is resumed.
    if (
        campaign is not None
        and campaign.status != Campaign.Status.SENDING
        and lifecycle.transition(campaign, "retry_failed", completed_at=None)
        and campaign.status == Campaign.Status.SENDING
    ):
        campaign_id = campaign.pk
        transaction.on_commit(lambda: enqueue_dispatch(campaign_id))
    logger.info(
        "%s says message %s never left it (%s): queued again",
        record.provider,
        message.pk,
        record.raw_status,
    )
    return True


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
