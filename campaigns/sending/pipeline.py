"""How a claimed batch reaches the vendor on time: book slots, start requests, gather answers.

The dispatcher (``campaigns.sending.dispatch``) decides *what* to send: it claims and
renders messages. ``SendPipeline`` decides *when* each request starts and keeps many in
flight, so a vendor a network away still gets its full rate:

- The shared rate limiter spaces request *starts*; slots are booked
  ``BOOK_AHEAD_SECONDS`` ahead in slices of a few requests, so claiming the next batch
  never leaves a gap in the vendor's seconds.
- Each slice is handed to a sending thread ``SUBMIT_LEAD_SECONDS`` before its slot and
  the thread starts it on time, whatever the dispatcher's thread is doing then. A slot
  missed by more than ``LATE_SECONDS`` is booked again rather than used late.
- Answers are gathered as they return and handed to the dispatcher's ``record``
  callback in groups, from the dispatcher's own thread (the only one touching the
  database).

Messages are marked "handed over" just before their slice goes to a thread: from then
on the vendor may have them, and a crash leaves them "unknown" rather than queued.
"""

import gc
import logging
import threading
import time
from bisect import insort
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from providers.messages import OutboundSms, SendError, SendErrorKind, SendResult
from smscampaigns import metrics

from .claims import mark_handed, release_unsent
from .liveness import Liveness
from .pacing import RateLimiter
from .recording import Rendered

logger = logging.getLogger(__name__)

# Share of the vendor's rate the limiter keeps free: what starts at one instant (a
# slice of requests) is at most this much, so no calendar second at the vendor gets
# more than the rate, even with a few milliseconds of jitter on the way.
RATE_HEADROOM = 0.03

# Slots are booked this far ahead, so claiming the next batch never leaves a gap.
BOOK_AHEAD_SECONDS = 0.5
# Requests are handed to their sending thread this long before their slot (enough for
# the dispatcher's longest stretch of claiming, rendering or recording), and the
# thread starts them on time; a slot the dispatcher itself missed by more than
# LATE_SECONDS is booked again.
SUBMIT_LEAD_SECONDS = 0.15
LATE_SECONDS = 0.015

# Longest single wait for answers, so the loop keeps proving it is alive.
ANSWER_WAIT_SECONDS = 0.5

# Answers are recorded together once this many messages have come back, or the oldest
# has waited this long: one set-based write instead of one per request, and at most
# this much sending is "unknown" after a crash.
RECORD_MESSAGES = 500
RECORD_SECONDS = 0.1

type Send = Callable[[list[OutboundSms]], list[SendResult]]
type Record = Callable[[str, list[Rendered], list[SendResult]], bool]
"""``record(alias, sent, results)``: store answers; False when sending should stop."""


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
    send: Send
    requests: list[list[OutboundSms]]
    rendered: dict[str, Rendered]
    claimed_at: datetime


class SendPipeline:
    """Starts requests at their booked slots, up to ``concurrency`` in flight."""

    def __init__(
        self,
        *,
        concurrency: int,
        stop: threading.Event,
        liveness: Liveness,
        record: Record,
    ) -> None:
        self.concurrency = concurrency
        self.stop = stop
        self.liveness = liveness
        self.record = record
        self.late_slots = 0
        """Slots missed because this process was busy, booked again."""
        self.full_slots = 0
        """Slots missed because every sending thread was taken, booked again."""
        self.latest_start = 0.0
        """Longest a slot was missed by (seconds), for the sender's report."""
        self.halted = False
        """Set when ``record`` said stop; what is booked then goes back to the queue."""
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: list[_InFlight] = []
        self._answered: list[tuple[_InFlight, list[SendResult]]] = []
        self._answered_since: float | None = None
        self._booked: deque[_Booked] = deque()

    @property
    def requests_in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def messages_in_flight(self) -> int:
        return sum(len(request.sent) for request in self._in_flight)

    def open(self) -> None:
        _freeze_startup_objects()

    def close(self) -> None:
        """Send what is booked (unless stopping), record every answer, stop the threads."""
        try:
            self.drain()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    # --- Booking -----------------------------------------------------------------------

    def send(
        self,
        *,
        alias: str,
        backend,
        limiter: RateLimiter,
        outbound: list[OutboundSms],
        rendered: dict[str, Rendered],
        claimed_at: datetime,
    ) -> None:
        """Book and send a rendered batch; what cannot be sent (stop, credentials
        refused, circuit open) goes back to the queue."""
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
        self.halted = False
        while pending and not (self.halted or self.stop.is_set()):
            # Slots are booked up to BOOK_AHEAD_SECONDS ahead and each slice is sent
            # when its slot comes (submit_due, during every wait). The dispatcher may
            # thus claim and render the next batch while the last slots of this one
            # are still to come: no gap in the vendor's seconds between claims.
            ahead = time.monotonic() + BOOK_AHEAD_SECONDS
            if self._booked and self._booked[-1].start > ahead:
                self.wait(self._booked[-1].start - BOOK_AHEAD_SECONDS)
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
                    claimed_at=claimed_at,
                )
            )
            self.submit_due()
        if pending:
            release_unsent(
                [
                    rendered[m.reference].id
                    for reqs, _ in pending
                    for r in reqs
                    for m in r
                ]
            )

    def submit_due(self) -> None:
        """Hand the slices whose slot is near to the sending threads.

        A thread gets its slice SUBMIT_LEAD_SECONDS early and starts it on time,
        whatever this thread is doing then. A slot this thread missed by more than
        LATE_SECONDS (the process was busy, or the pool full) is booked again rather
        than used late: a late start lands in the next calendar second, on top of
        that second's own share."""
        if self.halted or self.stop.is_set():
            self._release_booked()
            return
        while self._booked:
            booked = self._booked[0]
            now = time.monotonic()
            if booked.start - SUBMIT_LEAD_SECONDS > now:
                return
            room = max(self.concurrency, len(booked.requests)) - len(self._in_flight)
            late = now - booked.start
            if late > LATE_SECONDS or len(booked.requests) > room:
                self._booked.popleft()
                if len(booked.requests) > room:
                    self.full_slots += 1
                else:
                    self.late_slots += 1
                    self.latest_start = max(self.latest_start, late)
                booked.start = time.monotonic() + booked.limiter.reserve(booked.cost)
                insort(self._booked, booked, key=lambda b: b.start)
                if len(booked.requests) > room:
                    return  # wait for answers to free the pool
                continue
            self._booked.popleft()
            self._hand_over(booked)

    def _hand_over(self, booked: _Booked) -> None:
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
                            _send_at, booked.start, booked.send, kept, booked.alias
                        ),
                        alias=booked.alias,
                        sent=[rendered[m.reference] for m in kept],
                    )
                )

    def _release_booked(self) -> None:
        """Give back the messages of slices booked but not sent."""
        booked, self._booked = self._booked, deque()
        release_unsent(
            [b.rendered[m.reference].id for b in booked for r in b.requests for m in r]
        )

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.concurrency, thread_name_prefix="sms-send"
            )
        return self._executor

    # --- Answers ---------------------------------------------------------------------

    def wait(self, until: float, *, until_answer: bool = False) -> None:
        """Wait until the monotonic time ``until`` (or a stop), starting slices on
        time, recording answers as they arrive and proving this dispatcher alive.
        ``until_answer`` returns early once an answer was recorded."""
        while True:
            self.submit_due()
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
                if self.collect() and until_answer:
                    break
            else:
                self.stop.wait(pause)
            self.liveness.beat()
        self.collect()

    def collect(self, *, force: bool = False) -> int:
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
            if not self.record(alias, sent, results):
                self.halted = True
        return len(answered)

    def drain(self) -> None:
        """Send the slices already booked (unless stopping: they go back to the
        queue), wait for every request in flight and record its answer."""
        while self._booked and not (self.halted or self.stop.is_set()):
            self.wait(self._booked[-1].start)
        self._release_booked()
        while self._in_flight:
            wait([r.future for r in self._in_flight], timeout=ANSWER_WAIT_SECONDS)
            self.collect(force=True)
            self.liveness.beat()
        self.collect(force=True)


_frozen = False


def _freeze_startup_objects() -> None:
    """Once per process: move everything loaded so far (Django, the backends, the
    SDKs), which lives as long as the process, out of the collector's reach. A full
    collection then no longer stalls the sending threads for tens of milliseconds,
    which would push a slice of requests into the vendor's next second."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


def _send_at(start: float, send: Send, messages: list[OutboundSms], alias: str = ""):
    """In a sending thread: start the request at its slot (monotonic time), and time
    it for /metrics."""
    delay = start - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    started = time.perf_counter()
    try:
        return send(messages)
    finally:
        metrics.send_duration_observe(alias, time.perf_counter() - started)


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


def _slices(
    requests: Iterable[list[OutboundSms]], rendered: dict[str, Rendered], budget: float
) -> Iterator[tuple[list[list[OutboundSms]], float]]:
    """Group requests into slices costing about ``budget`` segments each."""
    current: list[list[OutboundSms]] = []
    cost = 0.0
    for request in requests:
        request_cost = sum(rendered[m.reference].segments for m in request)
        if current and cost + request_cost > budget:
            yield current, cost
            current, cost = [], 0.0
        current.append(request)
        cost += request_cost
    if current:
        yield current, cost
