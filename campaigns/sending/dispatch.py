"""The dispatcher: claim queued messages, send them at the provider's rate, record results.

Any number of dispatchers (threads, processes, machines) may work on one campaign at
once. Claims use ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite serializes
writers with IMMEDIATE transactions instead), so no two dispatchers hold the same
message; the shared rate limiter keeps them together at the account's rate.

Pacing: the dispatcher claims and renders; ``campaigns.sending.pipeline`` starts each
request at its slot at the shared rate limiter and keeps requests in flight while the
next ones start, so a vendor a network away still gets its full rate (as many requests
in flight as rate times latency, at most ``SMS_DISPATCH_CONCURRENCY``). Each answer is
recorded as soon as it comes back, from the dispatcher's own thread.

Crash safety: a message is "sending" only between its claim and the recording of its
result, and it names the dispatcher that claimed it. A dispatcher killed in between is
seen as dead by the next recovery (``campaigns.sending.liveness``), which every dispatcher runs
in its loop: claims it had not handed to the provider go back to the queue, handed ones
become "unknown" (they may have left) and are never sent again automatically; a
delivery receipt, if one comes, moves them on. Nothing is held only in memory.
"""

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, transaction
from django.db.models import Count
from django.utils import timezone

from providers import get_provider
from providers.encoding import analyze
from providers.messages import OutboundSms, SendResult

from .. import lifecycle
from ..links import LinkRenderer, campaign_link_positions
from ..models import Campaign, DeliveryEvent, Message
from ..provider_checks import campaign_pause_for_provider
from ..stats import campaign_snapshot_refresh
from ..templating import parse
from .claims import Claimed, claim_batch
from .liveness import Liveness, campaign_beat, recover_stale
from .pacing import CircuitBreaker, RateLimiter
from .pipeline import ANSWER_WAIT_SECONDS, RATE_HEADROOM, SendPipeline
from .receipts import delivery_events_apply_pending
from .recording import Rendered, record_batch
from .windows import SendWindow, WindowError, earliest_opening, open_zones

logger = logging.getLogger(__name__)

# Seconds of sending one claim may hold at the provider's rate.
CLAIM_SECONDS = 5

# At most this many claims' worth of messages in flight per dispatcher.
CLAIMS_IN_FLIGHT = 4

# A 429 lowers the rate by the share of a second's messages it refused, at least
# MIN_SLOW_DOWN and at most MAX_SLOW_DOWN (the limiter then recovers step by step).
MIN_SLOW_DOWN = 0.02
MAX_SLOW_DOWN = 0.5

# Connections opened before the first slot: what the rate keeps busy over this much
# network latency.
WARM_LATENCY_SECONDS = 0.25

# Messages rendered between two looks at the slots due.
RENDER_BETWEEN_STARTS = 200

# A dispatcher looks for dead dispatchers' claims on its campaign this often.
RECOVERY_SECONDS = 2.0

# A working dispatcher snapshots its campaign's progress (for the admin's pages) at
# most this often; the scheduler's tick does too, and they skip a fresh one.
SNAPSHOT_SECONDS = 10.0


@dataclass
class DispatchStats:
    claimed: int = 0
    submitted: int = 0
    failed: int = 0
    retried: int = 0
    opted_out: int = 0
    unknown: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.submitted / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True)
class Step:
    """What one dispatcher step found."""

    state: str
    """"sent" (a batch went out), "waiting" (nothing to do until ``wait_until``),
    "done" (the campaign completed or failed), "stopped" (paused, cancelled)."""
    wait_until: datetime | None = None
    reason: str = ""


class Dispatcher:
    """Sends one campaign. ``run()`` loops until done or stopped; ``step()`` does one batch."""

    def __init__(
        self,
        campaign_id: int,
        *,
        batch_size: int | None = None,
        rate: float | None = None,
        concurrency: int | None = None,
        stop: threading.Event | None = None,
        on_batch: Callable[["Dispatcher"], None] | None = None,
    ) -> None:
        self.campaign_id = campaign_id
        self.batch_size = batch_size or settings.SMS_DISPATCH_BATCH_SIZE
        self.rate_override = rate
        self.concurrency = max(1, concurrency or settings.SMS_DISPATCH_CONCURRENCY)
        self.stop = stop or threading.Event()
        self.on_batch = on_batch
        self.stats = DispatchStats()
        self.last_step = Step("waiting")
        self.liveness = Liveness()
        self.pipeline = SendPipeline(
            concurrency=self.concurrency,
            stop=self.stop,
            liveness=self.liveness,
            record=self._record,
        )
        self._cursor = 0
        self._zones: list[str] | None = None
        self._renderers: dict[int | None, LinkRenderer] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._claimed_at = timezone.now()
        self._next_snapshot = time.monotonic() + SNAPSHOT_SECONDS
        self._next_recovery = 0.0

    # --- Loop ----------------------------------------------------------------------

    def run(self, *, deadline: float | None = None) -> Step:
        """Send until the campaign is done or stopped, the stop event is set, or the
        (monotonic) deadline passes. Returns the last step."""
        self.liveness.open()
        self.pipeline.open()
        try:
            try:
                return self._loop(deadline)
            finally:
                # Every request that left is recorded before the dispatcher goes.
                self.pipeline.close()
        finally:
            self.liveness.close()

    def _loop(self, deadline: float | None) -> Step:
        step = Step("waiting")
        while not self.stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            self._recover()
            step = self.last_step = self.step()
            self.pipeline.collect()
            self._report_progress()
            if self.on_batch is not None:
                self.on_batch(self)
            if step.state in ("done", "stopped"):
                break
            if step.state == "waiting":
                pause = 1.0
                if step.wait_until is not None:
                    pause = (step.wait_until - timezone.now()).total_seconds()
                pause = min(max(pause, 0.05), 5.0)
                if deadline is not None:
                    pause = min(pause, max(deadline - time.monotonic(), 0))
                self.pipeline.wait(time.monotonic() + pause, until_answer=True)
        return step

    def _recover(self) -> None:
        """Settle dead dispatchers' claims on this campaign, every few seconds, so a
        resume right after a crash finishes without waiting for the lease."""
        if time.monotonic() < self._next_recovery:
            return
        self._next_recovery = time.monotonic() + RECOVERY_SECONDS
        recover_stale(campaign_id=self.campaign_id)

    def step(self) -> Step:
        campaign = Campaign.objects.get(pk=self.campaign_id)
        if campaign.status != Campaign.Status.SENDING:
            if campaign.status == Campaign.Status.CANCELLED:
                # Messages a batch in flight put back after the cancel stay unsent.
                cancel_queued(campaign_id=campaign.pk)
            return Step("stopped", reason=campaign.get_status_display())
        now = timezone.now()

        alias = self._choose_provider(campaign)
        if alias is None:
            if self._nothing_left(campaign):
                # The last answers opened the circuit: nothing waits for it.
                return self._finish(campaign)
            reason = f"Waiting for provider {campaign.provider}: it is failing, retrying shortly."
            _set_waiting(campaign, reason)
            return Step(
                "waiting",
                now + timedelta(seconds=settings.SMS_CIRCUIT_RESET_SECONDS / 4),
                reason,
            )
        try:
            backend = get_provider(alias)
        except ImproperlyConfigured as exc:
            # A provider that broke after the campaign started (credentials removed,
            # key file gone) pauses this campaign only; the worker goes on.
            campaign_pause_for_provider(
                campaign_id=campaign.pk, alias=alias, problem=str(exc)
            )
            return Step("stopped", reason=str(exc))

        zones = None
        if campaign.send_window:
            try:
                window = SendWindow.from_dict(campaign.send_window)
            except WindowError as exc:
                reason = f"Invalid send window: {exc}. Fix it, then resume."
                _pause(campaign, reason)
                return Step("stopped", reason=reason)
            all_zones = self._campaign_zones(campaign)
            zones = sorted(open_zones(window, all_zones, now))
            if not zones:
                opening = earliest_opening(window, all_zones, now)
                if opening is None:
                    return self._finish(campaign)
                reason = f"Outside the send window; next recipients' window opens {opening:%Y-%m-%d %H:%M} UTC."
                if self._nothing_left(campaign):
                    return self._finish(campaign)
                _set_waiting(campaign, reason)
                return Step("waiting", opening, reason)

        # Claim no more than can be sent: a claim waiting behind a full pool only ages,
        # and a few claims in flight keep bulk requests going (more would only leave
        # more "sending" rows for every claim and recovery to step over).
        pipeline = self.pipeline
        while not self.stop.is_set() and (
            pipeline.requests_in_flight >= self.concurrency
            or pipeline.messages_in_flight >= CLAIMS_IN_FLIGHT * self.batch_size
        ):
            pipeline.wait(time.monotonic() + ANSWER_WAIT_SECONDS, until_answer=True)
        now = self._claimed_at = timezone.now()
        rows = self._claim(
            campaign, alias, zones, now, self._claim_size(backend, alias)
        )
        if not rows:
            if self._nothing_left(campaign):
                return self._finish(campaign)
            self._zones = None  # a relaunch may have added recipients in other zones
            return self._waiting_for(campaign, now)

        if campaign.waiting_reason:
            _set_waiting(campaign, "")
        self._send(campaign, backend, alias, rows)
        return Step("sent")

    def _waiting_for(self, campaign: Campaign, now: datetime) -> Step:
        """What a dispatcher with nothing to claim waits for, said plainly."""
        mine = self.pipeline.messages_in_flight
        if mine:
            return Step("waiting", None, f"waiting for {mine:,} message(s) in flight")
        others = (
            Message.objects.filter(
                campaign_id=campaign.pk, status=Message.Status.SENDING
            )
            .order_by()
            .values_list("claimed_by")
            .annotate(n=Count("id"))
        )
        if others:
            held = ", ".join(
                f"{n:,} with dispatcher #{owner}" if owner else f"{n:,} unowned"
                for owner, n in others
            )
            return Step(
                "waiting",
                None,
                f"waiting for messages another sender holds ({held}); a dead "
                "sender's are taken back within seconds",
            )
        retry_at = (
            Message.objects.filter(
                campaign_id=campaign.pk,
                status=Message.Status.QUEUED,
                next_attempt_at__gt=now,
            )
            .order_by("next_attempt_at")
            .values_list("next_attempt_at", flat=True)
            .first()
        )
        if retry_at is not None:
            return Step(
                "waiting",
                retry_at,
                f"waiting for retries due at {retry_at:%H:%M:%S} UTC",
            )
        return Step("waiting", None, "waiting for queued messages")

    # --- Provider choice -------------------------------------------------------------

    def _choose_provider(self, campaign: Campaign) -> str | None:
        if circuit_for(campaign.provider).allow():
            return campaign.provider
        if (
            campaign.fallback_provider
            and circuit_for(campaign.fallback_provider).allow()
        ):
            return campaign.fallback_provider
        return None

    def _limiter(self, alias: str, backend) -> RateLimiter:
        if alias not in self._limiters:
            rate = self.rate_override or backend.rate
            self._limiters[alias] = RateLimiter(
                f"provider:{alias}", rate=rate * (1 - RATE_HEADROOM)
            )
            self._open_connections(backend, rate)
        return self._limiters[alias]

    def _open_connections(self, backend, rate: float) -> None:
        """Open, before the first slot, the connections the rate will keep busy over
        WARM_LATENCY_SECONDS of network (more open as needed)."""
        per_request = max(1, backend.max_recipients_per_request)
        wanted = min(
            self.concurrency,
            math.ceil(rate / per_request * WARM_LATENCY_SECONDS),
            math.ceil(CLAIMS_IN_FLIGHT * self.batch_size / per_request),
        )
        if wanted > 1:
            backend.open_connections(wanted)

    # --- Claim ---------------------------------------------------------------------------

    def _claim_size(self, backend, alias: str) -> int:
        """How many messages to claim: a whole number of the provider's requests, and
        no more than a few seconds of sending, so a claim never outlives its lease and
        a crash strands as little as possible."""
        rate = self._limiter(alias, backend).effective_rate()
        per_request = min(
            backend.max_recipients_per_request, max(1, int(rate)), self.batch_size
        )
        size = min(self.batch_size, max(per_request, int(rate * CLAIM_SECONDS)))
        return max(per_request, size // per_request * per_request)

    def _claim(
        self, campaign: Campaign, alias: str, zones, now: datetime, size: int
    ) -> list[Claimed]:
        for _attempt in range(2):
            claim = claim_batch(
                campaign_id=campaign.pk,
                provider=alias,
                after_id=self._cursor,
                now=now,
                limit=size,
                zones=zones,
                session_id=self.liveness.session_id,
            )
            if claim.last_id is not None:
                self._cursor = claim.last_id
                self.stats.opted_out += claim.opted_out
                self.stats.claimed += len(claim.messages)
                if claim.messages:
                    return claim.messages
                continue  # the whole batch had opted out: take the next one
            if self._cursor == 0:
                return []
            # The keyset cursor only moves forward; retried messages wait behind it.
            self._cursor = 0
        return []

    # --- Send ----------------------------------------------------------------------------

    def _send(
        self, campaign: Campaign, backend, alias: str, rows: list[Claimed]
    ) -> None:
        sender = campaign.sender
        rendered: dict[str, Rendered] = {}
        outbound: list[OutboundSms] = []
        for index, row in enumerate(rows):
            if index % RENDER_BETWEEN_STARTS == 0:
                # Rendering a claim takes a while: slots booked for the last one
                # still start on time.
                self.pipeline.submit_due()
            text, measured = self._text_renderer(campaign, row.variant).render_measured(
                message_id=row.id,
                first_name=row.first_name,
                last_name=row.last_name,
                phone=row.to,
                attributes=row.attributes,
            )
            # Each text differs by its short link; measured with a sample link
            # of the same length, alike texts share one cached analysis.
            info = _analyze(measured)
            rendered[row.reference] = Rendered(
                id=row.id,
                reference=row.reference,
                body=text,
                encoding=info.encoding,
                segments=info.segments,
                attempts=row.attempts,
            )
            outbound.append(
                OutboundSms(
                    to=row.to,
                    text=text,
                    reference=row.reference,
                    sender=row.sender or sender,
                    # The vendor drops what it could not deliver by the deadline.
                    expires_at=campaign.send_by,
                )
            )

        self.pipeline.send(
            alias=alias,
            backend=backend,
            limiter=self._limiter(alias, backend),
            outbound=outbound,
            rendered=rendered,
            claimed_at=self._claimed_at,
        )
        self.stats.batches += 1

    def _text_renderer(self, campaign: Campaign, variant: int | None) -> LinkRenderer:
        """The text of ``variant`` (None or 0: the campaign's own) with each
        message's own short links (read once: texts and links cannot change once
        sending started)."""
        renderer = self._renderers.get(variant)
        if renderer is None:
            renderer = self._renderers[variant] = LinkRenderer(
                _template(campaign.variant_source(variant or 0)),
                campaign_link_positions(campaign),
            )
        return renderer

    def settle(self) -> None:
        """Wait for every request in flight and record its answer (``run()`` does it
        before returning; a caller driving ``step()`` itself calls this)."""
        self.pipeline.drain()

    def _record(
        self, alias: str, sent: list[Rendered], results: list[SendResult]
    ) -> bool:
        """Store a group of answers (the pipeline's callback); False stops sending."""
        outcome = record_batch(rendered=sent, results=results, provider=alias)
        return self._after(alias, outcome, sent)

    def _after(self, alias: str, outcome, sent: list[Rendered]) -> bool:
        """Account for recorded answers; False when sending should stop."""
        self.stats.submitted += outcome.submitted
        self.stats.failed += outcome.failed
        self.stats.retried += outcome.retried
        self.stats.unknown += outcome.unknown
        circuit = circuit_for(alias)
        if outcome.throttled and alias in self._limiters:
            self._slow_down(self._limiters[alias], outcome.throttled)
        # Answers are recorded many requests at a time: any accepted message shows the
        # vendor is up (a few lost answers among them must not open the circuit);
        # only a group with nothing accepted counts as a failure.
        if outcome.submitted:
            circuit.record_success()
        elif outcome.transient:
            circuit.record_failure()
        if (
            outcome.submitted
            and DeliveryEvent.objects.filter(
                message__isnull=True, provider=alias
            ).exists()
        ):
            accepted = Message.objects.filter(
                pk__in=[r.id for r in sent], status=Message.Status.SUBMITTED
            )
            delivery_events_apply_pending(messages=accepted)
        if outcome.misconfigured:
            reason = f"Provider {alias} refused our credentials (401/403): fix its settings, then resume."
            campaign = Campaign.objects.get(pk=self.campaign_id)
            _pause(campaign, reason)
            return False
        return circuit.state() == "closed" or not outcome.transient

    def _slow_down(self, limiter: RateLimiter, refused: int) -> None:
        """Lower the rate after the vendor refused ``refused`` messages with 429, in
        proportion to a second's worth: a few refused at a second's edge cost a
        little, not half the rate. A vendor that allows less than configured keeps
        refusing, and each episode (``RateLimiter.slow_down`` counts refusals of
        requests booked before the last cut as one) lowers it again."""
        share = refused / max(limiter.rate, 1.0)
        limiter.slow_down(factor=1 - min(max(share, MIN_SLOW_DOWN), MAX_SLOW_DOWN))

    # --- Completion -----------------------------------------------------------------

    def _campaign_zones(self, campaign: Campaign) -> list[str]:
        if self._zones is None:
            self._zones = list(
                Message.objects.filter(campaign_id=campaign.pk)
                .order_by()
                .values_list("time_zone", flat=True)
                .distinct()
            )
        return self._zones

    def _nothing_left(self, campaign: Campaign) -> bool:
        return not Message.objects.filter(
            campaign_id=campaign.pk, status__in=Message.IN_FLIGHT
        ).exists()

    def _finish(self, campaign: Campaign) -> Step:
        status = campaign_finish(campaign_id=campaign.pk)
        if self.on_batch is not None:
            # The last answers may have come back after the last step's hook: let it
            # hand over what it has (in-process receipts) before the final figures.
            self.on_batch(self)
        self._snapshot(campaign, min_interval=timedelta(0))
        return Step("done", reason=status)

    # --- Progress ---------------------------------------------------------------------

    def _report_progress(self) -> None:
        """Tell the scheduler (and the admin) this campaign is being worked on, and
        snapshot its figures every :data:`SNAPSHOT_SECONDS`."""
        campaign_beat(self.campaign_id)
        if time.monotonic() < self._next_snapshot:
            return
        self._next_snapshot = time.monotonic() + SNAPSHOT_SECONDS
        campaign = Campaign.objects.filter(pk=self.campaign_id).first()
        if campaign is not None:
            self._snapshot(campaign, min_interval=timedelta(seconds=SNAPSHOT_SECONDS))

    def _snapshot(self, campaign: Campaign, *, min_interval: timedelta) -> None:
        # Figures for the admin must never stop the sending.
        try:
            with transaction.atomic():
                campaign_snapshot_refresh(campaign=campaign, min_interval=min_interval)
        except DatabaseError:
            logger.exception("campaign %s: progress snapshot failed", campaign.pk)


def campaign_finish(*, campaign_id: int) -> str:
    """Close a sending campaign with nothing left to send: completed, or failed when it
    had messages and every one of them failed (none was even possibly accepted). A
    campaign not launched yet is left alone (campaigns.lifecycle: "finish")."""
    messages = Message.objects.filter(campaign_id=campaign_id)
    reached = messages.exclude(status__in=Message.IN_FLIGHT | {Message.Status.FAILED})
    status = (
        Campaign.Status.FAILED
        if messages.exists() and not reached.exists()
        else Campaign.Status.COMPLETED
    )
    lifecycle.transition(
        campaign_id,
        "finish",
        to=status,
        completed_at=timezone.now(),
        waiting_reason="",
    )
    return status


def cancel_queued(*, campaign_id: int) -> int:
    """Mark a cancelled campaign's unsent messages as cancelled."""
    return Message.objects.filter(
        campaign_id=campaign_id, status=Message.Status.QUEUED
    ).update(
        status=Message.Status.FAILED,
        error_code=Message.SkipReason.CANCELLED,
        error_reason="Campaign cancelled before this message was sent",
        status_changed_at=timezone.now(),
    )


def circuit_for(alias: str) -> CircuitBreaker:
    return CircuitBreaker(
        f"provider:{alias}",
        failure_threshold=settings.SMS_CIRCUIT_FAILURES,
        reset_after=settings.SMS_CIRCUIT_RESET_SECONDS,
    )


def _pause(campaign: Campaign, reason: str) -> None:
    """Pause a sending campaign that cannot go on by itself, saying why."""
    if lifecycle.transition(campaign, "halt", waiting_reason=reason[:255]):
        logger.error("campaign %s paused: %s", campaign.pk, reason)


def _set_waiting(campaign: Campaign, reason: str) -> None:
    if campaign.waiting_reason != reason:
        Campaign.objects.filter(pk=campaign.pk).update(waiting_reason=reason)
        campaign.waiting_reason = reason


@lru_cache(maxsize=64)
def _template(body: str):
    return parse(body)


@lru_cache(maxsize=4096)
def _analyze(text: str):
    return analyze(text)
