"""Benchmark: STOP webhooks while the provider takes seconds to answer (issue #12, finding 6).

gunicorn (sync workers, DEBUG off, PostgreSQL) takes N signed Vonage inbound "STOP"
callbacks from C concurrent connections (an asyncio client in one process: connect,
send, read until gunicorn closes). The Vonage send API is bench/standin.py answering
every request after --latency seconds (5 s). ``run_worker`` (no broker) sends the
confirmations. Then it checks, from the database and the stand-in's log:

- every STOP stored (InboundMessage) and honoured (contact opted out, suppressed);
- every confirmation sent exactly once (the stand-in saw each number once);
- webhook latency: p50 / p99 / max, against the 50 ms target.

    python bench/stop_replies.py [--stops 2000] [--concurrency 50] [--latency 5]
        [--workers 4] [--direct-concurrency 200] [--rate 0] [--database-url URL]

``--rate R`` paces the arrivals at R STOPs/s in all (0: each connection sends its next
STOP as soon as the last is answered, i.e. a closed loop at full concurrency).

``--signup`` is the sign-up storm (issue #14) instead: N new numbers text a list's
keyword (JOIN), each gets the confirmation question; then each answers YES, becomes a
contact and a member and gets the welcome text. Both phases are timed alike, and it
checks every question and every welcome taken by the vendor exactly once.
"""

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

# This tree's code, not whichever checkout the virtualenv was installed from.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import standin
from common import (
    AREA_CODES,
    FIRST_EXCHANGE,
    LINES_PER_EXCHANGE,
    create_contacts,
    machine_load,
    setup_django,
    verdict,
)
from loadgen import http_request
from receipts import (
    Credentials,
    _free_port,
    _throwaway_rsa_key,
    server_environment,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smscampaigns_bench_stops"
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TARGET_P99_MS = 50.0
OUR_NUMBER = "14155550100"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stops", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--direct-concurrency", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument(
        "--apply",
        choices=["queued", "inline"],
        default="queued",
        help="SMS_WEBHOOK_APPLY: stored and applied by the worker (default), or in the request",
    )
    parser.add_argument(
        "--signup",
        action="store_true",
        help="a sign-up storm (keyword, then YES from each of N new numbers)",
    )
    args = parser.parse_args()

    setup_django(args.database_url)
    from django.db import connection

    from campaigns.models import Message
    from contacts.models import Contact, Suppression
    from webhooks.models import InboundMessage

    if args.signup:
        phones = _signup_setup(args.stops)
    else:
        create_contacts(args.stops)
        phones = list(Contact.objects.order_by("pk").values_list("phone", flat=True))
    connection.close()

    credentials = Credentials.random()
    scratch = Path(tempfile.mkdtemp(prefix="bench-stops-"))
    key_path = scratch / "vonage.key"
    key_path.write_bytes(_throwaway_rsa_key())
    # Vonage is https only: the stand-in serves TLS with a CA of its own.
    vendor = standin.spawn(
        "vonage",
        latency=args.latency,
        log=scratch / "vonage.jsonl",
        tls=True,
        cert_dir=scratch,
    )
    port = _free_port()
    env = server_environment(
        port=port,
        database_url=args.database_url,
        credentials=credentials,
        key_path=key_path,
    )
    env.update(
        {
            "VONAGE_API_URL": vendor.url,
            "REQUESTS_CA_BUNDLE": vendor.ca,
            "CELERY_BROKER_URL": "",
            "SMS_DIRECT_CONCURRENCY": str(args.direct_concurrency),
            "SMS_WEBHOOK_APPLY": args.apply,
        }
    )
    first_word = SIGNUP_KEYWORD if args.signup else "STOP"
    requests = [
        _signed_stop(port, phone, credentials.vonage_secret, first_word)
        for phone in phones
    ]
    print(
        f"{args.stops:,} {first_word}s, {args.concurrency} concurrent, provider answers after "
        f"{args.latency:g} s, gunicorn {args.workers} sync workers, "
        f"run_worker sending {args.direct_concurrency} at a time, callbacks applied "
        f"{'by the worker' if args.apply == 'queued' else 'in the request'} "
        f"({machine_load()})"
    )
    # Production settings serve only collected static files: gunicorn refuses to
    # start without them (as receipts.py does, collect them into the scratch folder).
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"],
        cwd=REPO, env=env, check=True,
    )  # fmt: skip
    server = _start(
        [str(BIN / "gunicorn"), "smscampaigns.wsgi", "--workers", str(args.workers),
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning"],
        env, scratch / "gunicorn.log",
    )  # fmt: skip
    worker = _start(
        [sys.executable, "manage.py", "run_worker"], env, scratch / "worker.log"
    )
    try:
        _wait_listening(port, server, scratch / "gunicorn.log")
        # Warm-up, not timed: every worker has imported Django, loaded the URLconf
        # and created the provider (and the database has seen the queries).
        warmup = [
            _signed_stop(
                port, f"+1999555{n:04d}", credentials.vonage_secret, first_word
            )
            for n in range(20 * args.workers)
        ]
        asyncio.run(_load(port, warmup, args.workers, 0))
        started = time.monotonic()
        latencies, statuses = asyncio.run(
            _load(port, requests, args.concurrency, args.rate)
        )
        load_seconds = time.monotonic() - started
        _wait_honoured(
            InboundMessage.objects.filter(
                from_number__in=phones,
                keyword="signup" if args.signup else "opt_out",
            ),
            args.stops,
            started,
            load_seconds,
            "JOINs" if args.signup else "STOPs",
        )
        sent_seconds = _wait_sent(Message, args, started)
        if args.signup:
            # The questions, as the vendor took them, before the YESes bring welcomes.
            asked = standin.summarize(scratch / "vonage.jsonl")
            _report_load("keywords", latencies, statuses, load_seconds)
            yeses = [
                _signed_stop(port, phone, credentials.vonage_secret, "YES")
                for phone in phones
            ]
            started = time.monotonic()
            latencies, statuses = asyncio.run(
                _load(port, yeses, args.concurrency, args.rate)
            )
            load_seconds = time.monotonic() - started
            _wait_honoured(
                InboundMessage.objects.filter(
                    from_number__in=phones, keyword="confirm"
                ),
                args.stops,
                started,
                load_seconds,
                "YESes",
            )
            welcomed_seconds = _wait_sent(Message, args, started)
    finally:
        for process in (worker, server):
            process.send_signal(signal.SIGTERM)
        for process in (worker, server):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        vendor.stop()

    summary = standin.summarize(scratch / "vonage.jsonl")
    if args.signup:
        _report_load("YESes", latencies, statuses, load_seconds)
        _report_signup(phones, asked, summary, sent_seconds, welcomed_seconds)
        print(f"logs in {scratch}")
        return
    ok = sum(1 for s in statuses if 200 <= s < 300)
    stored = InboundMessage.objects.filter(
        keyword="opt_out", from_number__in=phones
    ).count()
    opted_out = Contact.objects.filter(opted_out_at__isnull=False).count()
    suppressed = Suppression.objects.filter(phone__in=phones).count()
    replies = Message.objects.filter(kind="reply", to__in=phones)
    submitted = replies.filter(status="submitted").count()
    ms = sorted(value * 1000 for value in latencies)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(len(ms) * p))]

    print(f"webhooks: {ok:,} of {len(statuses):,} answered 2xx in {load_seconds:.1f} s ({len(statuses) / load_seconds:.0f}/s)")  # fmt: skip
    print(f"  latency p50 {pct(0.50):.1f} ms, p99 {pct(0.99):.1f} ms, max {ms[-1]:.1f} ms (target p99 < {TARGET_P99_MS:g} ms: {verdict(pct(0.99), TARGET_P99_MS, higher_is_better=False)})")  # fmt: skip
    print(f"STOPs stored {stored:,}, contacts opted out {opted_out:,}, suppressed {suppressed:,} (of {args.stops:,})")  # fmt: skip
    to_vendor = sum(summary.by_to[phone] for phone in phones)
    twice = sum(1 for phone in phones if summary.by_to[phone] > 1)
    print(f"confirmations: {replies.count():,} queued, {submitted:,} submitted; the vendor took {to_vendor:,} for these numbers ({twice} numbers more than once; {summary.duplicates} duplicates in all), all sent {sent_seconds:.0f} s after the first timed STOP")  # fmt: skip
    print(f"logs in {scratch}")


SIGNUP_KEYWORD = "JOIN"


def _signup_setup(count: int) -> list[str]:
    """A list with the keyword JOIN (default texts, 24 h window) and ``count`` numbers
    that are nobody's yet, as create_contacts would number them."""
    from contacts.models import ContactList, SignupKeyword

    SignupKeyword.objects.create(
        contact_list=ContactList.objects.create(name="Sign-ups"),
        keyword=SIGNUP_KEYWORD,
    )
    lines, areas = LINES_PER_EXCHANGE, len(AREA_CODES)
    return [
        f"+1{AREA_CODES[(i // lines) % areas]}{FIRST_EXCHANGE + i // lines // areas}"
        f"{i % lines:04d}"
        for i in range(count)
    ]


def _wait_honoured(applied, count: int, started: float, answered: float, what: str):
    """Wait until ``count`` texts are applied (stored and acted on); print when."""
    deadline = time.monotonic() + 300
    while applied.count() < count and time.monotonic() < deadline:
        time.sleep(0.1)
    took = time.monotonic() - started
    print(
        f"  {what} applied: {applied.count():,} of {count:,}, the last {took:.1f} s "
        f"after the first was sent ({max(took - answered, 0):.1f} s after the last "
        "was answered)"
    )


def _wait_sent(message_model, args, started: float) -> float:
    """Wait until the worker has sent every reply queued; seconds since ``started``."""
    deadline = (
        time.monotonic()
        + 120
        + args.stops * args.latency / max(args.direct_concurrency, 1)
    )
    while time.monotonic() < deadline:
        pending = message_model.objects.filter(kind="reply", status__in=["queued", "sending"]).count()  # fmt: skip
        if not pending:
            break
        time.sleep(1)
    return time.monotonic() - started


def _report_load(label: str, latencies, statuses, seconds: float) -> None:
    ok = sum(1 for s in statuses if 200 <= s < 300)
    ms = sorted(value * 1000 for value in latencies)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(len(ms) * p))]

    print(f"{label}: {ok:,} of {len(statuses):,} webhooks answered 2xx in {seconds:.1f} s ({len(statuses) / seconds:.0f}/s)")  # fmt: skip
    print(f"  latency p50 {pct(0.50):.1f} ms, p99 {pct(0.99):.1f} ms, max {ms[-1]:.1f} ms (target p99 < {TARGET_P99_MS:g} ms: {verdict(pct(0.99), TARGET_P99_MS, higher_is_better=False)})")  # fmt: skip


def _report_signup(phones, asked, summary, asked_seconds, welcomed_seconds) -> None:
    from campaigns.models import Message
    from contacts.models import ConsentEvent, Contact, ListMembership, PendingSignup

    once = sum(1 for phone in phones if asked.by_to[phone] == 1)
    twice = sum(1 for phone in phones if summary.by_to[phone] == 2)
    replies = Message.objects.filter(kind="reply", to__in=phones)
    questions = replies.filter(body__contains="Reply YES").count()
    welcomes = replies.filter(body__contains="Welcome").count()
    print(f"questions: {questions:,} queued; the vendor took {once:,} of {len(phones):,} numbers' question exactly once (all sent {asked_seconds:.0f} s after the first keyword)")  # fmt: skip
    print(f"welcomes: {welcomes:,} queued; the vendor took exactly 2 texts (question + welcome) for {twice:,} of {len(phones):,} numbers ({summary.duplicates - len(phones)} extra in all; all sent {welcomed_seconds:.0f} s after the first YES)")  # fmt: skip
    print(
        f"contacts {Contact.objects.count():,}, members {ListMembership.objects.count():,}, "
        f"sign-up consent events {ConsentEvent.objects.exclude(keyword='').count():,}, "
        f"still pending {PendingSignup.objects.count():,}"
    )


def _signed_stop(port: int, phone: str, secret: str, text: str = "STOP") -> bytes:
    import hashlib
    import json

    import jwt

    body = json.dumps(
        {
            "channel": "sms",
            "message_uuid": str(uuid.uuid4()),
            "to": OUR_NUMBER,
            "from": phone.lstrip("+"),
            "timestamp": "2025-01-01T12:00:00.000Z",
            "message_type": "text",
            "text": text,
            "sms": {"num_messages": "1", "keyword": text},
        },
        separators=(",", ":"),
    ).encode()
    claims = {
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": secrets.token_hex(4),
    }
    token = jwt.encode(claims, secret, algorithm="HS256")
    return http_request(
        port=port,
        method="POST",
        path="/webhooks/vonage/inbound/",
        body=body,
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
        },
    )


async def _load(
    port: int, requests: list[bytes], concurrency: int, rate: float
) -> tuple[list[float], list[int]]:
    latencies: list[float] = []
    statuses: list[int] = []
    queue = list(reversed(requests))
    start = time.monotonic()
    sent = 0

    async def one(data: bytes) -> None:
        began = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        await writer.drain()
        response = await reader.read()
        writer.close()
        latencies.append(time.monotonic() - began)
        statuses.append(int(response.split(b" ", 2)[1]) if response else 0)

    async def connection_loop() -> None:
        nonlocal sent
        while queue:
            data = queue.pop()
            if rate:
                due = start + sent / rate
                sent += 1
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            await one(data)

    await asyncio.gather(*(connection_loop() for _ in range(concurrency)))
    return latencies, statuses


def _start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _wait_listening(port: int, server: subprocess.Popen, log: Path) -> None:
    import socket

    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None:
            sys.exit(f"gunicorn exited at start-up:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"gunicorn is not listening:\n{log.read_text()}")
            time.sleep(0.1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
