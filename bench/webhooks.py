"""Benchmark: event webhooks fanned out to integrators' endpoints through the worker.

1. **Throughput.** Two local HTTP receivers (separate processes, each verifying every
   signature) subscribe to ``contact.opted_out``; N events (default 10,000) are
   published, then ``manage.py run_worker`` delivers them: prints deliveries/s (2 x N
   deliveries) from the first delivery to the last. Target: ≥ 500/s.
2. **An outage.** Receiver B goes down (its process is stopped: connections are
   refused) for ``--down-seconds`` (default 600) while events keep coming (one every
   ``--outage-interval`` seconds) and A keeps receiving; then B comes back. Checks
   that each receiver got every event, in order, none twice, and how long B took to
   catch up after it came back (the backoff's next attempt).

Each receiver appends the id of every event it accepts to a log file (across its
restarts), which is what the checks read.

    .venv/bin/python bench/webhooks.py [--events 10000] [--down-seconds 600]
        [--outage-interval 0.5] [--database-url URL]
"""

import argparse
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smscampaigns_bench_webhooks"
REPO = Path(__file__).resolve().parent.parent
TARGET_PER_SECOND = 500.0
EVENT = "contact.opted_out"
PUBLISH_BATCH = 500


# --- The receiver (a process of its own) --------------------------------------------


def serve_receiver(port: int, secret: str, log_path: str) -> None:
    """Accept signed events on ``port``; log each accepted id, one per line."""
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    key = secret.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            fields = dict(
                part.split("=", 1)
                for part in self.headers.get("Smscampaigns-Signature", "").split(",")
                if "=" in part
            )
            signed = fields.get("t", "").encode() + b"." + body
            expected = hmac.new(key, signed, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, fields.get("v1", "")):
                self.send_response(400)
                self.send_header("Content-Length", "0")
                self.end_headers()
                os.write(log, b"BAD\n")
                return
            event_id = json.loads(body)["id"]
            os.write(log, event_id.encode() + b"\n")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


class Receiver:
    def __init__(self, name: str, scratch: Path) -> None:
        self.name = name
        self.port = _free_port()
        self.secret = ""
        self.log_path = scratch / f"receiver-{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "receiver", str(self.port), self.secret,
             str(self.log_path)],
        )  # fmt: skip
        _wait_listening(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def received(self) -> list[str]:
        if not self.log_path.exists():
            return []
        return self.log_path.read_text().split()


# --- The run ------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "receiver":
        serve_receiver(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--down-seconds", type=float, default=600.0)
    parser.add_argument("--outage-interval", type=float, default=0.5)
    parser.add_argument("--skip-outage", action="store_true")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import machine_load, phase, setup_django

    print(f"Event webhooks: {args.events:,} events to 2 endpoints, {args.database_url}")
    with phase("migrate and empty the tables"):
        setup_django(args.database_url)
        _empty_integrations()
    from integrations.models import Delivery, Event, WebhookEndpoint

    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        receivers = [Receiver("A", scratch), Receiver("B", scratch)]
        endpoints = {}
        for receiver in receivers:
            endpoint = WebhookEndpoint.objects.create(url=receiver.url, events=[EVENT])
            receiver.secret = endpoint.secret
            endpoints[receiver.name] = endpoint
            receiver.start()
        worker = None
        try:
            with phase(f"publish {args.events:,} events"):
                _publish(args.events)
            print(machine_load())
            worker = _start_worker(args.database_url, scratch)
            expected = 2 * args.events
            first, last = _wait_delivered(Delivery, expected, timeout=600)
            elapsed = last - first
            rate = (expected - 1) / elapsed if elapsed > 0 else float("inf")
            verdict = "met" if rate >= TARGET_PER_SECOND else "MISSED"
            print(
                f"\nThroughput: {expected:,} deliveries in {elapsed:.2f} s from the "
                f"first to the last = {rate:,.0f} deliveries/s (target "
                f"≥ {TARGET_PER_SECOND:.0f}: {verdict}); {machine_load()}"
            )
            _check(receivers, Event)

            if not args.skip_outage:
                _outage(args, receivers, Delivery, Event)
        finally:
            if worker is not None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
            for receiver in receivers:
                receiver.stop()
    print(machine_load())


def _outage(args, receivers: list[Receiver], Delivery, Event) -> None:
    from integrations.models import WebhookEndpoint

    b = receivers[1]
    print(f"\nOutage: B down for {args.down_seconds:.0f} s, events keep coming")
    b.stop()
    down_at = time.monotonic()
    published = 0
    while time.monotonic() - down_at < args.down_seconds:
        _publish(1)
        published += 1
        time.sleep(args.outage_interval)
    endpoint_b = WebhookEndpoint.objects.get(url=b.url)
    print(
        f"  published {published:,} during the outage; B failed "
        f"{endpoint_b.consecutive_failures} attempts in a row, next at "
        f"{endpoint_b.retry_at:%H:%M:%S}"
    )
    b.start()
    up_at = time.monotonic()
    total = Delivery.objects.count()
    _wait_delivered(Delivery, total, timeout=args.down_seconds + 3700)
    caught_up = time.monotonic() - up_at
    print(
        f"  B back up: every waiting event delivered {caught_up:.1f} s later "
        "(the backoff's next attempt, then the backlog)"
    )
    _check(receivers, Event)


def _check(receivers: list[Receiver], Event) -> None:
    """Every event to every receiver, in order, none twice, all signatures good."""
    expected = [
        f"evt_{uid.hex}"
        for uid in Event.objects.order_by("pk").values_list("uid", flat=True)
    ]
    for receiver in receivers:
        got = receiver.received()
        bad = got.count("BAD")
        got = [event for event in got if event != "BAD"]
        duplicates = sum(n - 1 for n in Counter(got).values() if n > 1)
        missing = len(set(expected) - set(got))
        in_order = got == sorted(got, key={e: i for i, e in enumerate(expected)}.get)
        print(
            f"  receiver {receiver.name}: {len(got):,} received of {len(expected):,}; "
            f"missing {missing}, twice {duplicates}, bad signatures {bad}, "
            f"in order: {'yes' if in_order else 'NO'}"
        )


def _publish(count: int) -> None:
    from django.db import transaction

    from integrations.services import publish_many

    done = 0
    while done < count:
        size = min(PUBLISH_BATCH, count - done)
        with transaction.atomic():
            publish_many(
                EVENT,
                [
                    {"phone": f"+1415{(done + i) % 10_000_000:07d}", "source": "bench"}
                    for i in range(size)
                ],
            )
        done += size


def _wait_delivered(Delivery, expected: int, *, timeout: float) -> tuple[float, float]:
    """Poll until ``expected`` deliveries are delivered; the wall-clock times of the
    first one seen delivered and of the last."""
    first = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = Delivery.objects.filter(status="delivered").count()
        now = time.monotonic()
        if done and first is None:
            first = now
        if done >= expected:
            return first, now
        time.sleep(0.05)
    sys.exit(
        f"timed out: {Delivery.objects.filter(status='delivered').count():,} of {expected:,} delivered"
    )


def _start_worker(database_url: str, scratch: Path) -> subprocess.Popen:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DJANGO_SETTINGS_MODULE", "DEBUG", "ENV_FILE", "CACHE_URL"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "smscampaigns.settings",
            "ENV_FILE": "/dev/null",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": database_url,
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "CONN_MAX_AGE": "600",
            "LOG_LEVEL": "WARNING",
            # The receivers listen on 127.0.0.1 over plain HTTP.
            "WEBHOOK_ALLOW_LOCAL_URLS": "true",
        }
    )
    log = (scratch / "worker.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_worker"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _empty_integrations() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE integrations_delivery, integrations_event, "
            "integrations_webhookendpoint RESTART IDENTITY CASCADE"
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"receiver on {port} did not start")


if __name__ == "__main__":
    main()
