"""One process that does what Celery workers and beat do, for a machine without a broker."""

import signal
import threading
import time

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand

from campaigns.models import Campaign
from campaigns.provider_checks import campaign_pause_if_unusable
from campaigns.sending import scheduling
from campaigns.sending.dispatch import Dispatcher
from contacts.tasks import import_jobs_run_pending
from providers import deliver_due_reports, get_provider
from webhooks.replay import seen_callbacks_prune

# Seconds between two prunes of remembered callbacks (Celery beat does it every minute).
PRUNE_INTERVAL = 60.0


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
        while not stop.is_set():
            busy = self.round(slice, stop)
            if once:
                break
            if not busy:
                stop.wait(1.0)
        self.stdout.write("Worker stopped.")

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
