"""Benchmark: the short link redirect (/l/<code>) under gunicorn on PostgreSQL.

Creates N sent messages of a campaign with one tracked link, then, for each gunicorn
worker count, requests one short link per message (a phone's user agent, so each is
a click that counts) from a few client processes over loopback, through
smscampaigns.wsgi (the ShortLinkApp in front of Django). Prints redirects/s and
latency percentiles, checks every answer was a 302 to the link, and checks in the
database that every click was stored and counted on its message. Target: at least
2,000 redirects/s with p99 under 20 ms on this 2-core machine.

    .venv/bin/python bench/redirects.py [--messages 60000] [--workers 2,3,4]
        [--clients N] [--database-url URL]
"""

import argparse
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from common import create_contacts, machine_load, phase, settle_database, setup_django
from loadgen import (
    Request,
    Summary,
    child_pids,
    http_request,
    machine_busy_seconds,
    process_cpu_seconds,
    run_load,
    summarize,
)
from receipts import (
    Credentials,
    _free_port,
    _machine_busy_cores,
    _throwaway_rsa_key,
    _warn_about_other_benchmarks,
    gunicorn,
    server_environment,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smscampaigns_bench_redirects"
REPO = Path(__file__).resolve().parent.parent
TARGET_PER_SECOND = 2000.0
TARGET_P99_MS = 20.0
DESTINATION = "https://shop.example.com/spring-sale?utm_source=sms"
# Every answer must be a redirect to the link's destination, not only a 302.
EXPECTED = f"\r\nLocation: {DESTINATION}\r\n".encode()
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=60_000)
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
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"PostgreSQL database (created if missing, emptied); default {DEFAULT_DATABASE_URL}",
    )
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    per_run = args.messages // len(worker_counts)
    if per_run <= args.warmup:
        sys.exit("--messages leaves no timed clicks after the warm-up")

    _warn_about_other_benchmarks()
    print(f"Setting up {args.messages:,} sent messages in {args.database_url}")
    print(f"  {machine_load()}")
    secret_key = secrets.token_urlsafe(50)
    with phase("migrate and empty the tables"):
        setup_django(args.database_url)
    with phase("contacts, campaign, link and messages"):
        message_ids = create_sent_messages(args.messages)
    with phase("ANALYZE and CHECKPOINT"):
        settle_database()
    with phase("codes"):
        codes = short_codes(message_ids, secret_key)

    credentials = Credentials.random()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-redirects-") as scratch:
        key_path = Path(scratch) / "vonage.key"
        key_path.write_bytes(_throwaway_rsa_key())
        for run, workers in enumerate(worker_counts):
            mine = list(
                zip(
                    message_ids[run * per_run : (run + 1) * per_run],
                    codes[run * per_run : (run + 1) * per_run],
                    strict=True,
                )
            )
            clients = args.clients or workers + 2
            summary = run_one(
                workers=workers,
                clients=clients,
                warmup=mine[: args.warmup],
                timed=mine[args.warmup :],
                secret_key=secret_key,
                credentials=credentials,
                key_path=key_path,
                database_url=args.database_url,
                log_path=Path(scratch) / f"gunicorn-{workers}.log",
            )
            results.append((workers, clients, summary))

    print("\nSummary")
    print(f"  ({machine_load()} at the end)")
    print(
        f"  {'workers':>7} {'clients':>7} {'redirects/s':>11} {'p50 ms':>7} "
        f"{'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} {'non-302':>7}  verdict"
    )
    for workers, clients, s in results:
        met = (
            s.per_second >= TARGET_PER_SECOND
            and s.p99_ms < TARGET_P99_MS
            and s.failures == 0
        )
        print(
            f"  {workers:>7} {clients:>7} {s.per_second:>11,.0f} {s.p50_ms:>7.1f} "
            f"{s.p95_ms:>7.1f} {s.p99_ms:>7.1f} {s.max_ms:>7.1f} {s.failures:>7}  "
            f"{'met' if met else 'MISSED'}"
        )
    print(
        f"  target: >= {TARGET_PER_SECOND:,.0f} redirects/s, p99 < {TARGET_P99_MS:.0f} "
        "ms, every answer a 302, every click stored"
    )


def create_sent_messages(count: int) -> list[int]:
    """``count`` contacts, a sent campaign with one tracked link, one delivered
    message per contact (inserted in SQL). Returns the message ids."""
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import Campaign, Message, TrackedLink
    from contacts.models import Contact

    create_contacts(count)
    campaign = Campaign.objects.create(
        name="Bench redirects",
        body=f"Spring sale: {DESTINATION}",
        provider="vonage",
        status=Campaign.Status.COMPLETED,
        started_at=timezone.now(),
        completed_at=timezone.now(),
    )
    TrackedLink.objects.create(campaign=campaign, position=0, url=DESTINATION)
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {qn(Message._meta.db_table)} (
                kind, campaign_id, contact_id, "to", body, provider, sender,
                provider_message_id, client_reference, status, error_code,
                error_reason, encoding, segments, currency, attempts, queued_at,
                submitted_at, status_changed_at, time_zone
            )
            SELECT 'campaign', %(campaign)s, c.id, c.phone, 'Spring sale', 'vonage',
                   '', gen_random_uuid()::text, gen_random_uuid(), %(delivered)s,
                   '', '', 'gsm7', 1, '', 1, now(), now(), now(), c.time_zone
            FROM {qn(Contact._meta.db_table)} c
            ORDER BY c.id
            """,
            {"campaign": campaign.pk, "delivered": Message.Status.DELIVERED},
        )
    return list(
        Message.objects.filter(campaign=campaign)
        .order_by("id")
        .values_list("id", flat=True)
    )


def short_codes(message_ids: Sequence[int], secret_key: str) -> list[str]:
    from campaigns.links import _derive, link_code

    key = _derive(secret_key)
    return [link_code(message_id, 0, key=key) for message_id in message_ids]


def plans(
    clicks: Sequence[tuple[int, str]], clients: int, *, port: int
) -> list[list[Request]]:
    return [
        [
            Request(
                "redirect",
                http_request(
                    port=port,
                    method="GET",
                    path=f"/l/{code}",
                    body=b"",
                    headers={"User-Agent": PHONE},
                ),
            )
            for _, code in clicks[client::clients]
        ]
        for client in range(clients)
    ]


def run_one(
    *,
    workers: int,
    clients: int,
    warmup: Sequence[tuple[int, str]],
    timed: Sequence[tuple[int, str]],
    secret_key: str,
    credentials: Credentials,
    key_path: Path,
    database_url: str,
    log_path: Path,
) -> Summary:
    from django.db import connection
    from django.db.models import Sum

    from campaigns.models import LinkClick, Message

    print(
        f"\n{workers} gunicorn sync workers, {clients} client processes, "
        f"{len(timed):,} timed clicks"
    )
    port = _free_port()
    env = server_environment(
        port=port, database_url=database_url, credentials=credentials, key_path=key_path
    )
    env["SECRET_KEY"] = secret_key
    connection.close()
    with gunicorn(
        workers=workers, port=port, env=env, app_dir=REPO, log_path=log_path
    ) as server:
        warm = run_load(
            port, plans(warmup, clients, port=port), accept=(302, 303), expect=EXPECTED
        )
        if warm.failures:
            sys.exit(
                f"warm-up: {warm.failures}\n{warm.sample_failure.decode('latin-1')}\n"
                f"{log_path.read_text()[-3000:]}"
            )
        clicks_before = LinkClick.objects.count()
        connection.close()
        idle = _machine_busy_cores(seconds=1.0)
        if idle > 0.3:
            print(f"  WARNING: {idle:.2f} cores busy before the run")
        print(f"  {machine_load()} before the run")
        requests = plans(timed, clients, port=port)
        server_pids = [server.pid, *child_pids(server.pid)]
        server_cpu_before = process_cpu_seconds(server_pids)
        busy_before = machine_busy_seconds()
        result = run_load(port, requests, accept=(302, 303), expect=EXPECTED)
        busy_after = machine_busy_seconds()
        server_cpu = process_cpu_seconds(server_pids) - server_cpu_before
        print(f"  {machine_load()} after the run")
    if result.failures:
        print(f"  non-302 answers: {result.failures}")
        print(result.sample_failure.decode("latin-1"))

    wall = result.wall_seconds
    summary = summarize(
        result.all_latencies(),
        sum(sum(by_status.values()) for by_status in result.failures.values()),
        wall,
    )
    print(
        f"  {summary.count:,} redirects in {wall:.1f} s: {summary.per_second:,.0f}/s, "
        f"p50 {summary.p50_ms:.1f} ms, p95 {summary.p95_ms:.1f} ms, "
        f"p99 {summary.p99_ms:.1f} ms, max {summary.max_ms:.1f} ms, "
        f"{summary.failures} not 302"
    )
    cores = os.cpu_count() or 1
    machine_cores = (busy_after - busy_before) / wall
    other = machine_cores - server_cpu / wall - result.client_cpu_seconds / wall
    print(
        f"  CPU in cores of {cores} (machine busy {machine_cores:.2f}): gunicorn "
        f"{server_cpu / wall:.2f}, load generator {result.client_cpu_seconds / wall:.2f}, "
        f"PostgreSQL and the rest {other:.2f}"
    )
    # The same per redirect: what the server side costs, apart from the load
    # generator that shares the cores.
    per = 1000 / summary.count if summary.count else 0.0
    print(
        f"  CPU per redirect: gunicorn {server_cpu * per:.3f} ms + PostgreSQL and the "
        f"rest {other * wall * per:.3f} ms = {(server_cpu + other * wall) * per:.3f} ms; "
        f"load generator {result.client_cpu_seconds * per:.3f} ms"
    )
    ids = [message_id for message_id, _ in timed]
    stored = LinkClick.objects.count() - clicks_before
    counted = Message.objects.filter(id__in=ids).aggregate(n=Sum("clicks"))["n"] or 0
    first = Message.objects.filter(id__in=ids, first_clicked_at__isnull=False).count()
    ok = stored == len(timed) and counted == len(timed) and first == len(timed)
    print(
        f"  database: {stored:,}/{len(timed):,} clicks stored, {counted:,} counted, "
        f"{first:,} first clicks: {'OK' if ok else 'MISMATCH'}"
    )
    return summary


if __name__ == "__main__":
    main()
