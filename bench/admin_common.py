"""Shared scaffolding for the admin page benchmarks (admin_pages.py, admin_contacts.py):
their common arguments, Django started without emptying the tables (``--reuse``), a
test client logged in as a superuser, and the timing of a page or a service call
(median and max over ``--runs`` after a warm-up, and the page's query count)."""

import argparse
import statistics
import time
from collections.abc import Callable

from common import setup_django, verdict

BENCH_USER = "bench-admin"
TARGET_MS = 500.0


def add_admin_arguments(
    parser: argparse.ArgumentParser, *, size: str, default_database_url: str
) -> None:
    """``--<size>`` (how many rows to build), ``--runs``, ``--reuse`` and
    ``--database-url``."""
    parser.add_argument(f"--{size}", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help=f"keep the data of a previous run with the same --{size}",
    )
    parser.add_argument(
        "--database-url",
        default=default_database_url,
        help=f"PostgreSQL database to use (created if missing); default {default_database_url}",
    )


def start_django(database_url: str) -> None:
    """As common.setup_django, without emptying the tables (``--reuse``), and with the
    test client's host allowed."""
    setup_django(database_url, empty_tables=False)

    from django.conf import settings

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]


def delete_bench_user() -> None:
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(username=BENCH_USER).delete()


def bench_user():
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username=BENCH_USER).first()
    if user is None:
        user = get_user_model().objects.create_superuser(
            BENCH_USER, "bench@example.com", "bench-password"
        )
    return user


def admin_client():
    """A Django test client logged in as the bench superuser."""
    from django.test import Client

    client = Client()
    client.force_login(bench_user())
    return client


def print_header(target_column: str) -> None:
    header = f"{'page':36} {'median':>9} {'max':>9} {'queries':>8}  {target_column}"
    print(header)
    print("-" * len(header))


def report_page(
    label: str,
    url: str,
    client,
    runs: int,
    *,
    data: dict | None = None,
    before: Callable[[], object] | None = None,
    target: float = TARGET_MS,
    show_target: bool = True,
) -> None:
    """Time ``runs`` requests of a page (a POST of ``data`` if given) after a warm-up,
    count the queries of one more, and print a line. ``before`` runs before each
    request (e.g. to clear a cache the page fills)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def request():
        return client.post(url, data) if data is not None else client.get(url)

    if before:
        before()
    response = request()  # warm up (templates, connection)
    if response.status_code != 200:
        print(f"{label:36} HTTP {response.status_code}")
        return
    timings = []
    for _ in range(runs):
        if before:
            before()
        started = time.perf_counter()
        response = request()
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    if before:
        before()
    with CaptureQueriesContext(connection) as queries:
        request()
    median, worst = statistics.median(timings), max(timings)
    target_text = f"< {target:g} ms " if show_target else ""
    print(
        f"{label:36} {median:7.1f}ms {worst:7.1f}ms {len(queries):8}  "
        f"{target_text}{verdict(worst, target, higher_is_better=False)}"
    )


def report_service[T](
    label: str,
    runs: int,
    call: Callable[[], T],
    *,
    before: Callable[[], object] | None = None,
) -> T:
    """Time ``runs`` calls of a service (``before`` untimed before each), print the
    median and max, and return the last call's result."""
    timings = []
    for _ in range(runs):
        if before:
            before()
        started = time.perf_counter()
        result = call()
        timings.append((time.perf_counter() - started) * 1000)
    print(f"{label:36} {statistics.median(timings):7.1f}ms {max(timings):7.1f}ms")
    return result
