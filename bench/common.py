"""Shared setup for the benchmark scripts: a dedicated PostgreSQL database, Django, and
set-based generators for contacts, lists, opt-outs and suppressions.

The scripts print figures; they assert nothing. They never touch the development or
test databases: everything happens in ``--database-url`` (default
``smscampaigns_bench``), which is created if missing, migrated, and emptied at start.
"""

import argparse
import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smscampaigns_bench"

# Area codes spread over the US time zones (Eastern to Hawaii), so contacts carry a
# realistic mix of time_zone values. libphonenumber accepts every exchange from 230 to
# 999 in each of them, which gives 20 x 770 x 10,000 = 154 million distinct numbers.
AREA_CODES = (
    "201", "212", "213", "215", "305", "312", "404", "415", "512", "602",
    "617", "702", "713", "720", "808", "907", "206", "303", "503", "615",
)  # fmt: skip
FIRST_EXCHANGE = 230
LINES_PER_EXCHANGE = 10_000
MAX_CONTACTS = len(AREA_CODES) * (1000 - FIRST_EXCHANGE) * LINES_PER_EXCHANGE
# Suppressed numbers that belong to no contact live in an area code no contact uses.
OUTSIDE_AREA_CODE = "646"

FIRST_NAMES = ("Ana", "Ben", "Chloé", "Dev", "Emma", "Farid", "Grace", "Hiro", "")
LAST_NAMES = ("Nguyen", "Smith", "García", "Okafor", "Kowalski", "Chen", "")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"PostgreSQL database to use (created if missing, emptied at start); "
        f"default {DEFAULT_DATABASE_URL}",
    )


def setup_django(
    database_url: str, *, cache_url: str | None = None, empty_tables: bool = True
) -> None:
    """Point the project's settings at the bench database, start Django, migrate and
    (unless ``empty_tables`` is false, for scripts that can reuse a previous run's
    data) empty the app tables."""
    if not database_url.startswith(("postgres://", "postgresql://")):
        sys.exit("The benchmarks need PostgreSQL: pass a postgres:// --database-url")
    os.environ["DJANGO_SETTINGS_MODULE"] = "smscampaigns.settings"
    os.environ["DATABASE_URL"] = database_url
    # DEBUG=true lets the settings start without a SECRET_KEY; the figures must not
    # depend on a developer's .env either, so it is not read.
    os.environ["DEBUG"] = "true"
    os.environ["ENV_FILE"] = str(Path(__file__).resolve().with_name(".env.absent"))
    if cache_url:
        os.environ["CACHE_URL"] = cache_url
    else:
        os.environ.pop("CACHE_URL", None)
    _create_database_if_missing(database_url)

    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    # With DEBUG on, every query is formatted and kept in connection.queries: that
    # costs time and memory the production configuration does not pay.
    settings.DEBUG = False
    call_command("migrate", verbosity=0)
    if empty_tables:
        truncate_app_tables()


def _create_database_if_missing(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    maintenance_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


def truncate_app_tables() -> None:
    """Empty every table of the project's apps, restarting their id sequences (so
    contact ids are 1..N in generation order)."""
    from django.apps import apps
    from django.db import connection

    tables = [
        model._meta.db_table
        for label in ("contacts", "campaigns", "webhooks")
        for model in apps.get_app_config(label).get_models(include_auto_created=True)
    ]
    quoted = ", ".join(connection.ops.quote_name(t) for t in tables)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")


@dataclass(frozen=True)
class Audience:
    contacts: int
    opted_out: int
    suppressed_contacts: int
    suppressed_others: int


def create_contacts(
    count: int, *, opted_out_every: int = 0, suppressed_every: int = 0
) -> Audience:
    """Insert ``count`` contacts with unique, valid US numbers in E.164, in SQL.

    Bulk inserts bypass ``Contact.save()``, which is fine here: the rows get what save()
    would give them (E.164 phone, country, the area code's time zone), computed once per
    area code instead of once per contact. Every ``opted_out_every``-th contact has
    opted out, and every ``suppressed_every``-th (offset by one, so the two sets are
    disjoint) is on the suppression list, along with as many numbers that belong to no
    contact.
    """
    from django.db import connection

    from contacts.models import Contact, Suppression
    from contacts.phones import parse_phone

    if count > MAX_CONTACTS:
        sys.exit(f"At most {MAX_CONTACTS:,} contacts can be generated")
    time_zones = [parse_phone(f"+1{code}2301234").time_zone for code in AREA_CODES]
    qn = connection.ops.quote_name
    contact_table = qn(Contact._meta.db_table)
    # Number i: area code i/10,000 mod 20, then exchange and line, so consecutive
    # blocks of 10,000 contacts share an area code.
    lines, areas = LINES_PER_EXCHANGE, len(AREA_CODES)
    area = f"1 + (g.i / {lines}) %% {areas}"
    number = (
        f"'+1' || (%(codes)s::text[])[{area}]"
        f" || ({FIRST_EXCHANGE} + g.i / {lines} / {areas})::text"
        f" || lpad((g.i %% {lines})::text, 4, '0')"
    )
    opted_out = f"g.i %% {opted_out_every} = 0" if opted_out_every else "false"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {contact_table} (
                phone, first_name, last_name, attributes, country, time_zone,
                time_zone_set, opted_out_at, opt_out_source, created_at, updated_at
            )
            SELECT {number},
                   (%(first_names)s::text[])[1 + g.i %% %(n_first)s],
                   (%(last_names)s::text[])[1 + g.i %% %(n_last)s],
                   jsonb_build_object('city', 'City ' || (g.i %% 97), 'tier', g.i %% 3),
                   'US',
                   (%(zones)s::text[])[{area}],
                   '',
                   CASE WHEN {opted_out} THEN now() END,
                   CASE WHEN {opted_out} THEN 'keyword' ELSE '' END,
                   now(), now()
            FROM generate_series(0, %(count)s - 1) AS g(i)
            ORDER BY g.i
            """,
            {
                "codes": list(AREA_CODES),
                "zones": time_zones,
                "first_names": list(FIRST_NAMES),
                "last_names": list(LAST_NAMES),
                "n_first": len(FIRST_NAMES),
                "n_last": len(LAST_NAMES),
                "count": count,
            },
        )
        suppressed_contacts = suppressed_others = 0
        if suppressed_every:
            suppression_table = qn(Suppression._meta.db_table)
            cursor.execute(
                f"""
                INSERT INTO {suppression_table}
                    (phone, reason, source, note, created_at)
                SELECT phone, 'manual', 'import', 'bench', now()
                FROM {contact_table}
                WHERE opted_out_at IS NULL AND id %% %s = 0
                """,
                [suppressed_every],
            )
            suppressed_contacts = cursor.rowcount
            cursor.execute(
                f"""
                INSERT INTO {suppression_table}
                    (phone, reason, source, note, created_at)
                SELECT '+1{OUTSIDE_AREA_CODE}' || (230 + g.i / 10000)::text
                       || lpad((g.i %% 10000)::text, 4, '0'),
                       'opt_out', 'keyword', 'bench', now()
                FROM generate_series(0, %s - 1) AS g(i)
                """,
                [min(suppressed_contacts, MAX_CONTACTS // len(AREA_CODES))],
            )
            suppressed_others = cursor.rowcount
        cursor.execute(
            f"SELECT count(*) FROM {contact_table} WHERE opted_out_at IS NOT NULL"
        )
        opted_out_count = cursor.fetchone()[0]
    return Audience(
        contacts=count,
        opted_out=opted_out_count,
        suppressed_contacts=suppressed_contacts,
        suppressed_others=suppressed_others,
    )


def add_to_list(name: str, where: str = "true") -> tuple[object, int]:
    """Create a contact list holding every contact matching ``where``, in one
    INSERT … SELECT. ``where`` is SQL on the contact ``c``, without ``%`` (use
    ``mod()``). Returns the list and its size."""
    from django.db import connection

    from contacts.models import Contact, ContactList, ListMembership

    contact_list = ContactList.objects.create(name=name)
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {qn(ListMembership._meta.db_table)}
                (contact_list_id, contact_id, added_at, source)
            SELECT %s, c.id, now(), 'import'
            FROM {qn(Contact._meta.db_table)} c
            WHERE {where}
            ORDER BY c.id
            """,
            [contact_list.pk],
        )
        return contact_list, cursor.rowcount


def settle_database() -> None:
    """Give the planner statistics and flush the setup's dirty pages, as a database
    that has been live for a while would have: the measured step then pays neither
    for missing statistics nor for a checkpoint of the setup's writes."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute("CHECKPOINT")


def scalar(sql: str, params: list | None = None) -> object:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


# --- Memory -------------------------------------------------------------------------

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_MB


def max_rss_mb() -> float:
    """The largest resident memory this process has had so far (Linux: KB), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """Samples RSS every ``interval`` seconds from a thread, for the peak of one step
    (ru_maxrss covers the whole process life, setup included)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self.peak = rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


@contextmanager
def phase(label: str) -> Iterator[None]:
    """Print how long a setup step took."""
    started = time.perf_counter()
    yield
    print(f"  {label}: {time.perf_counter() - started:.1f} s")


def machine_load() -> str:
    """The 1-minute load average against the core count: figures taken on a busy
    machine are not comparable with figures taken on an idle one."""
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def verdict(value: float, target: float, *, higher_is_better: bool) -> str:
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "MISSED"
