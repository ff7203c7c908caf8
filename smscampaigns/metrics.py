"""Counters and histograms behind ``/metrics``, kept in the database.

The code that owns each event adds to its figures: ``record_batch`` for send
results, the send pipeline's threads for each vendor request's duration (held in the
process until their batch is recorded: those threads never touch the database), the
webhook view for every callback, the scheduler for its last tick. The scrape
(``smscampaigns/metrics_view.py``) adds them up and reads the gauges (queues,
dispatchers) from the database as they are then.

Why the database, not prometheus-client's in-process registry or its multiprocess
mode: gunicorn workers, ``run_worker`` and Celery workers are separate processes, on
several machines with Celery. A registry per process would show one gunicorn worker's
share at each scrape; multiprocess mode (memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR``) adds up the processes of one machine only, and needs the
directory wiped between runs by whatever starts them all. A row per figure and
process shard is one small upsert per recorded batch or callback, and every scrape of
any web process sees every process on every machine.

Recording never fails what it measures: a database error is logged and the figure
lost.
"""

import atexit
import contextlib
import json
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from .models import MetricValue

logger = logging.getLogger(__name__)

SHARDS = 8
"""Rows per figure: each process adds to the one of its pid, so concurrent webhooks in
several gunicorn workers do not wait on one row lock."""

SEND_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the send-duration histogram: one request to a vendor."""
WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds (seconds) of the webhook-duration histogram."""

MESSAGES = "sms_messages_total"
THROTTLED = "sms_provider_throttled_total"
SEND_DURATION = "sms_send_duration_seconds"
WEBHOOK_DURATION = "sms_webhook_duration_seconds"
SCHEDULER_TICK = "sms_scheduler_last_tick_timestamp_seconds"

HISTOGRAMS = {SEND_DURATION: SEND_BUCKETS, WEBHOOK_DURATION: WEBHOOK_BUCKETS}
GAUGES = {SCHEDULER_TICK}
"""Figures set (the latest value wins) rather than added to."""

# Send durations measured in the sending threads, written with the next recorded batch.
_pending_durations: list[tuple[str, float]] = []
_pending_lock = threading.Lock()
# The scheduler ticks every second in run_worker: its time is written at most this often.
TICK_WRITE_SECONDS = 5.0
_tick_written_at = 0.0


def _labels(labels: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(labels.items())), separators=(",", ":"))


def _bucket(value: float, bounds: Iterable[float]) -> str:
    for bound in bounds:
        if value <= bound:
            return repr(float(bound))
    return "+Inf"


class Increments:
    """Figures to add, gathered and then written in one statement."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], float] = defaultdict(float)

    def add(self, name: str, amount: float = 1.0, **labels: str) -> None:
        if amount:
            self.values[(name, _labels(labels))] += amount

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        """One observation of a histogram: its bucket (not cumulative: the scrape
        adds them up) and its sum."""
        bucket = _bucket(seconds, HISTOGRAMS[name])
        self.values[(name, _labels({**labels, "le": bucket}))] += 1
        self.values[(name + "_sum", _labels(labels))] += seconds

    def write(self) -> None:
        if not self.values:
            return
        # Always the same order: two processes adding to the same rows never
        # deadlock on PostgreSQL.
        rows = sorted(self.values.items())
        _upsert(
            [(name, labels, value) for (name, labels), value in rows],
            replace=False,
        )
        self.values.clear()


def _upsert(rows: list[tuple[str, str, float]], *, replace: bool) -> None:
    qn = connection.ops.quote_name
    table = qn(MetricValue._meta.db_table)
    name, labels, shard, value = (qn(c) for c in ("name", "labels", "shard", "value"))
    new = f"EXCLUDED.{value}" if replace else f"{table}.{value} + EXCLUDED.{value}"
    sql = (
        f"INSERT INTO {table} ({name}, {labels}, {shard}, {value}) VALUES "
        + ", ".join(["(%s, %s, %s, %s)"] * len(rows))
        + f" ON CONFLICT ({name}, {labels}, {shard}) DO UPDATE SET {value} = {new}"
    )  # identifiers come from the model; every value is a parameter
    number = 0 if replace else os.getpid() % SHARDS
    params = [v for row in rows for v in (row[0], row[1], number, row[2])]
    # In a transaction of its own, PostgreSQL need not wait for the disk at commit:
    # a crash of the server may lose the last figures, never anyone's data, and a
    # webhook does not pay ~4 ms of flushing for them. Inside a caller's transaction
    # its commit keeps its own setting.
    own = not connection.in_atomic_block
    try:
        # A savepoint inside a caller's transaction: a failure here leaves it usable.
        with transaction.atomic(), connection.cursor() as cursor:
            if own and connection.vendor == "postgresql":
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
            cursor.execute(sql, params)
    except DatabaseError as exc:
        logger.warning("metrics not recorded: %s", exc)


# --- What the send path records ---------------------------------------------------


def send_duration_observe(provider: str, seconds: float) -> None:
    """One request to a vendor took ``seconds`` (called from a sending thread: kept in
    the process until the next recorded batch writes it)."""
    with _pending_lock:
        _pending_durations.append((provider, seconds))


def sends_record(
    *,
    provider: str,
    accepted: int = 0,
    failed: int = 0,
    unknown: int = 0,
    retried: int = 0,
    throttled: int = 0,
) -> None:
    """Add a recorded batch's outcome, and the send durations measured since."""
    global _pending_durations
    increments = Increments()
    for outcome, count in (
        ("accepted", accepted),
        ("failed", failed),
        ("unknown", unknown),
        ("retried", retried),
    ):
        increments.add(MESSAGES, count, provider=provider, outcome=outcome)
    increments.add(THROTTLED, throttled, provider=provider)
    with _pending_lock:
        durations, _pending_durations = _pending_durations, []
    for alias, seconds in durations:
        increments.observe(SEND_DURATION, seconds, provider=alias)
    increments.write()


# --- Webhooks ------------------------------------------------------------------------


_webhook_increments = Increments()
_webhook_written_at = 0.0
_webhook_lock = threading.Lock()


def webhook_observe(*, vendor: str, kind: str, outcome: str, seconds: float) -> None:
    """One callback took ``seconds``. Kept in the process and written with the first
    callback a second or more after the last write: during a storm of callbacks a
    write per callback would be a round trip and a commit each, as much as the
    callback itself. A process's last second shows at its next callback, its exit
    or a scrape it answers (``METRICS_WRITE_SECONDS``)."""
    global _webhook_written_at
    with _webhook_lock:
        _webhook_increments.observe(
            WEBHOOK_DURATION, seconds, vendor=vendor, kind=kind, outcome=outcome
        )
        now = time.monotonic()
        if now - _webhook_written_at < settings.METRICS_WRITE_SECONDS:
            return
        _webhook_written_at = now
        _webhook_increments.write()


def webhook_observations_write() -> None:
    """Write the callback durations this process holds."""
    with _webhook_lock:
        if _webhook_increments.values:
            _webhook_increments.write()


@atexit.register
def _write_at_exit() -> None:
    # The process is going: nothing to tell, nothing to fail.
    with contextlib.suppress(Exception):
        webhook_observations_write()


# --- Worker heartbeats ---------------------------------------------------------------


def scheduler_tick_record() -> None:
    """The scheduler (``run_worker``'s rounds, Celery beat's task) ran now."""
    global _tick_written_at
    now = time.monotonic()
    if now - _tick_written_at < TICK_WRITE_SECONDS:
        return
    _tick_written_at = now
    _upsert([(SCHEDULER_TICK, _labels({}), time.time())], replace=True)


# --- Reading ---------------------------------------------------------------------------


def stored_values() -> dict[str, dict[str, float]]:
    """Every stored figure, shards added up (gauges: the latest): name → labels → value."""
    figures: dict[str, dict[str, float]] = defaultdict(dict)
    rows = MetricValue.objects.order_by().values_list("name", "labels", "value")
    for name, labels, value in rows:
        current = figures[name].get(labels)
        if current is None:
            figures[name][labels] = value
        elif name in GAUGES:
            figures[name][labels] = max(current, value)
        else:
            figures[name][labels] = current + value
    return figures
