"""Benchmark: crash safety of the send path under repeated ``kill -9``.

Launches a campaign of ``--messages`` recipients (default 100,000) on a recording
simulator, starts ``--workers`` worker processes (``manage.py run_worker``, the
production loop without Celery), and then, ``--kills`` times (default 20), waits a
random interval, SIGKILLs a random worker and starts a replacement. The workers then
finish the campaign; ``SMS_SEND_LEASE_SECONDS`` is short (default 5) so messages a dead
worker left in "sending" become "unknown" quickly.

The provider is ``RecordingBackend``: the simulator, plus an append-only log per process
of every reference it accepted, fsynced before the send returns. Nothing in a worker's
memory survives the kill, so the logs are the vendor's view:

- duplicates: references accepted more than once, across all logs;
- lost: messages not in a final state (still queued or sending), or recorded as sent
  that the vendor never accepted;
- every other message ends submitted/sent/delivered/undelivered/failed/rejected (with
  a reason when it failed), or unknown (in flight at a kill).

Targets: 0 duplicates, 0 lost.

    .venv/bin/python bench/chaos.py [--messages 100000] [--workers 3] [--kills 20]
        [--interval 1,5] [--rate 1000] [--lease 5] [--seed N]
        [--database-url URL] [--cache-url URL]

Run alone (``flock /tmp/bench.lock …``).
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.backends import simulator
from providers.messages import OutboundSms, SendResult

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smscampaigns_bench_chaos"
DEFAULT_CACHE_URL = "redis://127.0.0.1:6379/11"
ALIAS = "chaos"
LOG_PREFIX = "accepted-"
NOT_FINAL = ("queued", "sending")
SENT_STATUSES = ("submitted", "sent", "delivered", "undelivered", "rejected", "expired")


class RecordingBackend(simulator.SmsBackend):
    """The simulator, appending ``<reference> <provider id>`` for every accepted message
    to ``<record_dir>/accepted-<pid>.log`` and fsyncing before it returns."""

    def __init__(self, *, record_dir: str, **options: Any) -> None:
        super().__init__(**options)
        self.record_dir = Path(record_dir)
        self._log_lock = threading.Lock()
        self._log_fd: int | None = None
        self._log_pid = 0

    def send_batch(self, messages: Sequence[OutboundSms]) -> list[SendResult]:
        results = super().send_batch(messages)
        lines = "".join(
            f"{r.reference} {r.provider_message_id}\n" for r in results if r.accepted
        )
        if lines:
            with self._log_lock:
                fd = self._log()
                os.write(fd, lines.encode())
                # On disk before the dispatcher can record the send: a kill after this
                # point leaves the acceptance in the log whatever the database says.
                os.fsync(fd)
        return results

    def _log(self) -> int:
        # Opened per process: a forked child must not share its parent's file.
        if self._log_fd is None or self._log_pid != os.getpid():
            path = self.record_dir / f"{LOG_PREFIX}{os.getpid()}.log"
            self._log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._log_pid = os.getpid()
        return self._log_fd


@dataclass
class Kill:
    at: float
    pid: int
    uptime: float
    campaign_sending: bool


@dataclass
class Run:
    started: float = 0.0
    finished: float = 0.0
    kills: list[Kill] = field(default_factory=list)
    workers_started: int = 0
    died_on_their_own: int = 0
    campaign_status: str = ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument(
        "--interval",
        default="1,5",
        help="seconds between kills, drawn uniformly from this range (default 1,5)",
    )
    parser.add_argument(
        "--rate", type=float, default=1000, help="messages/s for all workers together"
    )
    parser.add_argument(
        "--lease",
        type=int,
        default=5,
        help="SMS_SEND_LEASE_SECONDS: 'sending' this long becomes 'unknown'",
    )
    parser.add_argument(
        "--report-delay",
        default="0.2,1.0",
        help="SIMULATOR_REPORT_DELAY: seconds to the final delivery report",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="give up if the campaign is not finished after this many seconds",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--cache-url", default=DEFAULT_CACHE_URL)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker()
        return
    low, high = (float(x) for x in args.interval.split(","))
    rng = random.Random(args.seed)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import add_to_list, create_contacts, settle_database, setup_django

    print(f"Database {args.database_url}, cache {args.cache_url}")
    setup_django(args.database_url, cache_url=args.cache_url)
    import redis

    redis.Redis.from_url(args.cache_url).flushdb()

    from campaigns.models import Campaign
    from campaigns.sending.launch import campaign_launch

    create_contacts(args.messages)
    contact_list, _ = add_to_list("Bench: chaos")
    settle_database()
    campaign = Campaign.objects.create(
        name="Bench chaos",
        body="Hi {first_name|there}, 20% off this weekend. Reply STOP to opt out.",
        provider=ALIAS,
    )
    campaign.lists.set([contact_list])
    queued = campaign_launch(campaign=campaign)
    record_dir = Path(tempfile.mkdtemp(prefix="smscampaigns-chaos-"))
    print(f"  {queued:,} messages queued; vendor logs in {record_dir}")

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.chaos_settings",
        "CHAOS_RECORD_DIR": str(record_dir),
        "SMS_SEND_LEASE_SECONDS": str(args.lease),
        "SIMULATOR_RATE": f"{args.rate:g}",
        "SIMULATOR_REPORT_DELAY": args.report_delay,
        "SIMULATOR_BACKGROUND_REPORTS": "false",
        "SIMULATOR_MAX_RATE": "0",
        "SIMULATOR_THROTTLE_RATE": "0",
        "SIMULATOR_SERVER_ERROR_RATE": "0",
        "SIMULATOR_TIMEOUT_RATE": "0",
        "SIMULATOR_LATENCY": "0",
    }
    run = Run()
    supervisor = Supervisor(env, record_dir, run)
    run.started = time.time()
    for _ in range(args.workers):
        supervisor.start()

    print(
        f"  {args.workers} workers started; {args.kills} kills every {args.interval} s"
    )
    for _ in range(args.kills):
        time.sleep(rng.uniform(low, high))
        supervisor.reap()
        sending = campaign_sending(campaign.pk)
        supervisor.kill_and_replace(rng, sending)
    print(f"  kills done after {time.time() - run.started:.0f} s; finishing")

    deadline = run.started + args.timeout
    while campaign_sending(campaign.pk) and time.time() < deadline:
        supervisor.reap()
        time.sleep(1.0)
    run.finished = time.time()
    supervisor.stop_all()
    campaign.refresh_from_db()
    run.campaign_status = campaign.status
    report(campaign.pk, queued, record_dir, run, args)


def run_worker() -> None:
    """``manage.py run_worker --slice 5`` in this process. call_command skips the
    system checks, so a worker does not depend on URL modules the send path never
    uses."""
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    # DEBUG only spares the bench a SECRET_KEY; query logging would cost time.
    settings.DEBUG = False
    call_command("run_worker", slice=5.0)


def campaign_sending(campaign_id: int) -> bool:
    from campaigns.models import Campaign

    return Campaign.objects.filter(
        pk=campaign_id, status=Campaign.Status.SENDING
    ).exists()


class Supervisor:
    """Starts, kills and replaces worker processes."""

    def __init__(self, env: dict[str, str], record_dir: Path, run: Run) -> None:
        self.env = env
        self.record_dir = record_dir
        self.run = run
        self.workers: list[tuple[subprocess.Popen, float]] = []

    def start(self) -> None:
        output = self.record_dir / f"worker-{self.run.workers_started}.out"
        with output.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, __file__, "--worker"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.workers.append((process, time.time()))
        self.run.workers_started += 1

    def reap(self) -> None:
        """Replace workers that exited without being killed (a crash of their own)."""
        for entry in list(self.workers):
            if entry[0].poll() is not None:
                self.workers.remove(entry)
                self.run.died_on_their_own += 1
                self.start()

    def kill_and_replace(self, rng: random.Random, campaign_sending: bool) -> None:
        process, started = self.workers.pop(rng.randrange(len(self.workers)))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        now = time.time()
        self.run.kills.append(Kill(now, process.pid, now - started, campaign_sending))
        self.start()

    def stop_all(self) -> None:
        for process, _ in self.workers:
            process.send_signal(signal.SIGTERM)
        for process, _ in self.workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- Report ---------------------------------------------------------------------------


def read_vendor_logs(record_dir: Path) -> Counter[str]:
    accepted: Counter[str] = Counter()
    for path in record_dir.glob(f"{LOG_PREFIX}*.log"):
        for line in path.read_text().splitlines():
            reference, _, _ = line.partition(" ")
            if reference:
                accepted[reference] += 1
    return accepted


def report(
    campaign_id: int,
    queued: int,
    record_dir: Path,
    run: Run,
    args: argparse.Namespace,
) -> None:
    from campaigns.models import Message

    accepted = read_vendor_logs(record_dir)
    rows = Message.objects.filter(campaign_id=campaign_id).values_list(
        "client_reference", "status", "error_reason"
    )
    statuses: Counter[str] = Counter()
    failed_without_reason = 0
    not_final = 0
    sent_not_accepted = 0
    failed_after_acceptance = 0
    unknown_sent = 0
    references = set()
    for reference, status, error_reason in rows.iterator(chunk_size=10_000):
        reference = str(reference)
        references.add(reference)
        statuses[status] += 1
        was_accepted = reference in accepted
        if status in NOT_FINAL:
            not_final += 1
        elif status == "failed":
            failed_without_reason += not error_reason
            # A carrier's failure report on an accepted message, not a send error.
            failed_after_acceptance += was_accepted
        elif status == "unknown":
            unknown_sent += was_accepted
        elif status in SENT_STATUSES and not was_accepted:
            sent_not_accepted += 1
    duplicates = sum(count - 1 for count in accepted.values() if count > 1)
    duplicated_messages = sum(1 for count in accepted.values() if count > 1)
    foreign = sum(1 for reference in accepted if reference not in references)
    lost = not_final + sent_not_accepted
    elapsed = run.finished - run.started
    during = sum(1 for kill in run.kills if kill.campaign_sending)
    young = sum(1 for kill in run.kills if kill.uptime < 2.0)

    print()
    print(
        f"Chaos: {queued:,} messages, {args.workers} workers, {len(run.kills)} kills "
        f"({during} while the campaign was sending, {young} of a worker up < 2 s), "
        f"lease {args.lease} s, rate {args.rate:g}/s"
    )
    print(
        f"  campaign {run.campaign_status} after {elapsed:.1f} s "
        f"({queued / elapsed:,.0f} messages/s overall); {run.workers_started} worker "
        f"processes started, {run.died_on_their_own} died on their own"
    )
    print("  final statuses:")
    for status, count in statuses.most_common():
        print(f"    {status:<12} {count:>9,}")
    print(f"    {'total':<12} {sum(statuses.values()):>9,}")
    table = [
        ("vendor acceptances", f"{sum(accepted.values()):,}", ""),
        ("duplicates (extra acceptances)", f"{duplicates:,}", "target 0"),
        ("messages sent more than once", f"{duplicated_messages:,}", "target 0"),
        ("lost", f"{lost:,}", "target 0"),
        ("  still queued or sending", f"{not_final:,}", ""),
        ("  recorded as sent, never accepted", f"{sent_not_accepted:,}", ""),
        ("unknown (in flight at a kill)", f"{statuses['unknown']:,}", ""),
        ("  of which the vendor had accepted", f"{unknown_sent:,}", ""),
        ("failed without a reason", f"{failed_without_reason:,}", "target 0"),
        ("failed by a delivery report", f"{failed_after_acceptance:,}", ""),
        ("acceptances of other messages", f"{foreign:,}", "target 0"),
    ]
    for label, value, note in table:
        print(f"  {label:<36} {value:>9}  {note}")
    met = (
        duplicates == 0
        and lost == 0
        and failed_without_reason == 0
        and foreign == 0
        and run.campaign_status != "sending"
    )
    print(f"  verdict: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
