"""The dispatcher: claim queued messages, send them at the provider's rate, record results.

Any number of dispatchers (threads, processes, machines) may work on one campaign at
once. Claims use ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite serializes
writers with IMMEDIATE transactions instead), so no two dispatchers hold the same
message; the shared rate limiter keeps them together at the account's rate.

Pacing: the limiter spaces the *starts* of requests; requests run in a thread pool and
stay in flight while the next ones start, so a vendor a network away still gets its
full rate (as many requests in flight as rate times latency, at most
``SMS_DISPATCH_CONCURRENCY``). Each answer is recorded as soon as it comes back (in
small groups, from the dispatcher's own thread, the only one touching the database).

Crash safety: a message is "sending" only between its claim and the recording of its
result, and it names the dispatcher that claimed it. A dispatcher killed in between is
seen as dead by the next recovery (``campaigns.sending.liveness``), which every dispatcher runs
in its loop: claims it had not handed to the provider go back to the queue, handed ones
become "unknown" (they may have left) and are never sent again automatically; a
delivery receipt, if one comes, moves them on. Nothing is held only in memory.
"""

import logging
import threading
import time
from bisect import insort
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, transaction
from django.db.models import Count, F
from django.utils import timezone

from providers import get_provider
from providers.encoding import analyze
from providers.messages import OutboundSms, SendError, SendErrorKind, SendResult

from .. import lifecycle
from ..models import Campaign, DeliveryEvent, Message
from ..provider_checks import campaign_pause_for_provider
from ..stats import campaign_snapshot_refresh
from ..templating import parse
from .claims import Claimed, claim_batch, mark_handed
from .liveness import Liveness, campaign_beat, recover_stale
from .pacing import CircuitBreaker, RateLimiter
from .receipts import delivery_events_apply_pending
from .recording import Rendered, record_batch
from .windows import SendWindow, WindowError, earliest_opening, open_zones

logger = logging.getLogger(__name__)

# Seconds of sending one claim may hold at the provider's rate.
CLAIM_SECONDS = 5

# Share of the vendor's rate the limiter keeps free: what starts at one instant (a
# slice of requests) is at most this much, so no calendar second at the vendor gets
# more than the rate, even with a few milliseconds of jitter on the way.
RATE_HEADROOM = 0.03

# At most this many claims' worth of messages in flight per dispatcher.
CLAIMS_IN_FLIGHT = 4

# Slots are booked this far ahead, so claiming the next batch never leaves a gap.
BOOK_AHEAD_SECONDS = 0.5
# Requests are handed to their sending thread this long before their slot, and the
# thread starts them on time; a slot the dispatcher itself missed by more than
# LATE_SECONDS is booked again.
SUBMIT_LEAD_SECONDS = 0.05
LATE_SECONDS = 0.015

# A dispatcher looks for dead dispatchers' claims on its campaign this often.
RECOVERY_SECONDS = 2.0

# Longest single wait for answers, so the loop keeps proving it is alive.
ANSWER_WAIT_SECONDS = 0.5

# Answers are recorded together once this many messages have come back, or the oldest
# has waited this long: one set-based write instead of one per request, and at most
# this much sending is "unknown" after a crash.
RECORD_MESSAGES = 500
RECORD_SECONDS = 0.1

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
    late_slots: int = 0
    """Slots missed because this process was busy, booked again."""
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


@dataclass
class _InFlight:
    """One request handed to the pool: its future and the messages it carries."""

    future: Future
    alias: str
    sent: list[Rendered]


@dataclass
class _Booked:
    """A slice of requests whose slot at the rate limiter is booked."""

    start: float
    """Monotonic time of the slot."""
    cost: float
    alias: str
    limiter: RateLimiter
    send: Callable[[list[OutboundSms]], list[SendResult]]
    requests: list[list[OutboundSms]]
    rendered: dict[str, Rendered]
    claimed_at: datetime


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
        self._cursor = 0
        self._zones: list[str] | None = None
        self._limiters: dict[str, RateLimiter] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._claimed_at = timezone.now()
        self._next_snapshot = time.monotonic() + SNAPSHOT_SECONDS
        self._next_recovery = 0.0
        self._in_flight: list[_InFlight] = []
        self._answered: list[tuple[_InFlight, list[SendResult]]] = []
        self._answered_since: float | None = None
        self._halt = False
        self._booked: deque[_Booked] = deque()

    # --- Loop ----------------------------------------------------------------------

    def run(self, *, deadline: float | None = None) -> Step:
        """Send until the campaign is done or stopped, the stop event is set, or the
        (monotonic) deadline passes. Returns the last step."""
        self.liveness.open()
        try:
            try:
                return self._loop(deadline)
            finally:
                # Every request that left is recorded before the dispatcher goes.
                self._drain()
                if self._executor is not None:
                    self._executor.shutdown(wait=True)
                    self._executor = None
        finally:
            self.liveness.close()

    def _loop(self, deadline: float | None) -> Step:
        step = Step("waiting")
        while not self.stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            self._recover()
            step = self.last_step = self.step()
            self._collect()
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
                self._wait(time.monotonic() + pause, until_answer=True)
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
        while not self.stop.is_set() and (
            len(self._in_flight) >= self.concurrency
            or self._messages_in_flight() >= CLAIMS_IN_FLIGHT * self.batch_size
        ):
            self._wait(time.monotonic() + ANSWER_WAIT_SECONDS, until_answer=True)
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

    def _messages_in_flight(self) -> int:
        return sum(len(request.sent) for request in self._in_flight)

    def _waiting_for(self, campaign: Campaign, now: datetime) -> Step:
        """What a dispatcher with nothing to claim waits for, said plainly."""
        mine = self._messages_in_flight()
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
        return self._limiters[alias]

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

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.concurrency, thread_name_prefix="sms-send"
            )
        return self._executor

    def _send(
        self, campaign: Campaign, backend, alias: str, rows: list[Claimed]
    ) -> None:
        template = _template(campaign.template_source)
        sender = campaign.sender
        rendered: dict[str, Rendered] = {}
        outbound: list[OutboundSms] = []
        for row in rows:
            text = template.render(
                first_name=row.first_name,
                last_name=row.last_name,
                phone=row.to,
                attributes=row.attributes,
            )
            info = _analyze(text)
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
                )
            )

        limiter = self._limiter(alias, backend)
        # What may start at one instant: the headroom the limiter keeps below the
        # vendor's rate. Vendors count per calendar second; the limiter spaces
        # starts, so a second holds at most (its paced share) + (what started at its
        # last instant): kept within the headroom, no second exceeds the rate. It
        # also caps requests: 1,000 recipients at 30/s would be one burst.
        at_once = max(1.0, limiter.effective_rate() * RATE_HEADROOM)
        largest = int(at_once)
        requests = [
            request[start : start + largest]
            for request in backend.split_requests(outbound)
            for start in range(0, len(request), largest)
        ]
        # The limiter is booked once per slice of that size, not once per request: at
        # 1,000 one-recipient requests a second, per-request booking is what would
        # limit us.
        pending = deque(_slices(requests, rendered, at_once))
        self._halt = False
        while pending and not (self._halt or self.stop.is_set()):
            # Slots are booked up to BOOK_AHEAD_SECONDS ahead and each slice is sent
            # when its slot comes (_submit_due, during every wait). The dispatcher may
            # thus claim and render the next batch while the last slots of this one
            # are still to come: no gap in the vendor's seconds between claims.
            ahead = time.monotonic() + BOOK_AHEAD_SECONDS
            if self._booked and self._booked[-1].start > ahead:
                self._wait(self._booked[-1].start - BOOK_AHEAD_SECONDS)
                continue
            slice_requests, cost = pending.popleft()
            self._booked.append(
                _Booked(
                    start=time.monotonic() + limiter.reserve(cost),
                    cost=cost,
                    alias=alias,
                    limiter=limiter,
                    send=backend.send_batch,
                    requests=slice_requests,
                    rendered=rendered,
                    claimed_at=self._claimed_at,
                )
            )
            self._submit_due()
        if pending:
            # Credentials refused, the circuit opened or a stop was asked for: the
            # rest of the claim goes back to the queue unsent.
            self._release(
                [
                    rendered[m.reference].id
                    for reqs, _ in pending
                    for r in reqs
                    for m in r
                ]
            )
        self.stats.batches += 1

    def _submit_due(self) -> None:
        """Hand the slices whose slot is near to the sending threads.

        A thread gets its slice SUBMIT_LEAD_SECONDS early and starts it on time,
        whatever this thread is doing then. A slot this thread missed by more than
        LATE_SECONDS (the process was busy, or the pool full) is booked again rather
        than used late: a late start lands in the next calendar second, on top of
        that second's own share."""
        if self._halt or self.stop.is_set():
            self._release_booked()
            return
        while self._booked:
            booked = self._booked[0]
            now = time.monotonic()
            if booked.start - SUBMIT_LEAD_SECONDS > now:
                return
            room = max(self.concurrency, len(booked.requests)) - len(self._in_flight)
            if now - booked.start > LATE_SECONDS or len(booked.requests) > room:
                self._booked.popleft()
                self.stats.late_slots += 1
                booked.start = time.monotonic() + booked.limiter.reserve(booked.cost)
                insort(self._booked, booked, key=lambda b: b.start)
                if len(booked.requests) > room:
                    return  # wait for answers to free the pool
                continue
            self._booked.popleft()
            rendered = booked.rendered
            # From here on the vendor may have these messages: a crash now leaves them
            # "unknown", while claimed messages not yet handed over go back to the queue.
            ours = mark_handed(
                [rendered[m.reference].id for r in booked.requests for m in r],
                claimed_at=booked.claimed_at,
                now=timezone.now(),
            )
            for request in booked.requests:
                kept = [m for m in request if rendered[m.reference].id in ours]
                if kept:
                    self._in_flight.append(
                        _InFlight(
                            future=self._pool().submit(
                                _send_at, booked.start, booked.send, kept
                            ),
                            alias=booked.alias,
                            sent=[rendered[m.reference] for m in kept],
                        )
                    )

    def _release_booked(self) -> None:
        """Give back the messages of slices booked but not sent."""
        booked, self._booked = self._booked, deque()
        self._release(
            [b.rendered[m.reference].id for b in booked for r in b.requests for m in r]
        )

    # --- Answers ---------------------------------------------------------------------

    def _wait(self, until: float, *, until_answer: bool = False) -> None:
        """Wait until the monotonic time ``until`` (or a stop), recording answers as
        they arrive and proving this dispatcher alive. ``until_answer`` returns
        early once an answer was recorded."""
        while True:
            self._submit_due()
            now = time.monotonic()
            remaining = until - now
            if remaining <= 0 or self.stop.is_set():
                break
            # Answers waiting to be recorded are not kept past RECORD_SECONDS, and
            # the next slot is never missed.
            pause = min(
                remaining, RECORD_SECONDS if self._answered else ANSWER_WAIT_SECONDS
            )
            if self._booked:
                next_slot = self._booked[0].start - SUBMIT_LEAD_SECONDS - now
                pause = min(pause, max(next_slot, 0.001))
            if self._in_flight:
                wait(
                    [r.future for r in self._in_flight],
                    timeout=pause,
                    return_when=FIRST_COMPLETED,
                )
                # Recording takes milliseconds; sending threads get their slices
                # SUBMIT_LEAD_SECONDS early, so it never makes a request start late.
                if self._collect() and until_answer:
                    break
            else:
                self.stop.wait(pause)
            self.liveness.beat()
        self._collect()

    def _collect(self, *, force: bool = False) -> int:
        """Take the answers that came back; record them in one go once enough have
        gathered or the oldest has waited ``RECORD_SECONDS``. Returns how many
        requests were recorded."""
        still: list[_InFlight] = []
        for request in self._in_flight:
            if request.future.done():
                self._answered.append((request, _results(request)))
                if self._answered_since is None:
                    self._answered_since = time.monotonic()
            else:
                still.append(request)
        self._in_flight = still
        if not self._answered:
            return 0
        waited = time.monotonic() - (self._answered_since or 0)
        messages = sum(len(request.sent) for request, _ in self._answered)
        if not (
            force
            or not self._in_flight
            or waited >= RECORD_SECONDS
            or messages >= RECORD_MESSAGES
        ):
            return 0
        answered, self._answered, self._answered_since = self._answered, [], None
        by_alias: dict[str, tuple[list[Rendered], list[SendResult]]] = {}
        for request, results in answered:
            sent, all_results = by_alias.setdefault(request.alias, ([], []))
            sent.extend(request.sent)
            all_results.extend(results)
        for alias, (sent, results) in by_alias.items():
            outcome = record_batch(rendered=sent, results=results)
            if not self._after(alias, outcome, sent):
                self._halt = True
        return len(answered)

    def settle(self) -> None:
        """Wait for every request in flight and record its answer (``run()`` does it
        before returning; a caller driving ``step()`` itself calls this)."""
        self._drain()

    def _drain(self) -> None:
        """Send the slices already booked (unless stopping: they go back to the
        queue), wait for every request in flight and record its answer."""
        while self._booked and not (self._halt or self.stop.is_set()):
            self._wait(self._booked[-1].start)
        self._release_booked()
        while self._in_flight:
            wait([r.future for r in self._in_flight], timeout=ANSWER_WAIT_SECONDS)
            self._collect(force=True)
            self.liveness.beat()
        self._collect(force=True)

    def _after(self, alias: str, outcome, sent: list[Rendered]) -> bool:
        """Account for recorded answers; False when sending should stop."""
        self.stats.submitted += outcome.submitted
        self.stats.failed += outcome.failed
        self.stats.retried += outcome.retried
        self.stats.unknown += outcome.unknown
        circuit = circuit_for(alias)
        if outcome.throttled and alias in self._limiters:
            self._limiters[alias].slow_down()
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

    def _release(self, ids: list[int]) -> None:
        """Put claimed messages that were never sent back in the queue."""
        Message.objects.filter(pk__in=ids, status=Message.Status.SENDING).update(
            status=Message.Status.QUEUED,
            attempts=F("attempts") - 1,
            claimed_by=None,
            handed_at=None,
        )

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


def _send_at(start: float, send: Callable, messages: list[OutboundSms]):
    """In a sending thread: start the request at its slot (monotonic time)."""
    delay = start - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    return send(messages)


def _results(request: _InFlight) -> list[SendResult]:
    """A finished request's results. A backend that raised after the request may
    have left has told us nothing: its messages are "maybe sent", never re-sent."""
    try:
        return request.future.result()
    except Exception as exc:
        logger.exception("provider %s raised while sending", request.alias)
        error = SendError(
            kind=SendErrorKind.MAYBE_SENT,
            code="internal_error",
            reason=f"The send failed inside the application ({type(exc).__name__})",
        )
        return [
            SendResult(reference=row.reference, to="", error=error)
            for row in request.sent
        ]


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


def _slices(requests, rendered, budget: float):
    """Group requests into slices costing about ``budget`` segments each."""
    current, cost = [], 0.0
    for request in requests:
        request_cost = sum(rendered[m.reference].segments for m in request)
        if current and cost + request_cost > budget:
            yield current, cost
            current, cost = [], 0.0
        current.append(request)
        cost += request_cost
    if current:
        yield current, cost
