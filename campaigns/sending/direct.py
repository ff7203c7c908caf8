"""The send path shared by every entry point (admin, API, commands, tasks, webhooks)."""

import logging
from functools import partial

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from providers import get_provider
from providers.encoding import analyze
from providers.messages import OutboundSms, SendResult

from ..models import Message
from .queue import enqueue_delivery
from .receipts import delivery_events_apply_pending
from .recording import Rendered, record_batch

logger = logging.getLogger(__name__)

#: error_code of a direct message whose provider could not be created.
PROVIDER_UNUSABLE_CODE = "provider_unusable"


def message_create_direct(
    *,
    to: str,
    body: str,
    provider: str,
    kind: str,
    sender: str = "",
    contact=None,
) -> Message:
    """Queue one message outside any campaign (a keyword reply, a test send) and send it
    as soon as the surrounding transaction commits: in a Celery task when a broker is
    configured, otherwise inline."""
    info = analyze(body)
    message = Message.objects.create(
        kind=kind,
        to=to,
        body=body,
        provider=provider,
        sender=sender,
        contact=contact,
        encoding=info.encoding,
        segments=info.segments,
    )
    transaction.on_commit(partial(dispatch_direct, message.pk))
    return message


def dispatch_direct(message_id: int) -> None:
    """Send one direct message now: in a Celery task with a broker, else inline."""
    if not enqueue_delivery(message_id):
        message_deliver(message_id=message_id)


def message_deliver(*, message_id: int) -> Message | None:
    """Claim one queued message, send it, and record the outcome.

    Returns None when the message is not queued (another worker claimed it, or it was
    already sent): claiming is a conditional UPDATE, so a message is sent at most once.
    """
    now = timezone.now()
    claimed = Message.objects.filter(
        pk=message_id, status=Message.Status.QUEUED
    ).update(
        status=Message.Status.SENDING,
        status_changed_at=now,
        handed_at=now,
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return None
    message = Message.objects.get(pk=message_id)
    outbound = OutboundSms(
        to=message.to,
        text=message.body,
        reference=str(message.client_reference),
        sender=message.sender,
    )
    try:
        backend = get_provider(message.provider)
    except ImproperlyConfigured as exc:
        # Nothing was sent, and nothing will be until someone fixes the provider: a
        # final failure with the reason, not an exception that stops a worker loop.
        logger.error(
            "message %s not sent: provider %s cannot be used: %s",
            message_id,
            message.provider,
            exc,
        )
        Message.objects.filter(pk=message_id, status=Message.Status.SENDING).update(
            status=Message.Status.FAILED,
            handed_at=None,
            error_code=PROVIDER_UNUSABLE_CODE,
            error_reason=str(exc)[:255],
            status_changed_at=timezone.now(),
        )
        message.refresh_from_db()
        return message
    try:
        [result] = backend.send_messages([outbound])
    except Exception:
        # A bug or misconfiguration, not a vendor answer: leave the message visible
        # as "unknown" (it may or may not have left) for an operator to look at.
        logger.exception(
            "sending message %s through %s failed", message_id, message.provider
        )
        Message.objects.filter(pk=message_id, status=Message.Status.SENDING).update(
            status=Message.Status.UNKNOWN, error_reason="internal error while sending"
        )
        raise
    message_record_result(message=message, result=result)
    message.refresh_from_db()
    return message


def message_record_result(*, message: Message, result: SendResult) -> None:
    """Record a send result exactly as the dispatcher does for a batch: submitted with
    the vendor's id, queued again with backoff, unknown when it may have left, or
    failed."""
    rendered = Rendered(
        id=message.pk,
        reference=str(message.client_reference),
        body=message.body,
        encoding=message.encoding,
        segments=message.segments,
        attempts=message.attempts,
    )
    outcome = record_batch(rendered=[rendered], results=[result])
    if outcome.submitted:
        message.provider_message_id = result.provider_message_id
        delivery_events_apply_pending(messages=[message])
