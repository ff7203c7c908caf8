"""Callbacks answered at once and applied by the worker (``SMS_WEBHOOK_APPLY``).

A vendor delivers receipts and replies as fast as we answer them, dozens at once during
a campaign; it retries what is not answered within seconds. Applying a STOP takes a
dozen statements (the reply, the contact, its consent event, the suppression, the
confirmation text, the integrators' event), so a webhook that applied everything before
answering was slow exactly when it mattered. In the default ``"queued"`` mode the
request only verifies, parses and stores the callback (one row, committed with its
replay record) and answers 200; the worker applies the rows in the order they came.

Nothing is lost between the two: the row is committed before the vendor hears 200, and
it leaves the queue in the same transaction that applies it.

Order: each row goes to one of ``LANES`` lanes by its number (inbound texts: the
sender; receipts: the vendor's message id), and each lane is applied oldest first by
one applier at a time (a PostgreSQL advisory lock per lane; on SQLite, whose writers
queue anyway, one applier takes all lanes in id order). So a STOP and the START that
follows it, or a message's receipts, are applied in the order they came, while a
storm of STOPs from many numbers is applied by several worker processes at once
(``run_worker`` on several machines, or Celery workers), each taking free lanes.

Every process that sends applies the queue before it claims, so a STOP that was
answered is honoured before the next batch goes: ``run_worker`` on a thread of its own,
``send_campaign`` between batches, Celery in a task started by the webhook and by beat.
``"inline"`` applies in the request, as before (tests, or a deployment that wants it).
"""

import dataclasses
import json
import logging
import threading
import time
import zlib
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from providers.messages import DeliveryStatus, InboundSms, StatusEvent
from smscampaigns.storable import storable

from .models import QueuedCallback, RejectedCallback
from .replay import callback_first_seen, remember_sql

logger = logging.getLogger(__name__)

#: Lanes applied side by side on PostgreSQL (a number's callbacks always share one).
LANES = 4
#: (namespace, first key) of the advisory locks that make one applier per lane.
APPLIER_LOCK = (0x534D53, 0x43424B)  # "SMS", "CBK" (+ the lane)
#: Rows applied per transaction: each is visible (a STOP honoured) when it commits.
BATCH = 20
#: Applies of one row that fail on a database error before it is set aside.
MAX_ATTEMPTS = 5
#: Seconds between two looks at an empty queue (the applier thread).
POLL_SECONDS = 0.2


def queued_mode() -> bool:
    return settings.SMS_WEBHOOK_APPLY == "queued"


def callback_items_apply(*, alias: str, kind: str, items: list) -> int:
    """Apply parsed receipts or inbound texts; how many were applied. The one place
    both modes (and the simulator) apply a callback's content."""
    # Imported here: the sending core imports this app's services.
    from campaigns.sending.receipts import delivery_events_record

    from .services import inbound_message_record

    if kind == "status":
        return len(delivery_events_record(provider=alias, events=items))
    for inbound in items:
        inbound_message_record(provider=alias, inbound=inbound)
    return len(items)


def callback_enqueue(
    *, alias: str, kind: str, items: list, keys: list[str], keep_for: int
) -> bool:
    """Remember the callback's replay keys (webhooks.replay) and store its content for
    the worker, both or neither; False (nothing stored) when it was seen before.

    On PostgreSQL that is one statement, outside any transaction: a webhook storm costs
    one round trip and one commit per callback.
    """
    dumped = [_dump(item) for item in items]
    lane = callback_lane(kind, items)
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        queued = _remember_and_store(
            alias, kind, dumped, lane, keys=keys, keep_for=keep_for
        )
    else:
        with transaction.atomic():
            queued = callback_first_seen(keys=keys, keep_for=keep_for)
            if queued:
                QueuedCallback.objects.create(
                    provider=alias, kind=kind, items=dumped, lane=lane
                )
    if queued:
        _wake_celery()
    return queued


def callback_lane(kind: str, items: list) -> int:
    """The lane of a callback: by the number it is about (a receipt: by the message),
    so what concerns one number or message is applied in order."""
    first = items[0] if items else None
    if first is None:
        key = ""
    elif kind == "status":
        key = first.provider_message_id or first.reference or first.recipient
    else:
        key = first.from_number
    return zlib.crc32(key.encode("utf-8", "surrogateescape")) % LANES


def _remember_and_store(
    alias: str,
    kind: str,
    items: list[dict],
    lane: int,
    *,
    keys: list[str],
    keep_for: int,
) -> bool:
    remember, params = remember_sql(keys=keys, keep_for=keep_for)
    table = connection.ops.quote_name(QueuedCallback._meta.db_table)
    # Stored only if every key was new; the keys are remembered either way, as
    # callback_first_seen does for a replay.
    sql = (
        f"WITH seen AS ({remember}) "
        f"INSERT INTO {table} (provider, kind, items, lane, received_at, attempts) "
        "SELECT %s, %s, %s::jsonb, %s, %s, 0 WHERE (SELECT count(*) FROM seen) = %s "
        "RETURNING id"
    )
    params += [
        alias,
        kind,
        json.dumps(items, cls=DjangoJSONEncoder),
        lane,
        timezone.now(),
        len(keys),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


def _wake_celery() -> None:
    from smscampaigns.celery import broker_configured

    if broker_configured():
        from .tasks import apply_queued_callbacks

        transaction.on_commit(apply_queued_callbacks.delay)


def queued_callbacks_apply(
    *,
    deadline: float | None = None,
    limit: int | None = None,
    lane: int | None = None,
) -> int:
    """Apply queued callbacks, oldest first, until the queue (or ``lane``) is empty,
    ``limit`` rows were applied or the (monotonic) ``deadline`` passed; returns how
    many rows were applied. A lane another applier holds is skipped."""
    if lane is None and connection.vendor == "postgresql":
        # An idle queue costs one look, not one per lane.
        if not QueuedCallback.objects.exists():
            return 0
        # A batch from each lane in turn, so no lane waits behind a busy one; lanes
        # another process holds are left to it.
        applied = 0
        while limit is None or applied < limit:
            before = applied
            for each in range(LANES):
                if deadline is not None and time.monotonic() >= deadline:
                    return applied
                size = BATCH if limit is None else min(BATCH, limit - applied)
                if size <= 0:
                    return applied
                applied += queued_callbacks_apply(limit=size, lane=each)
            if applied == before:
                break
        return applied
    queued = QueuedCallback.objects.all()
    if lane is not None:
        queued = queued.filter(lane=lane)
    # Most looks find nothing: answered by an index, without a transaction (on SQLite
    # a transaction here would take the write lock five times a second).
    if not queued.exists():
        return 0
    applied = 0
    while limit is None or applied < limit:
        if deadline is not None and time.monotonic() >= deadline:
            break
        size = BATCH if limit is None else min(BATCH, limit - applied)
        done = _apply_batch(queued, size, lane)
        if done is None:
            break
        applied += done
        if done < size:
            break
    return applied


def queued_callbacks_waiting() -> tuple[int, datetime | None]:
    """How many callbacks wait to be applied, and when the oldest came (for /metrics)."""
    oldest = (
        QueuedCallback.objects.order_by("id")
        .values_list("received_at", flat=True)
        .first()
    )
    if oldest is None:
        return 0, None
    return QueuedCallback.objects.count(), oldest


def _apply_batch(queued, size: int, lane: int | None) -> int | None:
    """One transaction: take the lane's lock, apply up to ``size`` of its oldest rows
    and delete them. None when the lock is held elsewhere."""
    failed: QueuedCallback | None = None
    error = ""
    with transaction.atomic():
        if not _lock(lane):
            return None
        rows = list(queued.order_by("id")[:size])
        done = []
        for row in rows:
            try:
                with transaction.atomic():
                    callback_items_apply(
                        alias=row.provider, kind=row.kind, items=_load_items(row)
                    )
            except DatabaseError as exc:
                # Stop here (the next rows wait behind it, in order) and try again on
                # the next round; a row that keeps failing is set aside below.
                failed, error = row, repr(exc)
                break
            except Exception as exc:
                # A bug or a row we cannot read: keep it for an operator, go on.
                logger.exception(
                    "%s %s callback #%s could not be applied",
                    row.provider,
                    row.kind,
                    row.pk,
                )
                _set_aside(row, f"could not apply: {exc!r}")
            done.append(row.pk)
        if done:
            QueuedCallback.objects.filter(pk__in=done).delete()
    if failed is not None:
        _count_failure(failed, error)
    return len(done)


def _lock(lane: int | None) -> bool:
    if connection.vendor != "postgresql":
        # SQLite transactions here begin IMMEDIATE: the write lock is already ours.
        return True
    namespace, first = APPLIER_LOCK
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s, %s)", [namespace, first + lane]
        )
        return bool(cursor.fetchone()[0])


def _count_failure(row: QueuedCallback, error: str) -> None:
    logger.warning(
        "%s %s callback #%s: applying failed (%s); tried again next round",
        row.provider,
        row.kind,
        row.pk,
        error,
    )
    with transaction.atomic():
        QueuedCallback.objects.filter(pk=row.pk).update(attempts=row.attempts + 1)
        if row.attempts + 1 >= MAX_ATTEMPTS:
            _set_aside(row, f"could not apply after {MAX_ATTEMPTS} attempts: {error}")
            QueuedCallback.objects.filter(pk=row.pk).delete()


def _set_aside(row: QueuedCallback, reason: str) -> None:
    logger.error(
        "%s %s callback #%s set aside: %s", row.provider, row.kind, row.pk, reason
    )
    RejectedCallback.objects.create(
        provider=row.provider,
        kind=row.kind,
        reason=storable(reason)[:255],
        content_type="application/json",
        body=storable(json.dumps(row.items)),
    )


# --- The parsed content, as JSON --------------------------------------------------


def _dump(item: StatusEvent | InboundSms) -> dict:
    data = {}
    for field in dataclasses.fields(item):
        value = getattr(item, field.name)
        if isinstance(value, datetime):
            value = value.isoformat()  # to the microsecond (Django's encoder cuts it)
        elif isinstance(value, Decimal):
            value = str(value)
        data[field.name] = value
    return data


def _load_items(row: QueuedCallback) -> list:
    if row.kind == "status":
        return [_status_event(data) for data in row.items]
    return [_inbound(data) for data in row.items]


def _status_event(data: dict) -> StatusEvent:
    return StatusEvent(
        **{
            **data,
            "status": DeliveryStatus(data["status"]),
            "price": None if data.get("price") is None else Decimal(data["price"]),
            "occurred_at": _datetime(data.get("occurred_at")),
        }
    )


def _inbound(data: dict) -> InboundSms:
    return InboundSms(**{**data, "received_at": _datetime(data.get("received_at"))})


def _datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


# --- The worker's thread -----------------------------------------------------------


class CallbackApplier:
    """Applies queued callbacks as they come, on a thread of ``run_worker`` or
    ``send_campaign``, taking every lane in turn. One thread per process: applying is
    mostly Python, so more threads of one process would share one core (and take it
    from the webhooks on a small machine); more worker processes apply lanes side by
    side."""

    def __init__(self, *, stop: threading.Event) -> None:
        self.stop = stop
        self.applied = 0
        self._thread = threading.Thread(target=self._run, name="callback-applier")

    def start(self) -> "CallbackApplier":
        # Inline mode queues nothing: no thread (and no connection) needed.
        if queued_mode():
            self._thread.start()
        return self

    def join(self) -> None:
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        failures = 0
        try:
            while not self.stop.is_set():
                try:
                    applied = queued_callbacks_apply(deadline=time.monotonic() + 5.0)
                except DatabaseError as exc:
                    failures += 1
                    delay = min(2.0 ** (failures - 1), 30.0)
                    logger.warning(
                        "callback applier: database unavailable (%s); retrying in %.0f s",
                        exc,
                        delay,
                    )
                    close_old_connections()
                    connection.close()
                    self.stop.wait(delay)
                    continue
                except Exception:
                    logger.exception("callback applier: round failed")
                    self.stop.wait(POLL_SECONDS * 10)
                    continue
                failures = 0
                self.applied += applied
                if not applied:
                    self.stop.wait(POLL_SECONDS)
        finally:
            connection.close()
