"""The send path shared by every entry point (admin, API, commands, tasks, webhooks)."""

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from contacts.services import message_contacts_lock
from providers import get_provider
from providers.encoding import analyze
from providers.messages import OutboundSms, SendResult
from smscampaigns import metrics
from smscampaigns.celery import broker_configured

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
    background: bool = False,
) -> Message:
    """Queue one message outside any campaign (a keyword reply, a test send) and send it
    as soon as the surrounding transaction commits: in a Celery task when a broker is
    configured, otherwise inline, or, with ``background``, by ``run_worker``'s
    DirectSender (a webhook must answer the vendor now, whatever the time the vendor
    that sends the reply takes to answer us)."""
    info = analyze(body)
    with transaction.atomic():
        if contact is not None:
            # The contact is not deleted before this transaction commits (no foreign
            # key checks it: Message.contact).
            message_contacts_lock(exclusive=False)
        message = Message.objects.create(
            kind=kind,
            to=to,
            body=body,
            provider=provider,
            sender=sender,
            contact=contact,
            encoding=info.encoding,
            segments=info.segments,
            # Due now: the worker's next look (within DIRECT_POLL_SECONDS) takes it.
            next_attempt_at=timezone.now()
            if background and not broker_configured()
            else None,
        )
    send = enqueue_delivery if background else dispatch_direct
    transaction.on_commit(partial(send, message.pk))
    return message


def direct_message_ids_due(*, limit: int = 500, exclude=()) -> list[int]:
    """Keyword replies and test sends waiting to be sent: those queued for the worker
    or whose retry time has come, and those whose first send never ran (the process
    died after the commit, or the broker lost the task): a STOP confirmation must not
    wait forever."""
    now = timezone.now()
    due = (
        Message.objects.filter(
            kind__in=[Message.Kind.REPLY, Message.Kind.TEST],
            status=Message.Status.QUEUED,
        )
        .filter(
            Q(next_attempt_at__lte=now)
            | Q(next_attempt_at__isnull=True, queued_at__lt=now - timedelta(minutes=1))
        )
        .exclude(pk__in=list(exclude))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return list(due[:limit])


DIRECT_POLL_SECONDS = 0.25
"""How often run_worker's DirectSender looks for direct messages to send."""
DB_SLOTS = 8
"""Database connections a DirectSender's threads hold at most at once."""


class DirectSender:
    """Sends due direct messages on a pool of threads, for ``run_worker`` (without a
    broker Celery does this): a vendor that takes seconds to answer holds up neither
    the webhooks that queued the replies nor the campaigns the worker is sending.

    Each message is claimed before it is sent (``message_deliver``), so it leaves at
    most once whatever else runs; a retryable failure is queued again with backoff
    and picked up here when due.
    """

    def __init__(self, *, concurrency: int, stop: threading.Event) -> None:
        self.stop = stop
        self.concurrency = concurrency
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="direct")
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="direct-sender")
        # Threads wait seconds for a vendor but use the database for milliseconds:
        # they hold a connection (and a slot) only for their claim and their record,
        # so 200 threads need DB_SLOTS connections, not 200.
        self._db_slots = threading.BoundedSemaphore(min(concurrency, DB_SLOTS))
        self.sent = 0

    def start(self) -> "DirectSender":
        self._thread.start()
        return self

    def join(self) -> None:
        # Each thread closes its own connection; the caller's is the caller's.
        if self._thread.is_alive():
            self._thread.join()
        self._pool.shutdown(wait=True)

    def drain(self) -> int:
        """Send what is due now, one after the other on this thread (``run_worker
        --once``, for cron and tests); returns how many were tried."""
        ids = direct_message_ids_due()
        for message_id in ids:
            try:
                message_deliver(message_id=message_id)
            except Exception:
                logger.exception("direct message %s: send failed", message_id)
        return len(ids)

    def send_due(self) -> int:
        """Submit every due message not already being sent; returns how many."""
        with self._lock:
            busy = set(self._in_flight)
        room = self.concurrency * 4 - len(busy)
        if room <= 0:
            return 0
        ids = direct_message_ids_due(limit=room, exclude=busy)
        for message_id in ids:
            with self._lock:
                self._in_flight.add(message_id)
            self._pool.submit(self._send, message_id)
        return len(ids)

    def _run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                close_old_connections()
                self.send_due()
                failures = 0
            except DatabaseError as exc:
                failures += 1
                delay = min(2**failures, 30)
                logger.warning(
                    "direct sender: database unavailable (%s); retrying in %d s",
                    exc,
                    delay,
                )
                connection.close()
                self.stop.wait(delay)
                continue
            self.stop.wait(DIRECT_POLL_SECONDS)
        connection.close()

    def _send(self, message_id: int) -> None:
        self._db_slots.acquire()
        try:
            message_deliver(message_id=message_id, while_sending=self._off_database)
            self.sent += 1
        except Exception:
            # message_deliver has logged it and left the message for an operator.
            logger.exception("direct message %s: send failed", message_id)
        finally:
            with self._lock:
                self._in_flight.discard(message_id)
            # Idle threads must not hold database connections.
            connection.close()
            self._db_slots.release()

    @contextlib.contextmanager
    def _off_database(self):
        """While the vendor answers: no connection held, the slot free for others."""
        connection.close()
        self._db_slots.release()
        try:
            yield
        finally:
            self._db_slots.acquire()


def dispatch_direct(message_id: int) -> None:
    """Send one direct message now: in a Celery task with a broker, else inline."""
    if not enqueue_delivery(message_id):
        message_deliver(message_id=message_id)


def message_deliver(
    *,
    message_id: int,
    while_sending: Callable[
        [], contextlib.AbstractContextManager
    ] = contextlib.nullcontext,
) -> Message | None:
    """Claim one queued message, send it, and record the outcome.

    Returns None when the message is not queued (another worker claimed it, or it was
    already sent): claiming is a conditional UPDATE, so a message is sent at most once.
    ``while_sending`` wraps the vendor request (the DirectSender gives up its database
    connection for it).
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
        with while_sending():
            started = time.perf_counter()
            [result] = backend.send_messages([outbound])
            metrics.send_duration_observe(
                message.provider, time.perf_counter() - started
            )
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
    outcome = record_batch(
        rendered=[rendered], results=[result], provider=message.provider
    )
    if outcome.submitted:
        message.provider_message_id = result.provider_message_id
        delivery_events_apply_pending(messages=[message])
