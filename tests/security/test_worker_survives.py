"""Finding 7: run_worker exited when its database connection dropped, and sending
stopped until someone restarted it. It now reconnects with backoff, logs it, goes on
after a failing round (a provider, a bug) and exits only on a signal."""

import os
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest

from django.core.management import call_command
from django.db import OperationalError, connection
from django.utils import timezone

from campaigns.management.commands import run_worker
from campaigns.models import Message
from tests.factories import MessageFactory

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_failing_round_is_logged_and_the_worker_goes_on(monkeypatch, caplog):
    calls = []

    def round_(self, slice_seconds, stop):
        calls.append(len(calls))
        if len(calls) == 1:
            raise OperationalError(
                "terminating connection due to administrator command"
            )
        if len(calls) == 2:
            raise RuntimeError("provider SDK blew up")
        stop.set()  # the signal: only this ends the worker
        return True

    class IdleSender:
        def __init__(self, **kwargs): ...
        def start(self): ...
        def join(self): ...

    monkeypatch.setattr(run_worker.Command, "round", round_)
    monkeypatch.setattr(run_worker, "DirectSender", IdleSender)
    monkeypatch.setattr(run_worker, "MAX_BACKOFF", 0.01)
    err = StringIO()
    call_command("run_worker", stdout=StringIO(), stderr=err)
    assert calls == [0, 1, 2]
    assert "database unavailable" in err.getvalue()
    assert "round failed" in err.getvalue()
    assert "run_worker: recovered" in caplog.text


def _worker_env() -> dict[str, str]:
    db = connection.settings_dict
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "smscampaigns.settings",
        "ENV_FILE": os.devnull,
        "DEBUG": "true",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": "",
        "SMS_ALLOW_DEVELOPMENT_PROVIDERS": "true",
    }


def _queue_replies(count: int) -> list[int]:
    return [
        MessageFactory(
            kind=Message.Kind.REPLY,
            campaign=None,
            contact=None,
            to=f"+1415555{n:04d}",
            provider="locmem",
            next_attempt_at=timezone.now(),
        ).pk
        for n in range(count)
    ]


def _wait_sent(ids: list[int], seconds: float = 30) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sent = Message.objects.filter(pk__in=ids, status="submitted").count()
        if sent == len(ids):
            return sent
        time.sleep(0.2)
    return Message.objects.filter(pk__in=ids, status="submitted").count()


def _other_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def _wait_for_worker_connection(timeout: float = 30.0) -> bool:
    """The worker reconnects after a backoff: wait until it holds a connection again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _other_backends():
            return True
        time.sleep(0.1)
    return False


def _terminate_other_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="needs a server to cut the worker's connection: run on PostgreSQL",
)
def test_the_worker_keeps_sending_after_its_connections_are_terminated(tmp_path):
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "run_worker"],
        cwd=ROOT,
        env=_worker_env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        first = _queue_replies(5)
        assert _wait_sent(first) == 5, log.read_text()
        for _ in range(3):
            # Kill every connection the worker holds (main loop and sender thread),
            # as a database restart or failover does.
            assert _wait_for_worker_connection(), log.read_text()
            assert _terminate_other_backends() >= 1
            time.sleep(1.5)
        assert worker.poll() is None, log.read_text()
        after = _queue_replies(5)
        assert _wait_sent(after) == 5, log.read_text()
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    output = log.read_text()
    assert code == 0, output
    assert "database unavailable" in output
    assert "Worker stopped." in output
