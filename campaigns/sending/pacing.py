"""The send path's shared rate limiter and circuit breaker.

Every worker process, on every machine, that sends through one provider account must
together stay within the account's rate. ``RateLimiter`` books capacity on one shared
schedule per key (GCRA, the "virtual scheduling" form of a leaky bucket): each
reservation moves the key's *theoretical arrival time* (TAT) forward by ``cost / rate``
in one atomic operation and tells the caller how long to wait. ``CircuitBreaker`` stops
every worker from hammering a vendor that is down.

State lives in a ``Store``:

- ``RedisStore`` when the cache is Redis: a Lua script books, on Redis's own clock so
  machines whose clocks disagree still share one schedule.
- ``ModelStore`` on the ``campaigns.ThrottleState`` table (PostgreSQL or SQLite) once
  that model exists: one ``UPDATE … RETURNING`` books.
- ``CacheStore`` on any other shared Django cache (database, Memcached), serialized by
  a lock key taken with ``cache.add``.
- ``LocalStore``: a dict and a lock. It limits one process only.

``store_for()`` picks the first that fits the settings.
"""

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any, Literal, Protocol

from django.conf import settings as django_settings
from django.core.cache import BaseCache, caches
from django.db import connections, router, transaction
from django.utils import timezone

# The clock and the sleep every store and limiter use; tests replace them.
now: Callable[[], float] = time.time
sleep: Callable[[float], None] = time.sleep

type Record = dict[str, float]
"""One key's shared state: field name → number. ``tat`` belongs to ``Store.book``."""

RECORD_TTL = 86_400
"""Seconds an untouched record is kept where the store can expire it (Redis, caches)."""


class Store(Protocol):
    """Where limiters and breakers that share a key keep their state."""

    def read(self, key: str) -> tuple[Record, float]:
        """The key's record (empty if there is none) and the store's clock."""
        ...

    def book(self, key: str, interval: float) -> tuple[float, float]:
        """Atomically: ``start = max(tat, now)``; ``tat = start + interval``.

        Return ``(start, now)`` on the store's clock.
        """
        ...

    def update[T](
        self, key: str, change: Callable[[Record, float], tuple[Record | None, T]]
    ) -> T:
        """Apply ``change(record, now)`` atomically; return its result.

        ``change`` returns the new record (``None`` writes nothing) and a result. Its
        ``tat`` is never written back: only ``book`` moves the schedule.
        """
        ...


def _without_tat(record: Record) -> Record:
    return {field: value for field, value in record.items() if field != "tat"}


class LocalStore:
    """State in this process's memory.

    Only limits the threads of one process: two worker processes each get the whole
    rate. For a single ``send_campaign`` process, or when nothing shared is configured.
    """

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._lock = threading.Lock()

    def read(self, key: str) -> tuple[Record, float]:
        with self._lock:
            return dict(self._records.get(key, {})), now()

    def book(self, key: str, interval: float) -> tuple[float, float]:
        with self._lock:
            clock = now()
            record = self._records.setdefault(key, {})
            start = max(record.get("tat", 0.0), clock)
            record["tat"] = start + interval
            return start, clock

    def update[T](
        self, key: str, change: Callable[[Record, float], tuple[Record | None, T]]
    ) -> T:
        with self._lock:
            record = self._records.setdefault(key, {})
            new, result = change(dict(record), now())
            if new is not None:
                record.update(_without_tat(new))
            return result


# KEYS[1]: the record's hash. ARGV: interval, the client's clock ("" = use Redis's
# TIME), expiry in seconds. Floats go back as strings: Redis would truncate a Lua
# number reply to an integer.
_BOOK_SCRIPT = """
local clock
if ARGV[2] == '' then
  local t = redis.call('TIME')
  clock = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  clock = tonumber(ARGV[2])
end
local start = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
if start < clock then start = clock end
redis.call('HSET', KEYS[1], 'tat', string.format('%.17g', start + tonumber(ARGV[1])))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {string.format('%.17g', start), string.format('%.17g', clock)}
"""


class RedisStore:
    """State in Redis hashes, shared by every process that uses the same server.

    ``server_time=True`` reads Redis's clock, so the schedule does not depend on which
    machine's clock is right. ``server_time=False`` uses this module's ``now`` (tests
    drive it with a fake clock).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "smscampaigns:throttle:",
        server_time: bool = True,
    ) -> None:
        import redis  # only needed where Redis is configured

        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self.server_time = server_time
        self._watch_error = redis.WatchError
        self._book = self.client.register_script(_BOOK_SCRIPT)

    def _clock(self, client: Any) -> float:
        if not self.server_time:
            return now()
        seconds, microseconds = client.time()
        return seconds + microseconds / 1_000_000

    def read(self, key: str) -> tuple[Record, float]:
        name = self.prefix + key
        if not self.server_time:
            return _floats(self.client.hgetall(name)), now()
        # One round trip for both.
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(name)
        pipe.time()
        raw, (seconds, microseconds) = pipe.execute()
        return _floats(raw), seconds + microseconds / 1_000_000

    def book(self, key: str, interval: float) -> tuple[float, float]:
        clock = "" if self.server_time else repr(now())
        start, at = self._book(
            keys=[self.prefix + key], args=[repr(interval), clock, RECORD_TTL]
        )
        return float(start), float(at)

    def update[T](
        self, key: str, change: Callable[[Record, float], tuple[Record | None, T]]
    ) -> T:
        name = self.prefix + key
        with self.client.pipeline() as pipe:
            while True:
                try:
                    # Optimistic: if anyone writes the key (a booking included) before
                    # EXEC, Redis refuses the transaction and the change is redone.
                    pipe.watch(name)
                    record = _floats(pipe.hgetall(name))
                    new, result = change(record, self._clock(pipe))
                    if new is None:
                        pipe.unwatch()
                        return result
                    pipe.multi()
                    fields = {f: repr(v) for f, v in _without_tat(new).items()}
                    if fields:
                        pipe.hset(name, mapping=fields)
                    pipe.expire(name, RECORD_TTL)
                    pipe.execute()
                    return result
                except self._watch_error:
                    continue


def _floats(raw: dict[str, str]) -> Record:
    return {field: float(value) for field, value in raw.items()}


class CacheStore:
    """State in a shared Django cache (``DatabaseCache``, Memcached…).

    Django's cache has no atomic read-modify-write, so each operation holds a lock key
    taken with ``cache.add`` (atomic on every shared backend). A holder that dies
    leaves the lock to expire after ``LOCK_TIMEOUT`` seconds. Four cache round trips per
    booking: prefer ``RedisStore`` or ``ModelStore`` where they are available.
    """

    LOCK_TIMEOUT = 5

    def __init__(self, cache: BaseCache, *, prefix: str = "throttle:") -> None:
        self.cache = cache
        self.prefix = prefix

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        lock = f"{self.prefix}{key}:lock"
        pause = 0.001
        while not self.cache.add(lock, 1, timeout=self.LOCK_TIMEOUT):
            # Real time, not the module's sleep: this waits for another process.
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        try:
            yield
        finally:
            self.cache.delete(lock)

    def _get(self, key: str) -> Record:
        return dict(self.cache.get(self.prefix + key) or {})

    def _set(self, key: str, record: Record) -> None:
        self.cache.set(self.prefix + key, record, timeout=RECORD_TTL)

    def read(self, key: str) -> tuple[Record, float]:
        return self._get(key), now()

    def book(self, key: str, interval: float) -> tuple[float, float]:
        with self._locked(key):
            record, clock = self._get(key), now()
            start = max(record.get("tat", 0.0), clock)
            record["tat"] = start + interval
            self._set(key, record)
            return start, clock

    def update[T](
        self, key: str, change: Callable[[Record, float], tuple[Record | None, T]]
    ) -> T:
        with self._locked(key):
            record = self._get(key)
            new, result = change(dict(record), now())
            if new is not None:
                record.update(_without_tat(new))
                self._set(key, record)
            return result


class ModelStore:
    """State in ``campaigns.ThrottleState`` rows (PostgreSQL, or SQLite ≥ 3.35).

    A booking is one statement, atomic on both databases::

        UPDATE campaigns_throttlestate
           SET tat = CASE WHEN tat > %(now)s THEN tat ELSE %(now)s END + %(interval)s,
               updated_at = %(updated_at)s
         WHERE key = %(key)s
        RETURNING tat

    Other fields live in the row's ``state`` JSON and change under
    ``SELECT … FOR UPDATE`` (SQLite: the project's IMMEDIATE transactions). Call the
    limiter outside long transactions: a booking inside one keeps the row locked, and
    every other worker waiting, until that transaction ends.

    The clock is this machine's: keep the workers' clocks in sync (NTP).
    """

    def __init__(self, model: Any = None) -> None:
        if model is None:
            model = throttle_state_model()
            if model is None:
                raise LookupError(
                    "ModelStore needs the campaigns.ThrottleState model and its "
                    "migration; use RedisStore, CacheStore or LocalStore until then."
                )
        self.model = model

    @property
    def _manager(self) -> Any:
        return self.model._default_manager.db_manager(router.db_for_write(self.model))

    def _ensure_row(self, key: str) -> None:
        # INSERT … ON CONFLICT DO NOTHING: two workers creating the row at once is fine.
        self._manager.bulk_create([self.model(key=key)], ignore_conflicts=True)

    def read(self, key: str) -> tuple[Record, float]:
        row = self._manager.filter(key=key).values_list("tat", "state").first()
        if row is None:
            return {}, now()
        tat, state = row
        return {**state, "tat": tat}, now()

    def book(self, key: str, interval: float) -> tuple[float, float]:
        alias = router.db_for_write(self.model)
        connection = connections[alias]
        quote = connection.ops.quote_name
        opts = self.model._meta
        tat = quote(opts.get_field("tat").column)
        sql = (
            f"UPDATE {quote(opts.db_table)} "
            f"SET {tat} = CASE WHEN {tat} > %s THEN {tat} ELSE %s END + %s, "
            f"{quote(opts.get_field('updated_at').column)} = %s "
            f"WHERE {quote(opts.get_field('key').column)} = %s RETURNING {tat}"
        )
        updated_at = connection.ops.adapt_datetimefield_value(timezone.now())
        for _ in range(2):
            clock = now()
            with connection.cursor() as cursor:
                cursor.execute(sql, [clock, clock, interval, updated_at, key])
                row = cursor.fetchone()
            if row is not None:
                # Subtracting gives back max(tat, now) up to float rounding.
                return row[0] - interval, clock
            self._ensure_row(key)
        raise RuntimeError(f"ThrottleState row {key!r} vanished while booking")

    def update[T](
        self, key: str, change: Callable[[Record, float], tuple[Record | None, T]]
    ) -> T:
        alias = router.db_for_write(self.model)
        self._ensure_row(key)
        with transaction.atomic(using=alias):
            row = self._manager.select_for_update().get(key=key)
            new, result = change({**row.state, "tat": row.tat}, now())
            if new is not None:
                self._manager.filter(pk=row.pk).update(
                    state={**row.state, **_without_tat(new)},
                    updated_at=timezone.now(),
                )
            return result


def throttle_state_model() -> Any:
    """``campaigns.ThrottleState`` if that model exists, else None."""
    from django.apps import apps

    try:
        return apps.get_model("campaigns", "ThrottleState")
    except LookupError:
        return None


_local_store = LocalStore()

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# Caches that cannot hold a shared lock: per process (locmem), nowhere (dummy), or
# with an add() that checks then writes, so two processes can both take the lock
# (file-based).
_UNSHARED_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
    "django.core.cache.backends.filebased.FileBasedCache",
)


@cache
def _redis_store(url: str) -> RedisStore:
    # One connection pool per URL for the whole process.
    return RedisStore(url)


def store_for(settings: Any = None) -> Store:
    """The store that shares state as widely as the settings allow.

    Redis when the default cache is Redis; else ``ThrottleState`` rows when that model
    exists; else the default cache when it is shared; else this process's memory.
    """
    settings = settings or django_settings
    default = settings.CACHES.get("default", {})
    location = default.get("LOCATION", "")
    if isinstance(location, (list, tuple)):
        location = location[0] if location else ""
    if isinstance(location, str) and location.startswith(_REDIS_SCHEMES):
        return _redis_store(location)
    if throttle_state_model() is not None:
        return ModelStore()
    if default and default.get("BACKEND") not in _UNSHARED_CACHES:
        return CacheStore(caches["default"])
    return _local_store


# --- Rate limiter -------------------------------------------------------------------

RECOVERY_STEP = 1.25
"""After a slow-down's hold, the rate grows by this factor once per period."""
MIN_FACTOR = 0.01
"""Repeated slow-downs never take the rate below this share of the configured one."""
SETTLE_SECONDS = 1.0
"""How long replies to requests booked at the old rate take to come back."""


def _rate_factor(record: Record, clock: float) -> float:
    factor = record.get("factor", 1.0)
    if factor >= 1.0:
        return 1.0
    slowed_until = record.get("slowed_until", 0.0)
    if clock < slowed_until:
        return factor
    steps = 1 + math.floor((clock - slowed_until) / record.get("period", 30.0))
    # MIN_FACTOR * 1.25**21 > 1: past that, the recovery is complete anyway.
    if steps > 64:
        return 1.0
    return min(1.0, factor * RECOVERY_STEP**steps)


class RateLimiter:
    """A shared schedule: ``rate`` units per second for everyone using ``key``.

    A unit is one SMS segment: a three-segment message costs 3. ``burst`` units may go
    at once after an idle spell. A reservation costing more than ``burst`` goes as soon
    as the bucket is full, and the reservations after it wait for its cost.

    Reserving books the capacity for good: a caller that reserved must then send (or
    accept that the capacity is lost); there are no refunds.
    """

    def __init__(
        self, key: str, rate: float, burst: float = 1.0, store: Store | None = None
    ) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a positive number, got {rate!r}")
        if not burst >= 1 or math.isinf(burst):
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.key = key
        self.rate = float(rate)
        self.burst = float(burst)
        self.store: Store = store if store is not None else store_for()
        self._store_key = f"limiter:{key}"

    def reserve(self, cost: float = 1.0) -> float:
        """Book ``cost`` units; return the seconds to wait before sending (0: now)."""
        if not cost >= 0 or math.isinf(cost):
            raise ValueError(f"cost must be a non-negative number, got {cost!r}")
        if cost == 0:
            return 0.0
        # Reading the rate and booking are two steps: a slow-down that lands between
        # them only means this one reservation was booked just before it.
        record, clock = self.store.read(self._store_key)
        rate = self.rate * _rate_factor(record, clock)
        start, clock = self.store.book(self._store_key, cost / rate)
        # The bucket holds burst units, one refilled every 1/rate seconds: cost units
        # are there once the schedule is within (burst - cost) / rate of now.
        headroom = (self.burst - min(cost, self.burst)) / rate
        return max(0.0, start - headroom - clock)

    def acquire(self, cost: float = 1.0) -> float:
        """Reserve ``cost`` units and sleep until they may be sent; return the wait."""
        wait = self.reserve(cost)
        if wait > 0:
            sleep(wait)
        return wait

    def slow_down(self, factor: float = 0.5, for_seconds: float = 30.0) -> float:
        """Lower the rate for every limiter on this key, after the vendor said 429.

        The rate is multiplied by ``factor`` and held there ``for_seconds``, then grows
        by ``RECOVERY_STEP`` every ``for_seconds`` until it is back to the configured
        rate. Throttling replies that arrive within ``SETTLE_SECONDS`` of the last
        already-booked slot answer requests made at the old rate, so they do not
        lower it again. Return the effective rate afterwards.
        """
        if not 0 < factor <= 1:
            raise ValueError(f"factor must be in (0, 1], got {factor!r}")
        if not for_seconds > 0:
            raise ValueError(f"for_seconds must be positive, got {for_seconds!r}")

        def lower(record: Record, clock: float) -> tuple[Record | None, float]:
            current = _rate_factor(record, clock)
            if clock < record.get("settle_until", 0.0):
                return None, current
            lowered = max(MIN_FACTOR, current * factor)
            return {
                "factor": lowered,
                "slowed_until": clock + for_seconds,
                "period": for_seconds,
                "settle_until": max(record.get("tat", 0.0), clock) + SETTLE_SECONDS,
            }, lowered

        return self.rate * self.store.update(self._store_key, lower)

    def effective_rate(self) -> float:
        """Units per second this key allows now: the configured rate unless slowed."""
        record, clock = self.store.read(self._store_key)
        return self.rate * _rate_factor(record, clock)


# --- Circuit breaker ----------------------------------------------------------------

type CircuitState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Stops sending to a vendor that keeps failing, for every worker sharing ``key``.

    ``failure_threshold`` consecutive transient failures (5xx, timeouts, connection
    errors; not 429, which is throttling and belongs to ``RateLimiter.slow_down``)
    open the circuit: ``allow()`` is False for ``reset_after`` seconds. Then it is
    half-open: ``allow()`` lets one trial batch through per ``reset_after`` seconds. A
    failure while half-open opens it again; any success closes it.
    """

    def __init__(
        self,
        key: str,
        failure_threshold: int = 5,
        reset_after: float = 30.0,
        store: Store | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(
                f"failure_threshold must be at least 1, got {failure_threshold!r}"
            )
        if not reset_after > 0:
            raise ValueError(f"reset_after must be positive, got {reset_after!r}")
        self.key = key
        self.failure_threshold = failure_threshold
        self.reset_after = float(reset_after)
        self.store: Store = store if store is not None else store_for()
        self._store_key = f"circuit:{key}"

    def _state(self, record: Record, clock: float) -> CircuitState:
        opened_at = record.get("opened_at", 0.0)
        if not opened_at:
            return "closed"
        return "open" if clock < opened_at + self.reset_after else "half_open"

    def state(self) -> CircuitState:
        return self._state(*self.store.read(self._store_key))

    @property
    def opened_at(self) -> float | None:
        """When the circuit last opened (store clock), or None while it is closed."""
        record, _ = self.store.read(self._store_key)
        return record.get("opened_at") or None

    def allow(self) -> bool:
        """May a batch be sent now? While half-open, True for one caller per period."""
        record, clock = self.store.read(self._store_key)
        state = self._state(record, clock)
        if state != "half_open":
            return state == "closed"

        def take_trial(record: Record, clock: float) -> tuple[Record | None, bool]:
            if self._state(record, clock) != "half_open":
                return None, self._state(record, clock) == "closed"
            last_trial = record.get("trial_at", 0.0)
            if last_trial and clock < last_trial + self.reset_after:
                return None, False  # another worker's trial is under way
            return {**record, "trial_at": clock}, True

        return self.store.update(self._store_key, take_trial)

    def record_failure(self) -> CircuitState:
        """Count a transient failure; return the state after it."""

        def fail(record: Record, clock: float) -> tuple[Record, CircuitState]:
            failures = record.get("failures", 0.0) + 1
            state = self._state(record, clock)
            if state == "half_open" or (
                state == "closed" and failures >= self.failure_threshold
            ):
                # Failures while open come from batches sent before it opened: they
                # are counted but do not push the reopening back.
                return {
                    "failures": failures,
                    "opened_at": clock,
                    "trial_at": 0.0,
                }, "open"
            return {**record, "failures": failures}, state

        return self.store.update(self._store_key, fail)

    def record_success(self) -> None:
        """The vendor accepted a request: close the circuit and forget failures."""
        record, _ = self.store.read(self._store_key)
        # Most successes find nothing to reset: skip the write.
        if not record.get("failures") and not record.get("opened_at"):
            return

        def close(record: Record, clock: float) -> tuple[Record, None]:
            return {"failures": 0.0, "opened_at": 0.0, "trial_at": 0.0}, None

        self.store.update(self._store_key, close)
