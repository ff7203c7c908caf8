"""One process that does what Celery workers and beat do, for a machine without a broker."""

import contextlib
import logging
import signal
import threading
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand
from django.db import DatabaseError, connection

from campaigns.models import Campaign
from campaigns.provider_checks import campaign_pause_if_unusable
from campaigns.sending import scheduling
from campaigns.sending.direct import DirectSender
from campaigns.sending.dispatch import Dispatcher
from contacts.services import signups_prune
from contacts.tasks import import_jobs_run_pending
from integrations.delivery import WebhookSender, deliver_due
from providers import deliver_due_reports, get_provider
from webhooks.queue import CallbackApplier, queued_callbacks_apply
from webhooks.replay import seen_callbacks_prune

logger = logging.getLogger(__name__)

# Seconds between two prunes of remembered callbacks (Celery beat does it every minute).
PRUNE_INTERVAL = 60.0
# Longest wait between two attempts after a failed round (lost database, a bug).
MAX_BACKOFF = 30.0


class Command(BaseCommand):
    _pruned_at = 0.0

    help = (
        "Start scheduled campaigns on time and send every sending campaign, on this "
        "machine. Use it when no Celery broker is configured; stop with Ctrl-C or SIGTERM."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--slice",
            type=float,
            default=5.0,
            help="Seconds per campaign before moving to the next.",
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help="Do one round and exit (for cron or tests).",
        )

    def handle(self, *args, slice: float, once: bool, **options) -> None:
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(
            "Worker running: scheduled campaigns start on time; Ctrl-C stops after the current batch."
        )
        # Keyword replies and test sends go out on threads of their own, so a slow
        # vendor delays neither them nor the campaigns.
        sender = DirectSender(concurrency=settings.SMS_DIRECT_CONCURRENCY, stop=stop)
        if once:
            queued_callbacks_apply(deadline=time.monotonic() + slice)
            self.round(slice, stop)
            sender.drain()
            sender.join()
            # Integrators' event webhooks, on this thread (nothing left running).
            deliver_due(deadline=time.monotonic() + slice, stop=stop, concurrency=0)
            self.stdout.write("Worker stopped.")
            return
        sender.start()
        # Integrators' event webhooks go out on a thread of their own too.
        webhooks = WebhookSender(stop=stop).start()
        # Callbacks the webhooks stored are applied as they come (a STOP is honoured
        # within a fraction of a second), whatever the campaigns are doing.
        applier = CallbackApplier(stop=stop).start()
        failures = 0
        try:
            while not stop.is_set():
                try:
                    busy = self.round(slice, stop)
                except DatabaseError as exc:
                    failures += 1
                    self._back_off(stop, failures, f"database unavailable: {exc}")
                    continue
                except Exception as exc:
                    # A provider or a bug failing a round must not stop every other
                    # campaign: log it, wait, go on. Only a signal ends the worker.
                    logger.exception("run_worker: round failed")
                    failures += 1
                    self._back_off(stop, failures, f"round failed: {exc!r}")
                    continue
                if failures:
                    self.stdout.write("Worker recovered.")
                    logger.warning("run_worker: recovered after %d failures", failures)
                    failures = 0
                if not busy:
                    stop.wait(1.0)
        finally:
            stop.set()
            sender.join()
            webhooks.join()
            applier.join()
        self.stdout.write("Worker stopped.")

    def _back_off(self, stop: threading.Event, failures: int, reason: str) -> None:
        delay = min(2.0 ** (failures - 1), MAX_BACKOFF)
        logger.warning("run_worker: %s; retrying in %.0f s", reason, delay)
        self.stderr.write(f"{reason}; retrying in {delay:.0f} s")
        # The next query opens a new connection (a dead one is not reused).
        with contextlib.suppress(DatabaseError):
            connection.close()
        stop.wait(delay)

    def round(self, slice_seconds: float, stop: threading.Event) -> bool:
        ticked = scheduling.tick()
        if ticked["started"]:
            self.stdout.write(f"Started {ticked['started']} scheduled campaign(s).")
        busy = False
        for campaign in Campaign.objects.filter(
            status=Campaign.Status.SENDING
        ).order_by("pk"):
            if stop.is_set():
                break
            # A campaign whose provider cannot send is paused with the reason; the
            # others go on.
            if campaign_pause_if_unusable(campaign):
                self.stdout.write(self._paused(campaign))
                continue
            try:
                backend = get_provider(campaign.provider)
                deliver = getattr(backend, "deliver_due", None)
                dispatcher = Dispatcher(
                    campaign.pk,
                    stop=stop,
                    on_batch=lambda d, deliver=deliver: deliver and deliver(),
                )
                step = dispatcher.run(deadline=time.monotonic() + slice_seconds)
            except ImproperlyConfigured as exc:
                campaign_pause_if_unusable(campaign, error=exc)
                self.stdout.write(self._paused(campaign))
                continue
            if dispatcher.stats.submitted or dispatcher.stats.failed:
                busy = True
                self.stdout.write(
                    f"Campaign #{campaign.pk}: sent {dispatcher.stats.submitted:,}, "
                    f"failed {dispatcher.stats.failed:,} ({step.state})"
                )
        if deliver_due_reports():
            busy = True
        if time.monotonic() - self._pruned_at >= PRUNE_INTERVAL:
            seen_callbacks_prune()
            signups_prune()
            self._pruned_at = time.monotonic()
        # Large contact imports wait for a worker; one per round, so campaigns keep
        # sending between files.
        if not stop.is_set() and import_jobs_run_pending(limit=1):
            self.stdout.write("Ran a contact import.")
            busy = True
        return busy

    def _paused(self, campaign: Campaign) -> str:
        campaign.refresh_from_db(fields=["status", "waiting_reason"])
        return self.style.ERROR(
            f"Campaign #{campaign.pk} {campaign.get_status_display().lower()}: "
            f"{campaign.waiting_reason}"
        )
