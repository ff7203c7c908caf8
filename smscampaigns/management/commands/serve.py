"""The production start on one machine, in one command (`make serve-prod`).

Migrates, collects the static files, then runs gunicorn (smscampaigns.wsgi, static
files through WhiteNoise) and what sends: `run_worker`, or a Celery worker and beat
when CELERY_BROKER_URL is set. Ctrl-C or SIGTERM stops them all together, and so does
any one of them stopping on its own: a half-started site (a web server without a
sender, or the reverse) is worse than none.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from smscampaigns.celery import broker_configured
from smscampaigns.static_files import require_collected

#: Seconds a process gets to finish after SIGTERM (gunicorn finishes its requests,
#: run_worker its batch) before it is killed.
STOP_SECONDS = 30


def default_workers() -> int:
    """gunicorn's advice, 2 x CPUs + 1, at most 9: each worker keeps a database
    connection open, and PostgreSQL allows 100 by default for every process."""
    if os.environ.get("WEB_CONCURRENCY"):
        return int(os.environ["WEB_CONCURRENCY"])
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return min(2 * (cpus or os.cpu_count() or 1) + 1, 9)


def _die_with_parent() -> None:
    """Linux: the children get SIGTERM if this command is killed outright, so no
    orphaned server keeps the port."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    process: subprocess.Popen


class Command(BaseCommand):
    help = (
        "Production start on this machine: migrate, collectstatic, then gunicorn and "
        "the sender (run_worker, or Celery worker and beat with CELERY_BROKER_URL). "
        "Ctrl-C stops them all."
    )
    requires_system_checks = []  # migrate runs them, once the database is known

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--host",
            default="127.0.0.1",
            help="Address gunicorn listens on (default 127.0.0.1: behind a proxy on "
            "this machine; 0.0.0.0 in a container).",
        )
        parser.add_argument(
            "--port",
            type=int,
            default=int(os.environ.get("PORT") or 8000),
            help="Port gunicorn listens on (default $PORT, else 8000).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="gunicorn workers (default $WEB_CONCURRENCY, else 2 x CPUs + 1, at most 9).",
        )

    def handle(self, *args, host: str, port: int, workers: int | None, **options):
        if settings.DEBUG:
            raise CommandError(
                "DEBUG is on: this is the production start. Set DEBUG=false (with "
                "SECRET_KEY, ALLOWED_HOSTS, PUBLIC_BASE_URL), or use `make run` to develop."
            )
        workers = workers or default_workers()
        self.stdout.write(self.style.MIGRATE_HEADING("Migrating the database"))
        call_command("migrate", interactive=False, stdout=self.stdout)
        self.stdout.write(self.style.MIGRATE_HEADING("Collecting static files"))
        call_command(
            "collectstatic", interactive=False, verbosity=1, stdout=self.stdout
        )
        require_collected()
        # The servers open their own connections; this process keeps none.
        connections.close_all()

        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        scratch = tempfile.mkdtemp(prefix="smscampaigns-serve-")
        children: list[Child] = []
        try:
            for name, command in self._commands(host, port, workers, scratch):
                children.append(Child(name, self._start(command)))
            self.stdout.write(
                self.style.SUCCESS(
                    f"gunicorn ({workers} workers) on {host}:{port}, and "
                    f"{' and '.join(c.name for c in children[1:])}. Ctrl-C stops all."
                )
            )
            ended = self._wait(children, stop)
        finally:
            self._stop(children)
            shutil.rmtree(scratch, ignore_errors=True)
        if ended is not None:
            raise CommandError(
                f"{ended.name} stopped (exit code {ended.process.returncode}), so the "
                "others were stopped too: see its messages above."
            )
        self.stdout.write("Stopped.")

    def _commands(self, host: str, port: int, workers: int, scratch: str):
        python = sys.executable
        # GUNICORN_CMD_ARGS adds options (e.g. --certfile/--keyfile, --access-logfile);
        # access logs are off by default: webhook query strings carry phone numbers.
        yield (
            "gunicorn",
            [
                python, "-m", "gunicorn", "smscampaigns.wsgi",
                "--bind", f"{host}:{port}",
                "--workers", str(workers),
                "--chdir", str(settings.BASE_DIR),
                # Its control socket defaults to one path per user: two sites on one
                # machine would take each other's.
                "--no-control-socket",
            ],
        )  # fmt: skip
        if broker_configured():
            celery = [python, "-m", "celery", "-A", "smscampaigns"]
            yield "celery worker", [*celery, "worker", "--loglevel=INFO"]
            yield (
                "celery beat",
                [*celery, "beat", "--loglevel=INFO", "--schedule",
                 os.path.join(scratch, "celerybeat-schedule")],
            )  # fmt: skip
        else:
            manage = str(settings.BASE_DIR / "manage.py")
            yield "run_worker", [python, manage, "run_worker"]

    def _start(self, command: list[str]) -> subprocess.Popen:
        # Their own session: Ctrl-C reaches this process only, which stops each
        # child once, gracefully (a second signal would cut gunicorn's requests).
        return subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def _wait(self, children: list[Child], stop: threading.Event) -> Child | None:
        """Until a signal (None) or a child ending on its own (that child)."""
        while not stop.is_set():
            for child in children:
                if child.process.poll() is not None:
                    return child
            stop.wait(0.2)
        return None

    def _stop(self, children: list[Child]) -> None:
        for child in children:
            if child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for child in children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{child.name} did not stop in time: killed.")
                child.process.kill()
                child.process.wait()
