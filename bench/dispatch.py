"""Benchmark: dispatching a launched campaign through the simulator, as fast as it goes.

Launches a campaign of M messages (default 100,000) and times ``Dispatcher.run()``
through two simulator accounts with no latency and a rate far above what the code can
reach, so the figure is the pipeline's own ceiling (claim, render, send, record):

- ``bench_bulk``: up to 1,000 recipients per request (like Sinch or Plivo);
  target >= 10,000 messages/s.
- ``bench_single``: one recipient per request (like Vonage), sent with the
  dispatcher's thread pool (``--concurrency``); target >= 1,000 messages/s.

Delivery reports are not delivered: the simulator keeps them in memory (two per
message) because no reporter thread runs. Scheduling them is still paid for.

    .venv/bin/python bench/dispatch.py [--messages M] [--database-url URL]
        [--rate R] [--batch-size B] [--concurrency C] [--cache-url URL]
        [--only bulk|single] [--phases] [--profile]
"""

import argparse
import cProfile
import pstats
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from functools import wraps
from typing import Any

from common import (
    add_common_arguments,
    add_to_list,
    create_contacts,
    machine_load,
    phase,
    settle_database,
    setup_django,
    verdict,
)

SIMULATOR = "providers.backends.simulator.SmsBackend"
# Zero latency, nothing refused, every message delivered, reports due at once but never
# delivered (no reporter thread): the simulator costs as little as it can.
QUIET = {
    "latency": 0,
    "report_delay": 0,
    "background_reports": False,
    "delivered_rate": 1.0,
    "throttle_rate": 0,
    "server_error_rate": 0,
    "timeout_rate": 0,
    "max_rate": None,
    "seed": 1,
}
# Whitespace and runs of placeholders, collapsed so one statement shape is one line.
SQL_NOISE = re.compile(r"(?:\s|%s,?)+")
SQL_SHAPE_LENGTH = 110
MODES = {
    "bulk": ("bench_bulk", 1000, 10_000.0),
    "single": ("bench_single", 1, 1_000.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument(
        "--rate",
        type=float,
        default=1e9,
        help="rate limit passed to the dispatcher (messages/s); high, so the limiter "
        "is not the bottleneck",
    )
    parser.add_argument(
        "--batch-size", type=int, help="default: SMS_DISPATCH_BATCH_SIZE"
    )
    parser.add_argument(
        "--concurrency", type=int, help="default: SMS_DISPATCH_CONCURRENCY"
    )
    parser.add_argument(
        "--cache-url",
        help="CACHE_URL for the run, e.g. redis://127.0.0.1:6379/15 (the rate limiter "
        "then keeps its schedule in Redis instead of ThrottleState rows)",
    )
    parser.add_argument("--only", choices=sorted(MODES))
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds allowed per run"
    )
    parser.add_argument(
        "--phases",
        action="store_true",
        help="time the dispatcher's phases (adds a little overhead)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile each run (the main thread only; pool threads are not seen)",
    )
    add_common_arguments(parser)
    args = parser.parse_args()

    print(f"Setting up {args.messages:,} contacts in {args.database_url}")
    with phase("migrate and empty the tables"):
        print(f"  {machine_load()}")
        setup_django(args.database_url, cache_url=args.cache_url)

    from django.conf import settings
    from django.test import override_settings

    from campaigns.sending.pacing import store_for

    with phase("contacts"):
        create_contacts(args.messages)
    with phase("list membership"):
        audience, _ = add_to_list("Bench: everyone")

    providers = {
        alias: {
            "BACKEND": SIMULATOR,
            "OPTIONS": {**QUIET, "max_recipients": max_recipients},
        }
        for alias, max_recipients, _ in MODES.values()
    }
    batch_size = args.batch_size or settings.SMS_DISPATCH_BATCH_SIZE
    concurrency = args.concurrency or settings.SMS_DISPATCH_CONCURRENCY
    print(
        f"  batch size {batch_size}, concurrency {concurrency}, rate {args.rate:g}/s, "
        f"limiter store {type(store_for()).__name__}"
    )
    results = {}
    with override_settings(SMS_PROVIDERS={**settings.SMS_PROVIDERS, **providers}):
        for mode in [args.only] if args.only else list(MODES):
            alias, _, target = MODES[mode]
            results[mode] = _run(
                mode, alias, target, audience, args, batch_size, concurrency
            )

    print()
    print("Summary")
    print(f"  ({machine_load()} at the end)")
    for mode, (rate, target) in results.items():
        print(
            f"  {mode:<7} {rate:>10,.0f} messages/s (target >= {target:,.0f}: "
            f"{verdict(rate, target, higher_is_better=True)})"
        )


def _run(
    mode: str,
    alias: str,
    target: float,
    audience: Any,
    args: argparse.Namespace,
    batch_size: int,
    concurrency: int,
) -> tuple[float, float]:
    from campaigns.models import Campaign
    from campaigns.sending.dispatch import Dispatcher
    from campaigns.sending.launch import campaign_launch
    from providers import get_provider

    print()
    print(
        f"{mode}: {alias} ({get_provider(alias).max_recipients_per_request} per request)"
    )
    campaign = Campaign.objects.create(
        name=f"Bench dispatch {mode}",
        body="Hi {first_name|there}, 20% off this weekend. Reply STOP to opt out.",
        provider=alias,
    )
    campaign.lists.set([audience])
    with phase("launch"):
        queued = campaign_launch(campaign=campaign)
    with phase("ANALYZE and CHECKPOINT"):
        settle_database()

    dispatcher = Dispatcher(
        campaign.pk, batch_size=batch_size, rate=args.rate, concurrency=concurrency
    )
    timings = PhaseTimings() if args.phases else None
    if timings is not None:
        timings.instrument(get_provider(alias))
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    step = dispatcher.run(deadline=time.monotonic() + args.timeout)
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    if timings is not None:
        timings.restore()

    campaign.refresh_from_db()
    stats = dispatcher.stats
    rate = stats.submitted / seconds
    counts = {s: n for s, n in campaign.status_counts().items() if n}
    print(f"  queued:     {queued:,}")
    print(
        f"  submitted:  {stats.submitted:,} in {stats.batches:,} batches "
        f"({stats.failed:,} failed, {stats.retried:,} retried)"
    )
    print(f"  time:       {seconds:.2f} s")
    print(
        f"  rate:       {rate:,.0f} messages/s (target >= {target:,.0f}: "
        f"{verdict(rate, target, higher_is_better=True)})"
    )
    print(f"  campaign:   {campaign.status} ({step.state}); messages {counts}")
    print(f"  reports held by the simulator: {get_provider(alias).pending_count():,}")
    if timings is not None:
        timings.report(seconds)
    if profiler is not None:
        print("  cProfile, main thread, top 25 by own time:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return rate, target


class PhaseTimings:
    """Wall time spent in the dispatcher's phases, by wrapping them for one run.

    Calls made from the send thread pool overlap, so their totals are thread-seconds
    and may exceed the run's wall time. SQL statements of the main thread's connection
    are timed too (client-side query preparation included), grouped by their start.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.sql_seconds: dict[str, float] = defaultdict(float)
        self.sql_calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._restore: list[Callable[[], None]] = []

    def instrument(self, backend: Any) -> None:
        from django.db import connection

        from campaigns.sending import dispatch, recording
        from campaigns.sending.pacing import CircuitBreaker, RateLimiter

        connection.execute_wrappers.append(self._time_sql)
        self._restore.append(lambda: connection.execute_wrappers.remove(self._time_sql))

        self._wrap(dispatch.Dispatcher, "step", "step (everything)")
        self._wrap(
            dispatch.Dispatcher, "_claim", "claim (SELECT … SKIP LOCKED, UPDATEs)"
        )
        self._wrap(dispatch.Dispatcher, "_send", "send (render, send, record)")
        self._wrap(dispatch, "record_batch", "  record_batch")
        self._wrap(recording, "_store_rendered", "    _store_rendered (UPDATE … FROM)")
        self._wrap(backend, "send_batch", "  backend.send_batch [threads]")
        self._wrap(RateLimiter, "acquire", "  RateLimiter.acquire [threads]")
        self._wrap(CircuitBreaker, "allow", "circuit allow")
        self._wrap(CircuitBreaker, "record_success", "circuit record_success")
        self._wrap(dispatch, "delivery_events_apply_pending", "apply pending receipts")

    def _wrap(self, owner: Any, name: str, label: str) -> None:
        original = owner.__dict__[name] if name in vars(owner) else None
        function = getattr(owner, name)

        @wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                with self._lock:
                    self.seconds[label] += elapsed
                    self.calls[label] += 1

        setattr(owner, name, timed)
        self.seconds[label] = 0.0  # report in the order instrumented
        if original is None:
            self._restore.append(lambda: delattr(owner, name))
        else:
            self._restore.append(lambda: setattr(owner, name, original))

    def _time_sql(
        self, execute: Callable, sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            shape = SQL_NOISE.sub(" ", sql).strip()[:SQL_SHAPE_LENGTH]
            self.sql_seconds[shape] += time.perf_counter() - started
            self.sql_calls[shape] += 1

    def restore(self) -> None:
        for undo in reversed(self._restore):
            undo()
        self._restore.clear()

    def report(self, wall: float) -> None:
        print("  phases (seconds, calls, share of the run's wall time):")
        for label, seconds in self.seconds.items():
            if not self.calls[label]:
                continue
            print(
                f"    {label:<42} {seconds:8.2f} s {self.calls[label]:>9,} "
                f"{100 * seconds / wall:6.1f} %"
            )
        print("  SQL of the main thread, slowest first (seconds, calls):")
        ranked = sorted(self.sql_seconds.items(), key=lambda item: -item[1])
        for shape, seconds in ranked[:12]:
            print(f"    {seconds:7.2f} s {self.sql_calls[shape]:>6,}  {shape}")


if __name__ == "__main__":
    main()
