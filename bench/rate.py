"""Benchmark: how closely the shared rate limiter holds a configured rate.

For each rate (default 30/s and 300/s) and each number of worker processes (default 1
and 3), the script launches a campaign on the simulator provider, configured as a
vendor that refuses with 429 anything beyond that rate in a calendar second
(``SIMULATOR_MAX_RATE``, window shared in Redis), and paces the senders to that same
rate (``SIMULATOR_RATE``). The workers are separate OS processes running
``Dispatcher.run()``; they share PostgreSQL and Redis (the limiter's schedule). After a
warm-up, it counts messages per second for ``--seconds`` seconds, two ways:

- database: ``Message.submitted_at`` per second (stamped when a claimed batch is
  recorded, so with large batches it trails the send and arrives in lumps);
- vendor: what the simulator accepted per calendar second (its shared Redis counters,
  read back every half second).

Targets: mean within ±5 % of the configured rate, and zero 429s.

    .venv/bin/python bench/rate.py [--seconds 60] [--rates 30,300] [--workers 1,3]
        [--batch-size N [--round-batch]] [--database-url URL] [--cache-url URL]

Run alone (``flock /tmp/bench.lock …``): other load on the machine shows up as jitter.
"""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smscampaigns_bench_rate"
DEFAULT_CACHE_URL = "redis://127.0.0.1:6379/12"
TARGET_ERROR = 0.05
ALIAS = "simulator"
# The simulator's per-second counter, as Django's Redis cache names it (version 1, no
# KEY_PREFIX): see SmsBackend._take_shared.
VENDOR_KEY = ":1:providers:simulator:" + ALIAS + ":rate:{}"
LIMITER_KEY = "smscampaigns:throttle:limiter:provider:" + ALIAS


@dataclass
class Scenario:
    rate: float
    workers: int
    batch_size: int
    db_counts: Counter[int] = field(default_factory=Counter)
    vendor_counts: dict[int, int] = field(default_factory=dict)
    window: range = range(0)
    throttled_requests: int = 0
    throttled_messages: int = 0
    requests: int = 0
    retried_messages: int = 0
    slowed_factor: float = 1.0
    worker_errors: list[str] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument(
        "--seconds", type=int, default=60, help="measured seconds (default 60)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="seconds after starting the workers that are not measured (default 5)",
    )
    parser.add_argument("--rates", default="30,300", help="default 30,300")
    parser.add_argument("--workers", default="1,3", help="default 1,3")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="messages a dispatcher claims at a time; 0 (default): one second's worth "
        "at the configured rate, so submitted_at is within a second of the send. "
        "The project's default is SMS_DISPATCH_BATCH_SIZE=1000",
    )
    parser.add_argument(
        "--round-batch",
        action="store_true",
        help="round --batch-size down to a multiple of the rate, so every request "
        "carries exactly one second's allowance (the fix this bench suggests)",
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--cache-url", default=DEFAULT_CACHE_URL)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stop-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker is not None:
        run_worker(args.worker, args.stop_at)
        return

    rates = [float(r) for r in args.rates.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    setup(args.database_url, args.cache_url)
    # Enough recipients that no scenario runs dry before its window closes.
    tail = 10 + max(worker_counts) * 2
    contacts = int(max(rates) * (args.warmup + args.seconds + tail) * 1.2)
    contact_list = create_audience(contacts)

    results = []
    for rate in rates:
        for workers in worker_counts:
            scenario = Scenario(
                rate=rate,
                workers=workers,
                batch_size=batch_size(args.batch_size, rate, args.round_batch),
            )
            run_scenario(scenario, contact_list, args)
            print_scenario(scenario)
            results.append(scenario)
    print_summary(results, args)


def batch_size(requested: int, rate: float, round_down: bool) -> int:
    per_second = max(1, int(rate))
    if not requested:
        return per_second
    if round_down:
        return max(per_second, requested // per_second * per_second)
    return requested


# --- Setup ---------------------------------------------------------------------------


def setup(database_url: str, cache_url: str) -> None:
    """Migrate and empty the bench database (bench/common.py) and empty the bench's
    Redis database, which must be a dedicated one."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import setup_django

    print(f"Database {database_url}, cache {cache_url}")
    setup_django(database_url, cache_url=cache_url)
    redis_client(cache_url).flushdb()


def redis_client(url: str):
    import redis

    return redis.Redis.from_url(url, decode_responses=True)


def create_audience(count: int):
    from common import add_to_list, create_contacts, settle_database

    create_contacts(count)
    contact_list, size = add_to_list("Bench: rate")
    settle_database()
    print(f"  {size:,} contacts in one list")
    return contact_list


# --- One scenario -------------------------------------------------------------------


def run_scenario(scenario: Scenario, contact_list, args: argparse.Namespace) -> None:
    from campaigns.models import Campaign
    from campaigns.sending.launch import campaign_launch

    print(
        f"\n{scenario.rate:g}/s with {scenario.workers} worker(s), "
        f"batch {scenario.batch_size}"
    )
    campaign = Campaign.objects.create(
        name=f"Bench rate {scenario.rate:g}/s x{scenario.workers}",
        body="Hi {first_name|there}, 20% off this weekend. Reply STOP to opt out.",
        provider=ALIAS,
    )
    campaign.lists.set([contact_list])
    campaign_launch(campaign=campaign)
    # A fresh schedule: the previous scenario's booked slots and slow-downs must not
    # carry over.
    cache = redis_client(args.cache_url)
    cache.flushdb()

    env = {
        **os.environ,
        "SIMULATOR_RATE": f"{scenario.rate:g}",
        "SIMULATOR_MAX_RATE": f"{scenario.rate:g}",
        "SIMULATOR_SHARED_LIMIT": "true",
        "SIMULATOR_LATENCY": "0",
        "SIMULATOR_BACKGROUND_REPORTS": "false",
        "SIMULATOR_THROTTLE_RATE": "0",
        "SIMULATOR_SERVER_ERROR_RATE": "0",
        "SIMULATOR_TIMEOUT_RATE": "0",
        "SMS_DISPATCH_BATCH_SIZE": str(scenario.batch_size),
    }
    started = time.time()
    first = math.ceil(started + args.warmup)
    scenario.window = range(first, first + args.seconds)
    stop_at = scenario.window.stop + 1.0
    sampler = VendorSampler(cache, started)
    sampler.start()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                str(campaign.pk),
                "--stop-at",
                repr(stop_at),
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(scenario.workers)
    ]
    # A worker stops between batches: the last one may run a batch's length over.
    batch_seconds = scenario.batch_size / scenario.rate * scenario.workers
    grace = stop_at - time.time() + batch_seconds + 30
    for process in processes:
        try:
            out, _ = process.communicate(timeout=max(grace, 1))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            out, _ = process.communicate()
            scenario.worker_errors.append(f"pid {process.pid} killed after the grace")
        collect_worker_report(scenario, out, process.returncode)
        grace = max(stop_at - time.time() + batch_seconds + 30, 1)
    sampler.stop()
    scenario.vendor_counts = sampler.counts

    scenario.slowed_factor = float(cache.hget(LIMITER_KEY, "factor") or 1.0)
    measure_database(scenario, campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.CANCELLED)


def collect_worker_report(scenario: Scenario, out: str, returncode: int) -> None:
    report = None
    for line in out.splitlines():
        if line.startswith("{"):
            report = json.loads(line)
    if report is None:
        scenario.worker_errors.append(f"a worker exited {returncode} without a report")
        return
    scenario.requests += report["requests"]
    scenario.throttled_requests += report["throttled_requests"]
    scenario.throttled_messages += report["throttled"]


def measure_database(scenario: Scenario, campaign_id: int) -> None:
    from django.db.models import Count, Q
    from django.db.models.functions import Extract

    from campaigns.models import Message

    messages = Message.objects.filter(campaign_id=campaign_id)
    rows = (
        messages.filter(submitted_at__isnull=False)
        .annotate(second=Extract("submitted_at", "epoch"))
        .values_list("second", flat=True)
    )
    scenario.db_counts = Counter(int(second) for second in rows)
    # A message that was refused and queued again carries the vendor's error code.
    scenario.retried_messages = messages.aggregate(
        n=Count("pk", filter=Q(error_code="429") | Q(attempts__gt=1))
    )["n"]


class VendorSampler:
    """Reads the simulator's per-second Redis counters once each second is over (they
    expire after 10 s), from a thread of this process."""

    def __init__(self, client, started: float) -> None:
        self.client = client
        self.next_second = int(started)
        self.counts: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._read(until=int(time.time()))

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            # Two seconds late: a refused request gives its budget back just after.
            self._read(until=int(time.time()) - 2)

    def _read(self, until: int) -> None:
        while self.next_second < until:
            value = self.client.get(VENDOR_KEY.format(self.next_second))
            self.counts[self.next_second] = int(value or 0)
            self.next_second += 1


# --- Worker process -----------------------------------------------------------------


def run_worker(campaign_id: int, stop_at: float) -> None:
    """One dispatcher until ``stop_at`` (Unix time); prints the simulator's counters as
    one JSON line."""
    import django

    django.setup()
    from django.conf import settings

    from campaigns.sending.dispatch import Dispatcher
    from providers import get_provider

    # DEBUG only spares the bench a SECRET_KEY; query logging would cost time.
    settings.DEBUG = False
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    dispatcher = Dispatcher(campaign_id, stop=stop)
    dispatcher.run(deadline=time.monotonic() + (stop_at - time.time()))
    stats = get_provider(ALIAS).stats()
    print(json.dumps({**stats, "submitted": dispatcher.stats.submitted}), flush=True)


# --- Report ---------------------------------------------------------------------------


def per_second(counts: dict[int, int], window: range) -> list[int]:
    return [counts.get(second, 0) for second in window]


def print_scenario(scenario: Scenario) -> None:
    for label, counts in (
        ("database", scenario.db_counts),
        ("vendor", scenario.vendor_counts),
    ):
        series = per_second(counts, scenario.window)
        print(f"  {label:8} per second: {' '.join(str(n) for n in series)}")
    print(
        f"  requests {scenario.requests:,}, 429 responses "
        f"{scenario.throttled_requests} ({scenario.throttled_messages:,} messages), "
        f"messages retried {scenario.retried_messages:,}, limiter factor at the end "
        f"{scenario.slowed_factor:g}"
    )
    for error in scenario.worker_errors:
        print(f"  worker problem: {error}")


def print_summary(results: list[Scenario], args: argparse.Namespace) -> None:
    print(
        f"\nRate accuracy over {args.seconds} s after a {args.warmup} s warm-up "
        f"(target: mean within ±{TARGET_ERROR:.0%}, zero 429s)"
    )
    header = (
        f"{'rate':>6} {'workers':>7} {'batch':>5} | {'db mean':>8} {'error':>7} "
        f"{'min':>4} {'max':>4} | {'vendor mean':>11} {'error':>7} {'min':>4} "
        f"{'max':>4} | {'429s':>5} | verdict"
    )
    print(header)
    print("-" * len(header))
    for s in results:
        cells = []
        for counts in (s.db_counts, s.vendor_counts):
            series = per_second(counts, s.window)
            mean = sum(series) / len(series)
            error = mean / s.rate - 1
            cells.append((mean, error, min(series), max(series)))
        (db_mean, db_error, db_min, db_max) = cells[0]
        (v_mean, v_error, v_min, v_max) = cells[1]
        met = (
            abs(db_error) <= TARGET_ERROR
            and abs(v_error) <= TARGET_ERROR
            and s.throttled_requests == 0
            and not s.worker_errors
        )
        print(
            f"{s.rate:>6g} {s.workers:>7} {s.batch_size:>5} | {db_mean:>8.2f} "
            f"{db_error:>+7.1%} {db_min:>4} {db_max:>4} | {v_mean:>11.2f} "
            f"{v_error:>+7.1%} {v_min:>4} {v_max:>4} | {s.throttled_requests:>5} | "
            f"{'met' if met else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
