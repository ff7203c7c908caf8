"""Which dispatchers are alive, and settling the claims of those that are not.

Every dispatcher opens a :class:`~campaigns.models.DispatchSession` and every message it
claims names that session (``Message.claimed_by``). A dispatcher proves it is alive:

- on PostgreSQL by holding a session-level advisory lock keyed by its session id. The
  server drops the lock the moment the process dies (``kill -9`` included) or its
  connection breaks, so a dead dispatcher is seen at once, however busy a live one is;
- elsewhere (SQLite) by a heartbeat: a dispatcher silent for
  ``SMS_DISPATCHER_TIMEOUT`` seconds counts as dead.

``recover_stale()`` runs inside every dispatcher's loop (and the scheduler's tick): the
dead dispatchers' claims not yet handed to the provider go back to the queue, those
handed over become "unknown" (they may have been sent, so they are never sent again
automatically). The lease (``SMS_SEND_LEASE_SECONDS``) stays as a backstop for claims
that name no session.

Advisory locks are per connection: put PostgreSQL behind no pooler, or one in session
mode (PgBouncer's transaction mode would hand the lock to other clients).
"""

import logging
import os
import socket
import time
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.db.models import F, Q
from django.utils import timezone

from ..models import DispatchSession, Message

logger = logging.getLogger(__name__)

CAMPAIGN_HEARTBEAT_KEY = "campaigns:dispatch-heartbeat:{}"
"""Cache key of a campaign's last progress, for the scheduler and the admin."""

LOCK_NAMESPACE = 0x534D53  # "SMS": the first key of pg_advisory_lock(int, int)
"""The advisory locks of dispatch sessions are (LOCK_NAMESPACE, session id)."""

HEARTBEAT_SECONDS = 2.0
"""How often a dispatcher records that it is alive."""

IN_FLIGHT_REASON = (
    "In flight when its sender stopped; a delivery receipt will settle it"
)


def _uses_locks() -> bool:
    return connection.vendor == "postgresql"


class Liveness:
    """A dispatcher's proof of life: its session row, heartbeat and lock."""

    def __init__(self) -> None:
        self.session: DispatchSession | None = None
        self._next_beat = 0.0
        self._locked_on: object = None

    @property
    def session_id(self) -> int | None:
        return self.session.pk if self.session else None

    def open(self) -> int:
        if self.session is None:
            self.session = DispatchSession.objects.create(
                host=socket.gethostname()[:255], pid=os.getpid()
            )
            self._next_beat = time.monotonic() + HEARTBEAT_SECONDS
            self._lock()
        return self.session.pk

    def beat(self, *, force: bool = False) -> None:
        """Record that this dispatcher is alive (at most every HEARTBEAT_SECONDS)."""
        if self.session is None:
            return
        now = time.monotonic()
        if not force and now < self._next_beat:
            return
        self._next_beat = now + HEARTBEAT_SECONDS
        DispatchSession.objects.filter(pk=self.session.pk).update(
            beat_at=timezone.now()
        )
        self._lock()

    def close(self) -> None:
        if self.session is None:
            return
        session_id, self.session = self.session.pk, None
        locked_on, self._locked_on = self._locked_on, None
        try:
            if _uses_locks() and locked_on is connection.connection:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_advisory_unlock(%s, %s)",
                        [LOCK_NAMESPACE, session_id],
                    )
            # Its messages were recorded or given back; any left are settled as a
            # dead sender's by the next recovery.
            DispatchSession.objects.filter(pk=session_id).delete()
        except DatabaseError:
            # The database went away: the lock went with the connection, and the
            # row is pruned later. Never hide what stopped the dispatcher.
            logger.warning("dispatch session %s not closed cleanly", session_id)

    def _lock(self) -> None:
        """Hold the session's advisory lock on the connection in use now. A new
        connection (after a reconnect) takes it again."""
        if not _uses_locks() or self.session is None:
            return
        connection.ensure_connection()
        if self._locked_on is connection.connection:
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_try_advisory_lock(%s, %s)",
                [LOCK_NAMESPACE, self.session.pk],
            )
            (taken,) = cursor.fetchone()
        if taken:
            self._locked_on = connection.connection
        else:  # pragma: no cover - only if two processes shared one session id
            logger.error("dispatch session %s: lock held elsewhere", self.session.pk)


def live_sessions(ids: set[int]) -> set[int]:
    """Those of ``ids`` whose dispatcher is alive."""
    if not ids:
        return set()
    if _uses_locks():
        table = connection.ops.quote_name(DispatchSession._meta.db_table)
        sql = f"""
            SELECT s.id FROM {table} s
            WHERE s.id = ANY(%s) AND EXISTS (
                SELECT 1 FROM pg_locks l
                WHERE l.locktype = 'advisory' AND l.granted
                  AND l.database = (SELECT oid FROM pg_database
                                    WHERE datname = current_database())
                  AND l.classid = %s AND l.objsubid = 2
                  AND l.objid::bigint = s.id)
        """  # pg_locks: two-key advisory locks have objsubid 2
        with connection.cursor() as cursor:
            cursor.execute(sql, [list(ids), LOCK_NAMESPACE])
            return {row[0] for row in cursor.fetchall()}
    silent_since = timezone.now() - timedelta(seconds=settings.SMS_DISPATCHER_TIMEOUT)
    return set(
        DispatchSession.objects.filter(
            pk__in=ids, beat_at__gt=silent_since
        ).values_list("pk", flat=True)
    )


def recover_stale(*, campaign_id: int | None = None) -> int:
    """Settle the claims of dispatchers that died, and of any claim past its lease.

    Claims not yet handed to the provider go back to the queue. Those handed over are
    marked "unknown": the vendor may or may not have them, so they are never sent
    again automatically; a later delivery receipt moves them on, and an operator may
    retry the rest. Returns how many were marked unknown.
    """
    now = timezone.now()
    sending = Message.objects.filter(status=Message.Status.SENDING)
    if campaign_id is not None:
        sending = sending.filter(campaign_id=campaign_id)
    owners = set(
        sending.exclude(claimed_by=None)
        .order_by()
        .values_list("claimed_by", flat=True)
        .distinct()
    )
    dead = owners - live_sessions(owners)
    cutoff = now - timedelta(seconds=settings.SMS_SEND_LEASE_SECONDS)
    stale = sending.filter(Q(claimed_by__in=dead) | Q(status_changed_at__lt=cutoff))
    requeued = stale.filter(handed_at__isnull=True).update(
        status=Message.Status.QUEUED,
        attempts=F("attempts") - 1,
        claimed_by=None,
        status_changed_at=now,
    )
    unknown = stale.filter(handed_at__isnull=False).update(
        status=Message.Status.UNKNOWN,
        error_code="",
        error_reason=IN_FLIGHT_REASON,
        status_changed_at=now,
    )
    if dead:
        DispatchSession.objects.filter(pk__in=dead).delete()
    if requeued or unknown:
        logger.warning(
            "a sender stopped: %d claimed messages queued again, %d in flight marked unknown",
            requeued,
            unknown,
        )
    return unknown


def sessions_prune(*, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete sessions of dispatchers silent for long that own no message in flight
    (a process killed while owning nothing leaves its row behind)."""
    silent = DispatchSession.objects.filter(beat_at__lt=timezone.now() - older_than)
    busy = Message.objects.filter(
        status=Message.Status.SENDING, claimed_by__in=silent.values("pk")
    ).values("claimed_by")
    deleted, _ = silent.exclude(pk__in=busy).delete()
    return deleted


# --- Is anyone working on a campaign? --------------------------------------------


def campaign_beat(campaign_id: int) -> None:
    cache.set(
        CAMPAIGN_HEARTBEAT_KEY.format(campaign_id),
        timezone.now().timestamp(),
        timeout=300,
    )


def campaign_stalled(campaign_id: int, *, after: float = 60.0) -> bool:
    """True when no dispatcher reported progress on the campaign for ``after`` seconds."""
    last = cache.get(CAMPAIGN_HEARTBEAT_KEY.format(campaign_id))
    return last is None or timezone.now().timestamp() - last > after


WORKER_GRACE_SECONDS = 30.0
"""How long a campaign due to send may wait for a worker before the admin says
none is running: a worker looks for work every second or, busy with other campaigns,
comes round within a few slices."""


def no_worker_running(campaign_id: int, *, due_since) -> bool:
    """Whether no worker seems to be running for a campaign due to send since
    ``due_since``.

    Not within :data:`WORKER_GRACE_SECONDS` of it becoming due (a worker takes a
    moment to pick it up, and a page shown right after "Send now" must not cry
    wolf), not while a dispatcher reports progress on it, and not while any
    dispatcher is alive (a worker busy with other campaigns comes round to it).
    """
    if due_since is not None:
        waited = (timezone.now() - due_since).total_seconds()
        if waited < WORKER_GRACE_SECONDS:
            return False
    if not campaign_stalled(campaign_id):
        return False
    silent_since = timezone.now() - timedelta(seconds=settings.SMS_DISPATCHER_TIMEOUT)
    return not DispatchSession.objects.filter(beat_at__gt=silent_since).exists()
