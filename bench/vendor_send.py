"""Benchmark: sending through the real vonage, plivo and sinch backends against local
stand-ins of the vendors' APIs (bench/standin.py), with latency and faults.

Everything the claims are about runs as it would in production: separate OS processes
(``manage.py send_campaign <id>`` or ``manage.py run_worker``) with the vendor's
credentials in the environment, the backend's SDK or HTTP client, a TLS connection for
Vonage (JWT signed with a generated RSA key; the stand-in verifies it). The stand-in
logs every recipient it accepted (also those whose answer it dropped), so the figures
come from the vendor's side: per-second counts, duplicates, 429s. The database gives
the other side: what the senders believe.

Subcommands (each prints figures and asserts nothing):

- ``rate``: Vonage at 30/s and 300/s, Plivo and Sinch at 30/s, with 1 and 3 sender
  processes; the stand-in answers after 200 ms and refuses with 429 anything beyond
  the rate in a calendar second. Per-second and per-minute rates seen by the vendor.
- ``throughput``: no account limit. Vonage from one ``send_campaign`` process, the
  Node.js tutorial sender (bench/node_vonage) against the same stand-in, then Plivo and
  Sinch at 1,000 recipients a request from two ``run_worker`` processes. Every
  recipient tracked: submitted in the database against distinct recipients at the
  vendor.
- ``chaos``: a 20,000-message Plivo send by ``send_campaign``, ``kill -9`` five
  times (restarted at once each time); the last restart is the resume: its time to
  finish against the sending time that remained. Duplicates and losses.
- ``dropped``: each stand-in drops 5 % of its answers (after accepting the request).
  Recipients texted twice, and what the database says about those the vendor took.

    .venv/bin/python bench/vendor_send.py rate [--seconds 60] [--warmup 5]
        [--cases vonage:30,vonage:300,plivo:30,sinch:30] [--processes 1,3]
    .venv/bin/python bench/vendor_send.py throughput [--vonage-messages 2000]
        [--node-messages 2000] [--bulk-messages 50000] [--skip-node]
    .venv/bin/python bench/vendor_send.py chaos [--messages 20000] [--rate 500]
        [--kills 5] [--interval 1,4] [--lease S]
    .venv/bin/python bench/vendor_send.py dropped [--messages 1000] [--drop 0.05]
    common: [--latency 0.2] [--timeout S] [--concurrency C] [--database-url URL]
        [--cache-url URL] [--keep]

Run alone (``flock /tmp/bench.lock …``): the senders, the stand-in, PostgreSQL and
Redis share the machine's two cores.
"""

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import standin  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smscampaigns_bench_vendor"
DEFAULT_CACHE_URL = "redis://127.0.0.1:6379/13"
BODY = "Hi {first_name|there}, 20% off this weekend. Reply STOP to opt out."
# One text for everyone: Plivo takes one text a request, so a personalised body would
# split each claim by first name.
PLAIN_BODY = "20% off this weekend at Acme. Reply STOP to opt out."
HUGE_RATE = 1_000_000
TARGET_ERROR = 0.05
NOT_FINAL = ("queued", "sending")
# Statuses meaning "the vendor took it" in the database.
TAKEN = ("submitted", "sent", "delivered", "undelivered", "rejected", "expired")
NODE_DIR = BENCH / "node_vonage"


# --- Credentials and processes ------------------------------------------------------------


@dataclass
class Credentials:
    directory: Path
    vonage_application_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    vonage_key: Path = Path()
    vonage_public_key: Path = Path()
    plivo_auth_id: str = "MA" + uuid.uuid4().hex[:18].upper()
    plivo_auth_token: str = uuid.uuid4().hex
    sinch_plan: str = uuid.uuid4().hex
    sinch_token: str = uuid.uuid4().hex

    @classmethod
    def create(cls, directory: Path) -> "Credentials":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        credentials = cls(directory)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        credentials.vonage_key = directory / "vonage-private.key"
        credentials.vonage_public_key = directory / "vonage-public.pem"
        credentials.vonage_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        credentials.vonage_public_key.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )
        return credentials


class Sender:
    """One ``manage.py`` process, its output in a file of the run directory."""

    def __init__(self, kind: str, campaign_id: int, env: dict, log: Path) -> None:
        self.kind = kind
        self.log = log
        command = [sys.executable, "manage.py"]
        if profile_dir := os.environ.get("BENCH_PROFILE_DIR"):
            # The sender's main thread (claim, render, record) under cProfile; the
            # sending threads are not profiled.
            command[1:1] = ["-m", "cProfile", "-o", f"{profile_dir}/{log.stem}.prof"]
        if kind == "send_campaign":
            command += ["send_campaign", str(campaign_id)]
        else:
            command += ["run_worker", "--slice", "5"]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started = time.time()
        self.ended: float | None = None
        self.outcome = "running"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        if self.process.poll() is None:
            return True
        if self.ended is None:
            self.ended = time.time()
            self.outcome = f"exited {self.process.returncode}"
        return False

    def kill9(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.ended = time.time()
        self.outcome = "kill -9"

    def finish(self, wait: float = 15.0, grace: float = 20.0) -> None:
        """Let a sender whose work is done exit by itself for ``wait`` seconds, then
        stop it."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(wait)
        self.stop(grace)

    def stop(self, grace: float = 20.0) -> None:
        """SIGINT (send_campaign stops after its batch) or SIGTERM (run_worker), then
        SIGKILL after ``grace`` seconds: a hung sender must not hang the bench."""
        if not self.alive():
            return
        self.process.send_signal(
            signal.SIGINT if self.kind == "send_campaign" else signal.SIGTERM
        )
        try:
            self.process.wait(grace)
            self.alive()
            self.outcome = f"stopped, exited {self.process.returncode}"
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self.ended = time.time()
            self.outcome = f"killed: still running {grace:g} s after the stop signal"

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"vendor-send-{args.scenario}-"))
        self.credentials = Credentials.create(self.run_dir)
        self.standins: list[standin.Running] = []
        self.senders: list[Sender] = []
        self.base_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "smscampaigns.settings",
            "DATABASE_URL": args.database_url,
            "CACHE_URL": args.cache_url,
            # Production settings: with DEBUG on, Django formats and keeps every
            # query (arrays of 1,000 values included), which no production sender pays.
            "DEBUG": "false",
            "SECRET_KEY": "bench-only-" + "x" * 50,
            "ALLOWED_HOSTS": "localhost",
            "SECURE_SSL_REDIRECT": "false",
            "ENV_FILE": str(BENCH / ".env.absent"),
            # Receipts would go here; nothing listens, nothing is sent there. It puts
            # the reference in Plivo's callback URL, as in production.
            "PUBLIC_BASE_URL": "https://sms.example.com",
            "PYTHONUNBUFFERED": "1",
        }
        if args.concurrency:
            self.base_env["SMS_DISPATCH_CONCURRENCY"] = str(args.concurrency)
        if getattr(args, "lease", None):
            self.base_env["SMS_SEND_LEASE_SECONDS"] = str(args.lease)
        print(f"Run directory (logs, keys): {self.run_dir}")

    # Setup

    def setup(self, contacts: int) -> None:
        from common import create_contacts, settle_database, setup_django

        print(f"Database {self.args.database_url}, cache {self.args.cache_url}")
        setup_django(self.args.database_url, cache_url=self.args.cache_url)
        self.flush_cache()
        started = time.perf_counter()
        create_contacts(contacts)
        settle_database()
        print(f"  {contacts:,} contacts in {time.perf_counter() - started:.1f} s")

    def flush_cache(self) -> None:
        import redis

        redis.Redis.from_url(self.args.cache_url).flushdb()

    def campaign(
        self, vendor: str, messages: int, label: str, body: str = BODY
    ) -> tuple[int, int]:
        """A launched campaign to the first ``messages`` contacts: (id, queued)."""
        from common import add_to_list

        from campaigns.models import Campaign
        from campaigns.sending.launch import campaign_launch

        contact_list, _ = add_to_list(f"Bench vendor: {label}", f"c.id <= {messages}")
        campaign = Campaign.objects.create(
            name=f"Bench vendor {label}", body=body, provider=vendor
        )
        campaign.lists.set([contact_list])
        return campaign.pk, campaign_launch(campaign=campaign)

    def start_standin(self, vendor: str, label: str, **faults) -> standin.Running:
        credentials = self.credentials
        options = {
            "log": self.run_dir / f"{label}.jsonl",
            "tls": vendor == "vonage",
            "cert_dir": self.run_dir / f"tls-{label}" if vendor == "vonage" else None,
            "seed": faults.pop("seed", None),
            **faults,
        }
        if vendor == "vonage":
            options["public_key"] = credentials.vonage_public_key
        elif vendor == "plivo":
            options["auth_id"] = credentials.plivo_auth_id
            options["token"] = credentials.plivo_auth_token
        else:
            options["token"] = credentials.sinch_token
        running = standin.spawn(vendor, **options)
        running.info["log"] = str(options["log"])
        self.standins.append(running)
        return running

    def env(self, vendor: str, running: standin.Running, rate: float, **extra) -> dict:
        c = self.credentials
        env = {
            **self.base_env,
            "SMS_DEFAULT_PROVIDER": vendor,
            "VONAGE_APPLICATION_ID": c.vonage_application_id,
            "VONAGE_PRIVATE_KEY_PATH": str(c.vonage_key),
            "VONAGE_NUMBER": "+15550100001",
            "PLIVO_AUTH_ID": c.plivo_auth_id,
            "PLIVO_AUTH_TOKEN": c.plivo_auth_token,
            "PLIVO_SENDER_ID": "+15550100002",
            "SINCH_SERVICE_PLAN_ID": c.sinch_plan,
            "SINCH_API_TOKEN": c.sinch_token,
            "SINCH_NUMBER": "+15550100003",
            f"{vendor.upper()}_RATE": plain_number(rate),
            f"{vendor.upper()}_API_URL": running.url,
            **{key: str(value) for key, value in extra.items()},
        }
        if running.ca:
            # These machines export REQUESTS_CA_BUNDLE, which overrides a session's
            # verify: the stand-in's CA must be the bundle.
            env["REQUESTS_CA_BUNDLE"] = running.ca
            env["CURL_CA_BUNDLE"] = running.ca
        return env

    def start_sender(
        self, kind: str, campaign_id: int, env: dict, label: str
    ) -> Sender:
        sender = Sender(
            kind, campaign_id, env, self.run_dir / f"{label}-{len(self.senders)}.out"
        )
        self.senders.append(sender)
        return sender

    def cleanup(self) -> None:
        for sender in self.senders:
            sender.stop(grace=5)
        for running in self.standins:
            running.stop()
        if not self.args.keep:
            for path in self.run_dir.glob("*.jsonl"):
                # The logs can be large; the summaries are printed.
                path.unlink()


def plain_number(value: float) -> str:
    """A number without an exponent: django-environ reads "1e+06" as 106.0."""
    return f"{value:f}".rstrip("0").rstrip(".")


# --- Database views ------------------------------------------------------------------------


def remaining(campaign_id: int) -> int:
    from campaigns.models import Message

    return Message.objects.filter(campaign_id=campaign_id, status__in=NOT_FINAL).count()


def campaign_status(campaign_id: int) -> str:
    from campaigns.models import Campaign

    return Campaign.objects.values_list("status", flat=True).get(pk=campaign_id)


def status_counts(campaign_id: int, to: set[str] | None = None) -> Counter:
    from django.db.models import Count

    from campaigns.models import Message

    messages = Message.objects.filter(campaign_id=campaign_id)
    if to is not None:
        messages = messages.filter(to__in=list(to))
    return Counter(
        dict(messages.values_list("status").annotate(n=Count("pk")).order_by())
    )


def messages_by_to(campaign_id: int) -> dict[str, tuple[str, int, str]]:
    from campaigns.models import Message

    return {
        to: (status, attempts, error_code)
        for to, status, attempts, error_code in Message.objects.filter(
            campaign_id=campaign_id
        ).values_list("to", "status", "attempts", "error_code")
    }


def retried(campaign_id: int) -> int:
    from django.db.models import Q

    from campaigns.models import Message

    return (
        Message.objects.filter(campaign_id=campaign_id)
        .filter(Q(attempts__gt=1) | Q(error_code="429"))
        .count()
    )


def cancel(campaign_id: int) -> None:
    from campaigns.models import Campaign

    Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.SENDING).update(
        status=Campaign.Status.CANCELLED
    )


def wait_until_done(
    campaign_id: int, senders: list[Sender], timeout: float, poll: float = 0.5
) -> tuple[bool, float]:
    """Until no message is queued or sending, the campaign left "sending", or every
    sender exited; ``timeout`` seconds at most. Returns (finished, seconds)."""
    started = time.time()
    while time.time() - started < timeout:
        if remaining(campaign_id) == 0 or campaign_status(campaign_id) != "sending":
            return True, time.time() - started
        if not any(sender.alive() for sender in senders):
            return remaining(campaign_id) == 0, time.time() - started
        time.sleep(poll)
    return False, time.time() - started


def format_counts(counts: Counter) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "-"


def table(headers: list[str], rows: list[list[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(row[i]) for row in cells)) if cells else len(h)
        for i, h in enumerate(headers)
    ]
    line = " | ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in cells:
        print(" | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


# --- rate ------------------------------------------------------------------------------------


def scenario_rate(bench: Bench, args: argparse.Namespace) -> None:
    cases = [
        (vendor, float(rate))
        for vendor, rate in (case.split(":") for case in args.cases.split(","))
    ]
    processes = [int(p) for p in args.processes.split(",")]
    budget = args.warmup + args.seconds + 20
    per_case = {case: int(case[1] * budget * 1.1) + 100 for case in cases}
    bench.setup(max(per_case.values()))
    rows = []
    for vendor, rate in cases:
        for count in processes:
            label = f"rate-{vendor}-{rate:g}-x{count}"
            print(f"\n{vendor} at {rate:g}/s, {count} sender process(es)")
            running = bench.start_standin(
                vendor, label, latency=args.latency, rate=rate
            )
            campaign_id, queued = bench.campaign(
                vendor, per_case[(vendor, rate)], label
            )
            bench.flush_cache()
            env = bench.env(vendor, running, rate)
            started = time.time()
            senders = [
                bench.start_sender(args.sender, campaign_id, env, label)
                for _ in range(count)
            ]
            first = math.ceil(started + args.warmup)
            window = range(first, first + args.seconds)
            while time.time() < window.stop + 1:
                if not any(s.alive() for s in senders):
                    break
                time.sleep(0.5)
            for sender in senders:
                sender.stop()
            running.stop()
            summary = standin.summarize(running.info["log"])
            series = summary.window(window.start, window.stop - 1)
            db = status_counts(campaign_id)
            rows.append(rate_row(vendor, rate, count, series, summary, campaign_id))
            print(f"  {queued:,} queued; stand-in log {running.info['log']}")
            print(f"  vendor per second: {' '.join(str(n) for n in series)}")
            print(
                f"  429s: {summary.refused_429_requests} requests "
                f"({summary.refused_429_recipients:,} recipients); duplicates "
                f"{summary.duplicates}; database: {format_counts(db)}; "
                f"retried/429 in the database {retried(campaign_id):,}"
            )
            for sender in senders:
                print(f"  sender {sender.pid}: {sender.outcome}; {sender.tail(1)}")
            cancel(campaign_id)
    print(
        f"\nRate at the vendor over {args.seconds} s after a {args.warmup} s warm-up, "
        f"each request answered after {args.latency:g} s (±{TARGET_ERROR:.0%} wanted, "
        "no 429)"
    )
    table(
        [
            "vendor",
            "rate",
            "procs",
            "mean/s",
            "error",
            "min",
            "max",
            "s in ±5%",
            "per minute",
            "of allowed",
            "429 req",
            "dups",
        ],
        rows,
    )


def rate_row(vendor, rate, count, series, summary, campaign_id) -> list[object]:
    mean = sum(series) / len(series) if series else 0.0
    within = sum(1 for n in series if abs(n / rate - 1) <= TARGET_ERROR)
    minutes = [sum(series[i : i + 60]) for i in range(0, len(series), 60)]
    per_minute = "/".join(f"{m:,}" for m in minutes)
    allowed = [rate * len(series[i : i + 60]) for i in range(0, len(series), 60)]
    share = "/".join(f"{m / a:.1%}" for m, a in zip(minutes, allowed, strict=True))
    return [
        vendor,
        f"{rate:g}",
        count,
        f"{mean:.2f}",
        f"{mean / rate - 1:+.1%}",
        min(series, default=0),
        max(series, default=0),
        f"{within}/{len(series)}",
        per_minute,
        share,
        summary.refused_429_requests,
        summary.duplicates,
    ]


# --- throughput ------------------------------------------------------------------------------


def scenario_throughput(bench: Bench, args: argparse.Namespace) -> None:
    bench.setup(max(args.vonage_messages, args.bulk_messages))
    rows = []

    # Vonage from one send_campaign process.
    label = "throughput-vonage"
    print(f"\nvonage: {args.vonage_messages:,} messages, one send_campaign process")
    running = bench.start_standin("vonage", label, latency=args.latency)
    campaign_id, _ = bench.campaign("vonage", args.vonage_messages, label)
    env = bench.env("vonage", running, HUGE_RATE)
    sender = bench.start_sender("send_campaign", campaign_id, env, label)
    finished, seconds = wait_until_done(campaign_id, [sender], args.timeout)
    sender.finish()
    running.stop()
    rows.append(
        throughput_row("vonage (Python, send_campaign)", running, campaign_id, seconds)
    )
    print(f"  finished: {finished}; sender: {sender.outcome}; {sender.tail(1)}")
    cancel(campaign_id)

    # The Node.js tutorial sender against the same kind of stand-in.
    if not args.skip_node:
        node = run_node(bench, args)
        if node:
            rows.append(node)

    # Plivo and Sinch, 1,000 recipients a request, two run_worker processes.
    for vendor in ("plivo", "sinch"):
        label = f"throughput-{vendor}"
        print(f"\n{vendor}: {args.bulk_messages:,} messages, two run_worker processes")
        running = bench.start_standin(vendor, label, latency=args.latency)
        campaign_id, _ = bench.campaign(
            vendor, args.bulk_messages, label, body=PLAIN_BODY
        )
        env = bench.env(vendor, running, HUGE_RATE, SMS_DISPATCH_BATCH_SIZE=1000)
        workers = [
            bench.start_sender("run_worker", campaign_id, env, label) for _ in range(2)
        ]
        finished, seconds = wait_until_done(campaign_id, workers, args.timeout)
        for worker in workers:
            worker.stop()
        running.stop()
        rows.append(
            throughput_row(f"{vendor} (2 run_worker)", running, campaign_id, seconds)
        )
        print(f"  finished: {finished}")
        for worker in workers:
            print(f"  worker {worker.pid}: {worker.outcome}; {worker.tail(1)}")
        cancel(campaign_id)

    print(
        f"\nThroughput, no account limit, every request answered after "
        f"{args.latency:g} s (msg/s: first to last acceptance at the vendor)"
    )
    table(
        [
            "sender",
            "recipients",
            "distinct",
            "dups",
            "requests",
            "per request",
            "msg/s",
            "wall s",
            "db taken",
            "db == vendor",
            "database",
        ],
        rows,
    )


def throughput_row(label, running, campaign_id, seconds) -> list[object]:
    summary = standin.summarize(running.info["log"])
    counters = json.loads(Path(running.info["log"] + ".seconds.json").read_text())
    requests_ = counters["totals"].get("requests", 0)
    times = read_times(running.info["log"])
    span = (times[-1] - times[0]) if len(times) > 1 else 0.0
    db = status_counts(campaign_id) if campaign_id else Counter()
    taken = sum(db[s] for s in TAKEN)
    return [
        label,
        f"{summary.recipients:,}",
        f"{summary.distinct:,}",
        summary.duplicates,
        f"{requests_:,}",
        f"{summary.recipients / requests_:.0f}" if requests_ else "-",
        f"{summary.recipients / span:,.0f}" if span else "-",
        f"{seconds:.1f}",
        f"{taken:,}" if campaign_id else "-",
        ("yes" if taken == summary.distinct else "NO") if campaign_id else "-",
        format_counts(db) if campaign_id else "-",
    ]


def read_times(log_path: str) -> list[float]:
    times = []
    with open(log_path, encoding="utf-8") as lines:
        for line in lines:
            entry = json.loads(line)
            if "to" in entry:
                times.append(entry["t"])
    return sorted(times)


def run_node(bench: Bench, args: argparse.Namespace) -> list[object] | None:
    label = "throughput-node"
    print(f"\nNode.js tutorial sender: {args.node_messages:,} messages, concurrency 50")
    npm = shutil.which("npm")
    node = shutil.which("node")
    if not npm or not node:
        print("  skipped: node or npm is not installed")
        return None
    if not (NODE_DIR / "node_modules").exists():
        print("  npm ci …")
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
        )
        if result.returncode:
            print(f"  skipped: npm ci failed: {result.stderr.strip()[-500:]}")
            return None
    running = bench.start_standin("vonage", label, latency=args.latency)
    c = bench.credentials
    env = {
        **os.environ,
        "NODE_EXTRA_CA_CERTS": running.ca or "",
        "VONAGE_API_HOST": running.url,
        "VONAGE_APPLICATION_ID": c.vonage_application_id,
        "VONAGE_PRIVATE_KEY_PATH": str(c.vonage_key),
        "VONAGE_NUMBER": "15550100001",
    }
    started = time.time()
    try:
        result = subprocess.run(
            [
                node,
                str(NODE_DIR / "send.mjs"),
                "--count",
                str(args.node_messages),
                "--concurrency",
                "50",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=args.timeout,
        )
        output = result.stdout.strip().splitlines()
        print(f"  node: {output[-1] if output else result.stderr.strip()[-500:]}")
    except subprocess.TimeoutExpired:
        print(f"  node: killed after {args.timeout:g} s")
    seconds = time.time() - started
    running.stop()
    return throughput_row("vonage (Node.js, p-queue 50)", running, None, seconds)


# --- chaos -----------------------------------------------------------------------------------


def scenario_chaos(bench: Bench, args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    low, high = (float(x) for x in args.interval.split(","))
    bench.setup(args.messages)
    label = "chaos-plivo"
    running = bench.start_standin("plivo", label, latency=args.latency)
    campaign_id, queued = bench.campaign("plivo", args.messages, label)
    env = bench.env("plivo", running, args.rate)
    print(
        f"\nplivo: {queued:,} messages at {args.rate:g}/s by send_campaign; "
        f"{args.kills} kill -9, each followed at once by a restart"
    )
    started = time.time()
    sender = bench.start_sender("send_campaign", campaign_id, env, label)
    kills = []
    for number in range(1, args.kills + 1):
        # Kill while it sends: once the vendor has seen this process's first request.
        before = standin_recipients(running)
        deadline = time.time() + 60
        while (
            standin_recipients(running) == before
            and sender.alive()
            and remaining(campaign_id)
            and time.time() < deadline
        ):
            time.sleep(0.1)
        time.sleep(rng.uniform(low, high))
        if not sender.alive():
            print(f"  the sender exited before kill {number}: {sender.tail(2)}")
            break
        left = remaining(campaign_id)
        taken = standin_recipients(running)
        sender.kill9()
        kills.append((number, time.time() - started, left, taken))
        sender = bench.start_sender("send_campaign", campaign_id, env, label)
    resume_started = time.time()
    left_at_resume = remaining(campaign_id)
    expected = left_at_resume / args.rate
    finished, seconds = wait_until_done(campaign_id, [sender], args.timeout)
    if sender.alive():
        # The campaign is done; send_campaign may still be waiting for something.
        with contextlib.suppress(subprocess.TimeoutExpired):
            sender.process.wait(30)
    resume_seconds = (sender.ended or time.time()) - resume_started
    sender.stop()
    running.stop()
    summary = standin.summarize(running.info["log"])
    db = status_counts(campaign_id)
    by_to = messages_by_to(campaign_id)
    vendor_to = set(summary.by_to)
    taken_statuses = set(TAKEN)
    db_sent_not_at_vendor = sum(
        1 for to, (status, _, _) in by_to.items()
        if status in taken_statuses and to not in vendor_to
    )  # fmt: skip
    at_vendor_not_sent = Counter(
        status for to, (status, _, _) in by_to.items()
        if to in vendor_to and status not in taken_statuses
    )  # fmt: skip
    never = sum(
        1 for to, (status, _, _) in by_to.items()
        if to not in vendor_to and status in ("queued", "sending", "unknown")
    )  # fmt: skip

    print("\nKills")
    table(
        ["kill", "at s", "not final in db", "at vendor so far"],
        [[n, f"{t:.1f}", f"{left:,}", f"{taken:,}"] for n, t, left, taken in kills],
    )
    print(
        f"\nResume (the restart after kill {len(kills)}): {left_at_resume:,} messages "
        f"not final; at {args.rate:g}/s that is {expected:.1f} s of sending. "
        f"Campaign finished: {finished} after {seconds:.1f} s; the process "
        f"{sender.outcome} after {resume_seconds:.1f} s ({sender.tail(1)})"
    )
    print("\nVendor log against the database")
    table(
        ["figure", "value"],
        [
            ["messages queued", f"{queued:,}"],
            ["recipients at the vendor (lines)", f"{summary.recipients:,}"],
            ["distinct recipients at the vendor", f"{summary.distinct:,}"],
            ["duplicates (texted more than once)", f"{summary.duplicates:,}"],
            ["  recipients texted twice or more", f"{summary.duplicated_recipients:,}"],
            ["database says taken, vendor never got it (lost)", db_sent_not_at_vendor],
            [
                "vendor got it, database not taken",
                format_counts(at_vendor_not_sent),
            ],
            ["never reached the vendor, not failed (queued/sending/unknown)", never],
            ["database statuses", format_counts(db)],
            ["campaign status", campaign_status(campaign_id)],
        ],
    )


def standin_recipients(running: standin.Running) -> int:
    try:
        return running.stats()["totals"].get("recipients", 0)
    except Exception:  # a figure for the table, not a failure
        return -1


# --- dropped ---------------------------------------------------------------------------------


def scenario_dropped(bench: Bench, args: argparse.Namespace) -> None:
    vendors = args.vendors.split(",")
    bench.setup(args.messages)
    rows = []
    for vendor in vendors:
        label = f"dropped-{vendor}"
        bulk = vendor != "vonage"
        print(
            f"\n{vendor}: {args.messages:,} messages, {args.drop:.0%} of answers "
            f"dropped" + (f", {args.bulk_batch} recipients a request" if bulk else "")
        )
        running = bench.start_standin(
            vendor, label, latency=args.latency, drop=args.drop, seed=args.seed
        )
        campaign_id, _ = bench.campaign(vendor, args.messages, label)
        extra = {"SMS_DISPATCH_BATCH_SIZE": args.bulk_batch} if bulk else {}
        env = bench.env(vendor, running, HUGE_RATE, **extra)
        sender = bench.start_sender("send_campaign", campaign_id, env, label)
        finished, seconds = wait_until_done(campaign_id, [sender], args.timeout)
        sender.finish()
        running.stop()
        summary = standin.summarize(running.info["log"])
        counters = json.loads(Path(running.info["log"] + ".seconds.json").read_text())
        dropped_requests = counters["totals"].get("dropped_requests", 0)
        db = status_counts(campaign_id)
        dropped_db = status_counts(campaign_id, summary.dropped_to)
        rows.append(
            [
                vendor,
                f"{counters['totals'].get('requests', 0):,}",
                dropped_requests,
                f"{len(summary.dropped_to):,}",
                f"{summary.duplicated_recipients:,}",
                f"{summary.duplicates:,}",
                dropped_db.get("unknown", 0),
                dropped_db.get("failed", 0),
                sum(dropped_db[s] for s in TAKEN),
                sum(dropped_db[s] for s in NOT_FINAL),
                format_counts(db),
            ]
        )
        print(
            f"  finished: {finished} after {seconds:.1f} s; sender {sender.outcome}; "
            f"{sender.tail(1)}"
        )
        print(
            f"  statuses of the recipients of dropped answers: {format_counts(dropped_db)}"
        )
        cancel(campaign_id)
    print(
        f"\nDropped answers ({args.drop:.0%} of requests taken by the vendor, answered "
        "by closing the connection). Wanted: 0 texted twice; dropped → unknown, never "
        "failed or sent again"
    )
    table(
        [
            "vendor",
            "requests",
            "dropped req",
            "their recipients",
            "texted twice",
            "extra texts",
            "→ unknown",
            "→ failed",
            "→ taken",
            "→ queued/sending",
            "database, all",
        ],
        rows,
    )


# --- Entry point ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    common.add_argument("--cache-url", default=DEFAULT_CACHE_URL)
    common.add_argument(
        "--latency", type=float, default=0.2, help="stand-in answer delay (0.2 s)"
    )
    common.add_argument(
        "--timeout", type=float, default=600, help="give a send up after this (600 s)"
    )
    common.add_argument(
        "--concurrency",
        type=int,
        help="SMS_DISPATCH_CONCURRENCY for the senders (default: the project's)",
    )
    common.add_argument(
        "--keep", action="store_true", help="keep the stand-in logs in the run dir"
    )
    common.add_argument("--seed", type=int, default=1)
    sub = parser.add_subparsers(dest="scenario", required=True)

    rate = sub.add_parser("rate", parents=[common])
    rate.add_argument("--seconds", type=int, default=60)
    rate.add_argument("--warmup", type=int, default=5)
    rate.add_argument("--cases", default="vonage:30,vonage:300,plivo:30,sinch:30")
    rate.add_argument("--processes", default="1,3")
    rate.add_argument(
        "--sender", choices=("send_campaign", "run_worker"), default="send_campaign"
    )

    throughput = sub.add_parser("throughput", parents=[common])
    throughput.add_argument("--vonage-messages", type=int, default=2000)
    throughput.add_argument("--node-messages", type=int, default=2000)
    throughput.add_argument("--bulk-messages", type=int, default=50_000)
    throughput.add_argument("--skip-node", action="store_true")

    chaos = sub.add_parser("chaos", parents=[common])
    chaos.add_argument("--messages", type=int, default=20_000)
    chaos.add_argument("--rate", type=float, default=500, help="PLIVO_RATE (500/s)")
    chaos.add_argument("--kills", type=int, default=5)
    chaos.add_argument(
        "--interval",
        default="1,4",
        help="seconds from a (re)started sender's first request at the vendor to its "
        "kill (uniform; 1,4)",
    )
    chaos.add_argument(
        "--lease", type=int, help="SMS_SEND_LEASE_SECONDS (default: the project's)"
    )

    dropped = sub.add_parser("dropped", parents=[common])
    dropped.add_argument("--messages", type=int, default=1000)
    dropped.add_argument("--drop", type=float, default=0.05)
    dropped.add_argument("--vendors", default="vonage,plivo,sinch")
    dropped.add_argument(
        "--bulk-batch",
        type=int,
        default=20,
        help="SMS_DISPATCH_BATCH_SIZE for Plivo and Sinch, so that enough requests "
        "are made for 5 %% of them to be dropped (20)",
    )

    args = parser.parse_args()
    bench = Bench(args)
    scenarios = {
        "rate": scenario_rate,
        "throughput": scenario_throughput,
        "chaos": scenario_chaos,
        "dropped": scenario_dropped,
    }
    from common import machine_load

    print(f"{args.scenario}: {machine_load()} at the start")
    try:
        scenarios[args.scenario](bench, args)
    finally:
        bench.cleanup()
    print(f"\n({machine_load()} at the end; run directory {bench.run_dir})")


if __name__ == "__main__":
    main()
