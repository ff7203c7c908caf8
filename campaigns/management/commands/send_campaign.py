"""Send a campaign from this machine, with a progress bar."""

import signal
import sys
import threading
import time

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from campaigns import lifecycle
from campaigns.actions import campaign_require_audience
from campaigns.lifecycle import CampaignError
from campaigns.models import Campaign, Message
from campaigns.preview import campaign_preview
from campaigns.provider_checks import (
    ProviderUnusable,
    campaign_pause_for_provider,
    campaign_pause_if_unusable,
    campaign_require_usable_providers,
    campaign_text_problems,
)
from campaigns.sending.dispatch import Dispatcher
from campaigns.sending.launch import campaign_launch
from campaigns.stats import campaign_snapshot_take, campaign_stats
from providers import get_provider
from webhooks.queue import CallbackApplier, queued_callbacks_apply


class Command(BaseCommand):
    help = (
        "Launch a campaign (if needed) and send it from this machine at the provider's "
        "rate. Ctrl-C stops after the current batch; running the command again resumes."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("campaign_id", type=int)
        parser.add_argument(
            "--dry-run", action="store_true", help="Render and count; send nothing."
        )
        parser.add_argument(
            "--rate",
            type=float,
            help="Messages (segments) per second; default: the provider's rate.",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            help="Concurrent requests for one-per-request providers.",
        )
        parser.add_argument(
            "--resume", action="store_true", help="Resume a paused campaign first."
        )
        parser.add_argument(
            "--report-wait",
            type=float,
            default=10.0,
            help="Seconds to wait at the end for delivery reports from the simulator (default 10).",
        )

    def handle(
        self,
        *args,
        campaign_id: int,
        dry_run: bool,
        rate,
        concurrency,
        resume: bool,
        report_wait: float,
        **options,
    ):
        try:
            campaign = Campaign.objects.get(pk=campaign_id)
        except Campaign.DoesNotExist:
            raise CommandError(f"No campaign with id {campaign_id}") from None
        if rate is not None and rate <= 0:
            raise CommandError("--rate must be positive")

        if dry_run:
            self._dry_run(campaign)
            return

        self._require_usable_providers(campaign)
        if campaign.status == Campaign.Status.PAUSED:
            if not resume:
                raise CommandError(
                    f"Campaign {campaign.pk} is paused. Resume it with --resume."
                )
            # Back to sending, or to its schedule if it was paused before its
            # launch (launched just below). No task is queued: this process sends.
            try:
                lifecycle.move(campaign, "resume", waiting_reason="")
            except CampaignError as exc:
                raise CommandError(str(exc)) from exc
        if not lifecycle.can(campaign, "launch"):
            # Completed, cancelled or failed: nothing to send, say how it went.
            self._summary(campaign)
            return
        try:
            if campaign.status != Campaign.Status.SENDING:
                # The rule of "send now", which this is: nobody to text is refused.
                campaign_require_audience(campaign)
            added = campaign_launch(campaign=campaign)
        except CampaignError as exc:
            raise CommandError(str(exc)) from exc
        if added:
            self.stdout.write(f"Queued {added:,} messages for {campaign.name!r}.")

        stop = threading.Event()
        backend = get_provider(campaign.provider)
        previous = signal.signal(signal.SIGINT, lambda *_: self._interrupt(stop))
        progress = Progress(
            self.stdout, total=Message.objects.filter(campaign=campaign).count()
        )
        dispatcher = Dispatcher(
            campaign.pk,
            rate=rate,
            concurrency=concurrency,
            stop=stop,
            on_batch=lambda d: (
                _deliver_reports(backend),
                progress.update(campaign.pk, d),
            ),
        )
        # Callbacks the webhooks store (a STOP, a receipt) are applied while this
        # process sends, as run_worker does: a STOP is honoured before later batches.
        # Those answered before it started first, so none of their STOPs is sent to.
        queued_callbacks_apply()
        applier_stop = threading.Event()
        applier = CallbackApplier(stop=applier_stop).start()
        try:
            try:
                step = dispatcher.run()
            except ImproperlyConfigured as exc:
                # A provider that broke mid-send: paused with the reason, like a worker.
                campaign_pause_if_unusable(campaign, error=exc)
                raise CommandError(
                    f"Campaign {campaign.pk} is paused: {exc}. Fix the provider's "
                    "configuration, then run the command again with --resume."
                ) from exc
            finally:
                signal.signal(signal.SIGINT, previous)
            progress.update(campaign.pk, dispatcher, final=True)
            self.stdout.write("")
            pipeline = dispatcher.pipeline
            if pipeline.late_slots:
                # A sender too busy to start requests on time sends below the rate.
                self.stdout.write(
                    f"Pacing: {pipeline.late_slots:,} slot(s) missed while this process "
                    f"was busy (up to {pipeline.latest_start * 1000:.0f} ms late), "
                    "booked again."
                )
            if pipeline.full_slots:
                self.stdout.write(
                    f"Pacing: {pipeline.full_slots:,} slot(s) missed with all "
                    f"{dispatcher.concurrency} sending threads taken, booked again; "
                    "raise SMS_DISPATCH_CONCURRENCY."
                )
            if stop.is_set():
                self.stdout.write(
                    self.style.WARNING(
                        "Stopped after the current batch. Run the command again to resume."
                    )
                )
                sys.exit(130)
            self._wait_for_reports(backend, report_wait)
            # The admin reads progress from snapshots: leave one with the receipts in.
            campaign_snapshot_take(campaign=campaign)
            campaign.refresh_from_db()
            if step.state == "stopped":
                self.stdout.write(
                    self.style.WARNING(
                        f"Campaign is {campaign.get_status_display().lower()}. {campaign.waiting_reason}"
                    )
                )
            self._summary(campaign)
            if campaign.status == Campaign.Status.FAILED:
                raise CommandError(
                    f"Campaign {campaign.pk} failed: no message was accepted."
                )
        finally:
            applier_stop.set()
            applier.join()

    def _require_usable_providers(self, campaign: Campaign) -> None:
        """Stop before anything changes when the campaign cannot send (a campaign
        already sending is paused with the reason, as a worker would)."""
        sendable = {
            Campaign.Status.DRAFT,
            Campaign.Status.SCHEDULED,
            Campaign.Status.SENDING,
            Campaign.Status.PAUSED,
        }
        if campaign.status not in sendable:
            return
        try:
            campaign_require_usable_providers(campaign)
        except ProviderUnusable as error:
            if campaign.status == Campaign.Status.SENDING:
                campaign_pause_for_provider(
                    campaign_id=campaign.pk, alias=error.alias, problem=error.problem
                )
            raise CommandError(
                f"Campaign {campaign.pk} cannot be sent through {error.alias}: {error}"
            ) from error
        if problems := campaign_text_problems(campaign):
            raise CommandError(f"Campaign {campaign.pk} cannot be sent: {problems[0]}")

    def _interrupt(self, stop: threading.Event) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        self.stdout.write(
            "\nStopping after the current batch (Ctrl-C again to abort at once)…"
        )
        stop.set()

    def _dry_run(self, campaign: Campaign) -> None:
        preview = campaign_preview(campaign=campaign, samples=3)
        out = self.stdout
        out.write(
            f"Campaign #{campaign.pk} {campaign.name!r} via {campaign.provider} (dry run: nothing is sent)"
        )
        out.write(
            f"Recipients: {preview.recipients:,} after exclusions ({preview.excluded:,} opted out or suppressed)"
        )
        out.write(
            f"Encoding: {', '.join(f'{k} {v:,}' for k, v in preview.encodings.items()) or 'n/a'}"
        )
        out.write(
            f"Segments: {preview.segments:,} in all, up to {preview.max_segments} per message"
        )
        out.write(
            f"Estimated cost: {preview.cost:.2f} {preview.currency} at {preview.price_per_segment} per segment"
        )
        for sample in preview.samples:
            out.write(f"  {sample.to}: {sample.text}")
        for problem in preview.problems:
            out.write(self.style.ERROR(f"Problem: {problem}"))

    def _wait_for_reports(self, backend, seconds: float) -> None:
        pending = getattr(backend, "pending_count", None)
        if pending is None or seconds <= 0:
            return
        deadline = time.monotonic() + seconds
        while pending() and time.monotonic() < deadline:
            _deliver_reports(backend)
            time.sleep(0.1)
        _deliver_reports(backend)

    def _summary(self, campaign: Campaign) -> None:
        # The same figures the API's stats action gives, in one GROUP BY and a sum.
        stats = campaign_stats(campaign=campaign)
        counts = {k: v for k, v in stats.counts.items() if v}
        total = sum(counts.values())
        parts = ", ".join(f"{status} {count:,}" for status, count in counts.items())
        self.stdout.write(
            f"Campaign #{campaign.pk} {campaign.get_status_display().lower()}: {total:,} messages — {parts}"
        )
        if stats.cost:
            self.stdout.write(
                f"Cost so far: {stats.cost:.4f} {stats.currency}".rstrip()
            )
        if stats.skipped_opted_out:
            self.stdout.write(
                f"Skipped {stats.skipped_opted_out:,} recipients who opted out during the campaign."
            )


def _deliver_reports(backend) -> None:
    deliver = getattr(backend, "deliver_due", None)
    if deliver is not None:
        deliver()


class Progress:
    """A progress line: a bar on a terminal, a plain line every few seconds otherwise."""

    WIDTH = 30

    def __init__(self, stream, *, total: int) -> None:
        self.stream = stream
        self.total = total
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._last = 0.0

    def update(
        self, campaign_id: int, dispatcher: Dispatcher, final: bool = False
    ) -> None:
        now = time.monotonic()
        if not final and now - self._last < (0.2 if self.tty else 2.0):
            return
        self._last = now
        counts = Message.objects.filter(campaign_id=campaign_id).values_list("status")
        done = counts.exclude(status__in=Message.IN_FLIGHT).count()
        failed = counts.filter(status=Message.Status.FAILED).count()
        stats = dispatcher.stats
        rate = stats.rate
        remaining = max(self.total - done, 0)
        eta = (
            f"{int(remaining / rate // 60)}:{int(remaining / rate % 60):02d}"
            if rate > 0 and remaining
            else "-"
        )
        share = done / self.total if self.total else 1.0
        bar = "#" * int(share * self.WIDTH)
        line = (
            f"[{bar:<{self.WIDTH}}] {share:6.1%}  sent {stats.submitted:,}  failed {failed:,}  "
            f"{rate:,.0f}/s  ETA {eta}"
        )
        step = dispatcher.last_step
        if step.state == "waiting" and step.reason and not final:
            # Never a silent stall: say what the sender waits for.
            line += f"  ({step.reason})"
        if self.tty:
            self.stream.write("\r" + line, ending="")
            self.stream.flush()
        else:
            self.stream.write(line)
