"""Benchmark: a 1,000,000-message campaign export (and a 1,000,000-contact export)
through the real API views under gunicorn on PostgreSQL, with the web process's memory.

Builds N contacts (two attributes each, half of them in two lists) and one campaign of
N messages in a realistic mix of outcomes, starts gunicorn with one sync worker (so
"the web process" is one process), and downloads

- ``GET /api/v1/campaigns/<id>/export/`` (every recipient's result), then
- ``GET /api/v1/contacts/export/`` (every contact, lists and attributes),

reading the stream as a client would. While each download runs, the worker's resident
memory (``/proc/<pid>/statm``) is sampled every 10 ms: before the request, the peak
during it and after it. Flat is the target: the peak must not grow with the size of
the export (compare ``--messages 100000`` with the default). Also prints rows/s and
MB/s, and checks the row count against the database.

    .venv/bin/python bench/exports.py [--messages N] [--reuse] [--database-url URL]

(From a worktree other than the one the virtualenv was installed from, put the tree
first: ``PYTHONPATH=$PWD``.)

``--reuse`` keeps the data of a previous run with the same ``--messages``.
"""

import argparse
import http.client
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import (
    add_to_list,
    create_contacts,
    machine_load,
    phase,
    scalar,
    settle_database,
    setup_django,
    truncate_app_tables,
)
from loadgen import child_pids

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smscampaigns_bench_exports"
REPO = Path(__file__).resolve().parent.parent
CAMPAIGN_NAME = "Bench: export"
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20

# Outcome of message i (per mille), with the error a provider would give.
OUTCOMES = [
    (880, "delivered", "", ""),
    (50, "sent", "", ""),
    (30, "undelivered", "30003", "Unreachable destination handset"),
    (20, "failed", "30006", "Landline or unreachable carrier"),
    (20, "failed", "opted_out", "Not sent: the recipient had opted out"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the data of a previous run with the same --messages",
    )
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    args = parser.parse_args()

    print(f"Export of {args.messages:,} messages and contacts from {args.database_url}")
    setup_django(args.database_url, empty_tables=False)
    if not (args.reuse and _built(args.messages)):
        truncate_app_tables()
        with phase(f"{args.messages:,} contacts, two lists, one campaign"):
            _build(args.messages)
        with phase("ANALYZE and CHECKPOINT"):
            settle_database()

    from campaigns.models import Campaign
    from smscampaigns.models import ApiKey, Scope

    campaign = Campaign.objects.get(name=CAMPAIGN_NAME)
    _, raw_key = ApiKey.generate(name="bench exports", scopes=[Scope.READ])
    port = args.port or _free_port()
    contacts = scalar("SELECT count(*) FROM contacts_contact")
    print(machine_load())
    with (
        tempfile.TemporaryDirectory() as scratch,
        gunicorn(
            port=port, database_url=args.database_url, scratch=Path(scratch)
        ) as server,
    ):
        (worker,) = _wait_for_workers(server.pid, 1)
        headers = {"Authorization": f"Token {raw_key}"}
        # Warm-up: the worker imports and connects before "before" is read.
        _download(port, "/api/v1/campaigns/0/export/", headers, expect=404)
        for label, path, expected in (
            ("campaign results", f"/api/v1/campaigns/{campaign.pk}/export/", args.messages),
            ("contacts", "/api/v1/contacts/export/", contacts),
        ):  # fmt: skip
            _measure(label, port, path, headers, worker, expected)
    print(machine_load())


def _measure(label, port, path, headers, worker: int, expected: int) -> None:
    before = worker_rss_mb(worker)
    sampler = Sampler(worker)
    with sampler:
        started = time.perf_counter()
        first_byte, rows, size = _download(port, path, headers)
        elapsed = time.perf_counter() - started
    time.sleep(0.5)
    after = worker_rss_mb(worker)
    check = "ok" if rows == expected else f"MISMATCH (database: {expected:,})"
    print(
        f"\n{label}: {rows:,} rows ({check}), {size / 2**20:,.1f} MB in {elapsed:.1f} s"
        f" = {rows / elapsed:,.0f} rows/s, {size / 2**20 / elapsed:.1f} MB/s;"
        f" first byte after {first_byte * 1000:.0f} ms"
    )
    print(
        f"  web process RSS: before {before:.1f} MB, peak during {sampler.peak:.1f} MB"
        f" (+{sampler.peak - before:.1f}), after {after:.1f} MB"
        f" ({len(sampler.samples)} samples)"
    )
    quarters = _quartiles(sampler.samples)
    print("  RSS over the download (0 %, 25 %, 50 %, 75 %, 100 %): " + quarters)


def _quartiles(samples: list[float]) -> str:
    if not samples:
        return "-"
    points = [samples[min(len(samples) - 1, len(samples) * q // 4)] for q in range(5)]
    return ", ".join(f"{p:.1f}" for p in points) + " MB"


def _download(
    port: int, path: str, headers: dict[str, str], *, expect: int = 200
) -> tuple[float, int, int]:
    """GET ``path`` and read it to the end: seconds to the first byte, rows (lines
    after the header) and bytes."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    if response.status != expect:
        sys.exit(f"{path}: HTTP {response.status}: {response.read()[:500]!r}")
    first_byte = None
    lines = size = 0
    while chunk := response.read(1 << 16):
        if first_byte is None:
            first_byte = time.perf_counter() - started
        lines += chunk.count(b"\n")
        size += len(chunk)
    connection.close()
    return first_byte or 0.0, max(lines - 1, 0), size


class Sampler:
    """The peak (and every sample) of a process's RSS, every 10 ms from a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak(self) -> float:
        return max(self.samples, default=0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(worker_rss_mb(self.pid))
            self._stop.wait(0.01)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def worker_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_MB


# --- Data ---------------------------------------------------------------------------


def _built(messages: int) -> bool:
    from campaigns.models import Campaign, Message

    campaign = Campaign.objects.filter(name=CAMPAIGN_NAME).first()
    return (
        campaign is not None
        and Message.objects.filter(campaign=campaign).count() == messages
    )


def _build(messages: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import Campaign

    create_contacts(messages, opted_out_every=50)
    add_to_list("Bench: newsletter", "mod(c.id, 2) = 0")
    add_to_list("Bench: VIP", "mod(c.id, 4) = 0")
    now = timezone.now()
    campaign = Campaign.objects.create(
        name=CAMPAIGN_NAME,
        body="Hi {first_name|there}, 30% off everything until Sunday.",
        provider="simulator",
        status=Campaign.Status.COMPLETED,
        started_at=now,
        completed_at=now,
    )
    cases, lower = [], 0
    for share, status, code, reason in OUTCOMES:
        lower += share
        cases.append(
            f"WHEN (c.id::bigint * 7919) %% 1000 < {lower} "
            f"THEN ARRAY['{status}', '{code}', '{reason}']"
        )
    assert lower == 1000
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO campaigns_message (
                kind, campaign_id, contact_id, "to", body, provider, sender,
                provider_message_id, client_reference, status, error_code, error_reason,
                encoding, segments, price, currency, attempts, queued_at, handed_at,
                submitted_at, status_changed_at, time_zone
            )
            SELECT 'campaign', %(campaign)s, c.id, c.phone,
                   'Hi ' || coalesce(nullif(c.first_name, ''), 'there')
                       || ', 30%% off everything until Sunday.',
                   'simulator', '', 'SIM' || lpad(to_hex(c.id), 10, '0'),
                   gen_random_uuid(), o[1], o[2], o[3], 'gsm7', 1 + c.id %% 2,
                   CASE WHEN o[2] <> 'opted_out' THEN 0.0075 END,
                   CASE WHEN o[2] <> 'opted_out' THEN 'USD' ELSE '' END,
                   1, %(now)s, %(now)s, %(now)s,
                   %(now)s + interval '5 seconds', c.time_zone
            FROM contacts_contact c,
                 LATERAL (SELECT CASE {" ".join(cases)} END AS o) x
            ORDER BY c.id
            """,
            {"campaign": campaign.pk, "now": now},
        )


# --- The web process ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_workers(master: int, count: int) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = child_pids(master)
        if len(workers) == count:
            return workers
        time.sleep(0.1)
    sys.exit("gunicorn's worker did not start")


@contextmanager
def gunicorn(
    *, port: int, database_url: str, scratch: Path
) -> Iterator[subprocess.Popen]:
    """gunicorn with one sync worker on ``port``, production settings, no .env."""
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
            "STATIC_ROOT": str(scratch / "static"),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "CONN_MAX_AGE": "600",
            "LOG_LEVEL": "WARNING",
            # No throttling of the bench's few requests.
            "API_RATE_LIMIT": "100000/min",
        }
    )
    # Production settings refuse to start without collected static files.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"],
        cwd=REPO, env=env, check=True,
    )  # fmt: skip
    log_path = scratch / "gunicorn.log"
    command = [
        str(REPO / ".venv/bin/gunicorn"),
        "smscampaigns.wsgi",
        "--workers", "1",
        "--worker-class", "sync",
        # A long download must not be cut by the worker timeout (see README).
        "--timeout", "600",
        "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning",
        "--no-control-socket",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
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
        problems = log_path.read_text()
        if problems.strip():
            print(f"gunicorn log:\n{problems[-3000:]}")


if __name__ == "__main__":
    main()
