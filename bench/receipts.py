"""Benchmark: delivery-receipt ingestion under gunicorn on PostgreSQL.

Creates N messages already submitted to Vonage, Plivo and Sinch (a third each, with
the provider ids each vendor would have given them), then, for each gunicorn worker
count, posts two signed receipts per message (sent, then delivered), the three
vendors mixed, to the real webhook URLs, from a few client processes. Prints
requests/s and latency percentiles per vendor and overall, checks that every request
was answered 2xx, and checks in the database that every receipt was stored and
applied (each message of the run ends up delivered). Target: at least 1,000 receipts/s
with p99 under 50 ms on a 2-core machine.

    .venv/bin/python bench/receipts.py [--messages 30000] [--workers 2,3,4]
        [--clients N] [--database-url URL]

Each worker count gets its own slice of the messages (``--messages`` divided by the
number of worker counts), so no run replays another's receipts. The request bodies are
signed before each timed run (Vonage and Sinch signatures are only valid for five
minutes), so the load generator spends its CPU on sending, not signing.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import jwt
from common import create_contacts, phase, settle_database, setup_django, verdict
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from loadgen import (
    LoadResult,
    Request,
    Summary,
    child_pids,
    http_request,
    machine_busy_seconds,
    process_cpu_seconds,
    run_load,
    summarize,
)
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smscampaigns_bench_receipts"
REPO = Path(__file__).resolve().parent.parent
VENDORS = ("vonage", "plivo", "sinch")
TARGET_PER_SECOND = 1000.0
TARGET_P99_MS = 50.0
# The vendors put up to 1,000 recipients in one request: Sinch names the batch in its
# receipts, Plivo's callback URL names the batch's first message.
BATCH_SIZE = 1000
# How many of its messages a client process has "sent" before their "delivered"
# receipts start arriving, so each message gets sent first, delivered later.
DELIVERY_LAG = 10
OUR_NUMBER = "14155550100"

# Each vendor's receipts for "handed to the carrier" and "delivered to the handset".
SENT, DELIVERED = "sent", "delivered"


@dataclass(frozen=True)
class Target:
    """A submitted message, as a vendor knows it."""

    id: int
    vendor: str
    to: str
    provider_message_id: str
    reference: str
    batch_reference: str


@dataclass(frozen=True)
class Credentials:
    vonage_secret: str
    plivo_auth_id: str
    plivo_token: str
    sinch_secret: str

    @classmethod
    def random(cls) -> "Credentials":
        return cls(
            vonage_secret=secrets.token_urlsafe(32),
            plivo_auth_id="MA" + secrets.token_hex(9).upper(),
            plivo_token=secrets.token_urlsafe(30),
            sinch_secret=secrets.token_urlsafe(32),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument(
        "--workers",
        default="2,3,4",
        help="gunicorn (sync) worker counts to try, comma-separated; default 2,3,4",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=0,
        help="client processes, one request in flight each; default: workers + 2",
    )
    parser.add_argument(
        "--warmup-messages",
        type=int,
        default=150,
        help="messages per run whose receipts warm the workers up, untimed",
    )
    parser.add_argument(
        "--app-dir",
        type=Path,
        default=REPO,
        help="project tree gunicorn serves (e.g. a `git archive HEAD` export while "
        "the working tree is mid-edit); default: this repository",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"PostgreSQL database to use (created if missing, emptied at start); "
        f"default {DEFAULT_DATABASE_URL}",
    )
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    per_run = args.messages // len(worker_counts)
    if per_run <= args.warmup_messages:
        sys.exit("--messages leaves no timed receipts after the warm-up")

    _warn_about_other_benchmarks()
    print(f"Setting up {args.messages:,} submitted messages in {args.database_url}")
    with phase("migrate and empty the tables"):
        setup_django(args.database_url)
    with phase("contacts, campaigns and messages"):
        targets = create_submitted_messages(args.messages)
    with phase("ANALYZE and CHECKPOINT"):
        settle_database()

    credentials = Credentials.random()
    results: list[tuple[int, int, Summary]] = []
    with tempfile.TemporaryDirectory(prefix="bench-receipts-") as scratch:
        key_path = Path(scratch) / "vonage.key"
        key_path.write_bytes(_throwaway_rsa_key())
        for run, workers in enumerate(worker_counts):
            run_targets = targets[run * per_run : (run + 1) * per_run]
            warmup, timed = (
                run_targets[: args.warmup_messages],
                run_targets[args.warmup_messages :],
            )
            clients = args.clients or workers + 2
            summary = run_one(
                workers=workers,
                clients=clients,
                warmup=warmup,
                timed=timed,
                credentials=credentials,
                key_path=key_path,
                database_url=args.database_url,
                app_dir=args.app_dir,
                log_path=Path(scratch) / f"gunicorn-{workers}.log",
            )
            results.append((workers, clients, summary))

    print("\nSummary (all vendors)")
    print(
        f"  {'workers':>7} {'clients':>7} {'receipts/s':>10} {'p50 ms':>7} "
        f"{'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} {'non-2xx':>7}  verdict"
    )
    for workers, clients, s in results:
        met = (
            verdict(s.per_second, TARGET_PER_SECOND, higher_is_better=True) == "met"
            and verdict(s.p99_ms, TARGET_P99_MS, higher_is_better=False) == "met"
            and s.failures == 0
        )
        print(
            f"  {workers:>7} {clients:>7} {s.per_second:>10,.0f} {s.p50_ms:>7.1f} "
            f"{s.p95_ms:>7.1f} {s.p99_ms:>7.1f} {s.max_ms:>7.1f} {s.failures:>7}  "
            f"{'met' if met else 'MISSED'}"
        )
    print(
        f"  target: >= {TARGET_PER_SECOND:,.0f} receipts/s, p99 < {TARGET_P99_MS:.0f} ms, "
        f"no non-2xx"
    )


# --- Data ------------------------------------------------------------------------------


def create_submitted_messages(count: int) -> list[Target]:
    """``count`` contacts, one campaign per vendor, and one submitted message per
    contact (contact i goes to vendor i mod 3), inserted in SQL. Returns the messages in
    id order, so consecutive messages cycle through the vendors."""
    from django.db import connection

    from campaigns.models import Campaign, Message
    from contacts.models import Contact

    create_contacts(count)
    campaigns = [
        Campaign.objects.create(
            name=f"Bench receipts via {vendor}",
            body="Spring sale: 20% off this weekend. Reply STOP to opt out.",
            provider=vendor,
            status=Campaign.Status.SENDING,
        ).pk
        for vendor in VENDORS
    ]
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        # Vonage and Plivo give each message its own UUID; Sinch gives a whole batch
        # one id and tells its recipients apart by number.
        cursor.execute(
            f"""
            INSERT INTO {qn(Message._meta.db_table)} (
                kind, campaign_id, contact_id, "to", body, provider, sender,
                provider_message_id, client_reference, status, error_code,
                error_reason, encoding, segments, currency, attempts, queued_at,
                submitted_at, status_changed_at, time_zone
            )
            SELECT 'campaign', (%(campaigns)s::bigint[])[1 + c.id %% 3], c.id,
                   c.phone, 'Spring sale: 20%% off this weekend. Reply STOP to opt out.',
                   (%(vendors)s::text[])[1 + c.id %% 3], '',
                   CASE WHEN c.id %% 3 = 2
                        THEN 'BENCHSINCHBATCH' || lpad((c.id / 3 / %(batch)s)::text, 11, '0')
                        ELSE gen_random_uuid()::text END,
                   gen_random_uuid(), %(submitted)s, '', '', 'gsm7', 1, '', 1,
                   now(), now(), now(), c.time_zone
            FROM {qn(Contact._meta.db_table)} c
            ORDER BY c.id
            """,
            {
                "campaigns": campaigns,
                "vendors": list(VENDORS),
                "batch": BATCH_SIZE,
                "submitted": Message.Status.SUBMITTED,
            },
        )
    rows = Message.objects.order_by("id").values_list(
        "id", "provider", "to", "provider_message_id", "client_reference"
    )
    targets, seen_per_vendor, batch_reference = [], dict.fromkeys(VENDORS, 0), {}
    for pk, vendor, to, provider_message_id, reference in rows.iterator(2000):
        # The first message of each batch of 1,000 names the batch.
        position = seen_per_vendor[vendor]
        seen_per_vendor[vendor] += 1
        if position % BATCH_SIZE == 0:
            batch_reference[vendor] = str(reference)
        targets.append(
            Target(
                id=pk,
                vendor=vendor,
                to=to,
                provider_message_id=provider_message_id,
                reference=str(reference),
                batch_reference=batch_reference[vendor],
            )
        )
    return targets


# --- Signed receipts, as each vendor sends them -------------------------------------


def signed_receipt(
    target: Target, stage: str, *, port: int, credentials: Credentials
) -> Request:
    if target.vendor == "vonage":
        return _vonage_receipt(target, stage, port, credentials)
    if target.vendor == "plivo":
        return _plivo_receipt(target, stage, port, credentials)
    return _sinch_receipt(target, stage, port, credentials)


def _vonage_receipt(
    target: Target, stage: str, port: int, credentials: Credentials
) -> Request:
    payload = {
        "message_uuid": target.provider_message_id,
        "to": target.to.lstrip("+"),
        "from": OUR_NUMBER,
        "timestamp": _vendor_time(),
        # "buffered": the carrier has it (Vonage's "sent").
        "status": "buffered" if stage == SENT else "delivered",
        "channel": "sms",
        "client_ref": target.reference,
        "sms": {"count_total": "1"},
    }
    if stage == DELIVERED:
        payload["usage"] = {"currency": "EUR", "price": "0.0333"}
    # Vonage signs the compact JSON it sends: an HS256 JWT carrying its SHA-256.
    body = json.dumps(payload, separators=(",", ":")).encode()
    token = jwt.encode(
        {
            "iat": int(time.time()),
            "jti": str(uuid.uuid4()),
            "iss": "Vonage",
            "payload_hash": hashlib.sha256(body).hexdigest(),
            "api_key": "a1b2c3d4",
        },
        credentials.vonage_secret,
        algorithm="HS256",
    )
    return Request(
        "vonage",
        http_request(
            port=port,
            method="POST",
            path="/webhooks/vonage/status/",
            body=body,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token}",
            },
        ),
    )


def _plivo_receipt(
    target: Target, stage: str, port: int, credentials: Credentials
) -> Request:
    params = {
        "MessageUUID": target.provider_message_id,
        "To": target.to.lstrip("+"),
        "From": OUR_NUMBER,
        "Type": "sms",
        "Status": stage,
        "Units": "1",
        "TotalRate": "0.0050",
        "TotalAmount": "0.0050",
        "MCC": "310",
        "MNC": "410",
        "ErrorCode": "" if stage == SENT else "000",
        "Sequence": "1" if stage == SENT else "2",
        "MessageTime": "2026-01-01 12:00:00.000000",
        "SentTime": "2026-01-01 12:00:01.000000",
    }
    if stage == DELIVERED:
        params["DeliveryReportTime"] = "2026-01-01 12:00:04.000000"
    # V3 signs the full URL Plivo called (our ?ref= included), the sorted form
    # parameters and a nonce.
    path = f"/webhooks/plivo/status/?ref={target.batch_reference}"
    nonce = str(secrets.randbelow(10**20)).zfill(20)
    signature = get_signature_v3(
        credentials.plivo_token,
        construct_post_url(f"http://127.0.0.1:{port}{path}", params),
        nonce,
    ).decode()
    return Request(
        "plivo",
        http_request(
            port=port,
            method="POST",
            path=path,
            body=urlencode(params).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Plivo-Signature-V3": signature,
                "X-Plivo-Signature-V3-Nonce": nonce,
                "X-Plivo-Signature-Ma-V3": signature,
            },
        ),
    )


def _sinch_receipt(
    target: Target, stage: str, port: int, credentials: Credentials
) -> Request:
    body = json.dumps(
        {
            "type": "recipient_delivery_report_sms",
            "batch_id": target.provider_message_id,
            "recipient": target.to.lstrip("+"),
            "code": 401 if stage == SENT else 0,
            "status": "Dispatched" if stage == SENT else "Delivered",
            "at": _vendor_time(),
            "operator_status_at": _vendor_time(),
            "client_reference": target.batch_reference,
        }
    ).encode()
    # Sinch's HMAC covers body.nonce.timestamp.
    nonce = secrets.token_hex(13).upper()
    timestamp = str(int(time.time()))
    digest = hmac.new(
        credentials.sinch_secret.encode(),
        b".".join([body, nonce.encode(), timestamp.encode()]),
        hashlib.sha256,
    ).digest()
    return Request(
        "sinch",
        http_request(
            port=port,
            method="POST",
            path="/webhooks/sinch/status/",
            body=body,
            headers={
                "Content-Type": "application/json",
                "x-sinch-webhook-signature": base64.b64encode(digest).decode(),
                "x-sinch-webhook-signature-nonce": nonce,
                "x-sinch-webhook-signature-timestamp": timestamp,
                "x-sinch-webhook-signature-algorithm": "HmacSHA256",
            },
        ),
    )


def _vendor_time() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def client_plans(
    targets: Sequence[Target], clients: int, *, port: int, credentials: Credentials
) -> list[list[Request]]:
    """Deal the messages out to the clients; each client sends its messages' "sent"
    receipts in order, each one's "delivered" following DELIVERY_LAG sends later, so
    every receipt is a real status change and the vendors stay mixed."""
    plans = []
    for client in range(clients):
        mine = targets[client::clients]
        plan = []
        for index, target in enumerate(mine):
            plan.append(
                signed_receipt(target, SENT, port=port, credentials=credentials)
            )
            if index >= DELIVERY_LAG:
                plan.append(
                    signed_receipt(
                        mine[index - DELIVERY_LAG],
                        DELIVERED,
                        port=port,
                        credentials=credentials,
                    )
                )
        for target in mine[max(0, len(mine) - DELIVERY_LAG) :]:
            plan.append(
                signed_receipt(target, DELIVERED, port=port, credentials=credentials)
            )
        plans.append(plan)
    return plans


# --- gunicorn --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _throwaway_rsa_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def server_environment(
    *, port: int, database_url: str, credentials: Credentials, key_path: Path
) -> dict[str, str]:
    """A production-like configuration: DEBUG off, persistent connections, no .env."""
    env = {
        name: value
        for name, value in os.environ.items()
        # Nothing of this process's own Django setup leaks into the server's.
        if name not in {"DJANGO_SETTINGS_MODULE", "DEBUG", "ENV_FILE", "CACHE_URL"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "smscampaigns.settings",
            "ENV_FILE": "/dev/null",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": database_url,
            # Production settings serve only collected static files (gunicorn() collects).
            "STATIC_ROOT": str(key_path.parent / "static"),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "CONN_MAX_AGE": "600",
            "LOG_LEVEL": "WARNING",
            "VONAGE_APPLICATION_ID": str(uuid.uuid4()),
            "VONAGE_PRIVATE_KEY_PATH": str(key_path),
            "VONAGE_NUMBER": f"+{OUR_NUMBER}",
            "VONAGE_SIGNATURE_SECRET": credentials.vonage_secret,
            "PLIVO_AUTH_ID": credentials.plivo_auth_id,
            "PLIVO_AUTH_TOKEN": credentials.plivo_token,
            "PLIVO_SENDER_ID": OUR_NUMBER,
            "SINCH_SERVICE_PLAN_ID": secrets.token_hex(16),
            "SINCH_API_TOKEN": secrets.token_hex(16),
            "SINCH_NUMBER": f"+{OUR_NUMBER}",
            "SINCH_WEBHOOK_SECRET": credentials.sinch_secret,
        }
    )
    return env


@contextmanager
def gunicorn(
    *, workers: int, port: int, env: dict[str, str], app_dir: Path, log_path: Path
) -> Iterator[subprocess.Popen]:
    """A gunicorn master with ``workers`` sync workers, listening once this yields."""
    command = [
        str(REPO / ".venv/bin/gunicorn"),
        "smscampaigns.wsgi",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    if not (Path(env["STATIC_ROOT"]) / "staticfiles.json").exists():
        subprocess.run(
            [str(REPO / ".venv/bin/python"), "manage.py", "collectstatic",
             "--no-input", "-v0"],
            cwd=app_dir, env=env, check=True,
        )  # fmt: skip
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command, cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                sys.exit(f"gunicorn exited at start-up:\n{log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit(f"gunicorn is not listening:\n{log_path.read_text()}")
                time.sleep(0.1)
        yield server
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# --- One run ---------------------------------------------------------------------------


def run_one(
    *,
    workers: int,
    clients: int,
    warmup: Sequence[Target],
    timed: Sequence[Target],
    credentials: Credentials,
    key_path: Path,
    database_url: str,
    app_dir: Path,
    log_path: Path,
) -> Summary:
    from django.db import connection

    from campaigns.models import DeliveryEvent, Message
    from webhooks.models import RejectedCallback

    print(
        f"\n{workers} gunicorn sync workers, {clients} client processes, "
        f"{2 * len(timed):,} timed receipts ({len(timed):,} messages x sent, delivered)"
    )
    port = _free_port()
    env = server_environment(
        port=port, database_url=database_url, credentials=credentials, key_path=key_path
    )
    # The client processes are forked: they must not share this connection's socket.
    connection.close()
    with gunicorn(
        workers=workers, port=port, env=env, app_dir=app_dir, log_path=log_path
    ) as server:
        warm = run_load(
            port, client_plans(warmup, clients, port=port, credentials=credentials)
        )
        if warm.failures:
            _fail(warm, log_path, "warm-up")
        last_event_id = (
            DeliveryEvent.objects.order_by("-id").values_list("id", flat=True).first()
            or 0
        )
        rejected_before = RejectedCallback.objects.count()
        connection.close()
        idle = _machine_busy_cores(seconds=1.0)
        if idle > 0.3:
            print(
                f"  WARNING: {idle:.2f} cores busy before the run with no load on "
                f"it: figures will be distorted"
            )
        with phase(f"sign {2 * len(timed):,} receipts"):
            plans = client_plans(timed, clients, port=port, credentials=credentials)
        server_pids = [server.pid, *child_pids(server.pid)]
        server_cpu_before = process_cpu_seconds(server_pids)
        busy_before = machine_busy_seconds()
        result = run_load(port, plans)
        busy_after = machine_busy_seconds()
        server_cpu = process_cpu_seconds(server_pids) - server_cpu_before
    if result.failures:
        _fail(result, log_path, "timed run", exit_now=False)

    wall = result.wall_seconds
    print(
        f"  {'':8} {'receipts':>8} {'per s':>7} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7} {'non-2xx':>7}"
    )
    for vendor in VENDORS:
        failures = sum(result.failures.get(vendor, {}).values())
        _print_row(vendor, summarize(result.latencies.get(vendor, []), failures, wall))
    overall = summarize(
        result.all_latencies(),
        sum(sum(by_status.values()) for by_status in result.failures.values()),
        wall,
    )
    _print_row("all", overall)

    cores = os.cpu_count() or 1
    machine_cores = (busy_after - busy_before) / wall
    other = machine_cores - server_cpu / wall - result.client_cpu_seconds / wall
    print(
        f"  wall {wall:.1f} s; CPU in cores of {cores} "
        f"(machine busy {machine_cores:.2f}): gunicorn {server_cpu / wall:.2f}, "
        f"load generator {result.client_cpu_seconds / wall:.2f}, "
        f"PostgreSQL and the rest {other:.2f}"
    )

    # Every receipt stored, applied to its message, and every message delivered.
    timed_ids = [target.id for target in timed]
    new_events = DeliveryEvent.objects.filter(id__gt=last_event_id)
    stored = new_events.count()
    applied = new_events.filter(
        message_id__in=timed_ids, applied_at__isnull=False
    ).count()
    delivered = Message.objects.filter(
        id__in=timed_ids, status=Message.Status.DELIVERED
    ).count()
    rejected = RejectedCallback.objects.count() - rejected_before
    expected = 2 * len(timed)
    checks_ok = (
        stored == expected
        and applied == expected
        and delivered == len(timed)
        and not rejected
    )
    print(
        f"  database: {stored:,}/{expected:,} receipts stored, {applied:,} applied, "
        f"{delivered:,}/{len(timed):,} messages delivered, {rejected} rejected "
        f"callbacks: {'OK' if checks_ok else 'MISMATCH'}"
    )
    return overall


def _print_row(label: str, s: Summary) -> None:
    print(
        f"  {label:8} {s.count:>8,} {s.per_second:>7,.0f} {s.p50_ms:>7.1f} "
        f"{s.p95_ms:>7.1f} {s.p99_ms:>7.1f} {s.max_ms:>7.1f} {s.failures:>7}"
    )


def _fail(
    result: LoadResult, log_path: Path, stage: str, *, exit_now: bool = True
) -> None:
    message = (
        f"  {stage}: non-2xx answers {result.failures}; first one:\n"
        f"{result.sample_failure.decode('latin-1')}\n"
        f"--- gunicorn log (tail) ---\n{log_path.read_text()[-3000:]}"
    )
    if exit_now:
        sys.exit(message)
    print(message)


def _machine_busy_cores(*, seconds: float) -> float:
    before = machine_busy_seconds()
    time.sleep(seconds)
    return (machine_busy_seconds() - before) / seconds


def _warn_about_other_benchmarks() -> None:
    others = subprocess.run(
        ["pgrep", "-af", "bench/"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    # This script's own command line, and its launchers' (flock, a shell), match too.
    mine = _ancestors()
    others = [line for line in others if int(line.split()[0]) not in mine]
    if others:
        print("WARNING: another benchmark is running; figures will be distorted:")
        for line in others:
            print(f"  {line}")


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


if __name__ == "__main__":
    main()
