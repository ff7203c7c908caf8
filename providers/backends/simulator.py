"""In-process SMS sandbox: the default provider, needing no account and sending nothing.

It accepts messages like a vendor, answers with ids, injects throttling, server errors,
timeouts and invalid numbers on request, enforces a throughput limit, and later produces
signed delivery reports that travel the same path a real vendor callback takes.

Options (``SMS_PROVIDERS["simulator"]["OPTIONS"]``, all optional):

==========================  ====================  =========================================
option                      default               meaning
==========================  ====================  =========================================
``rate``                    100                   messages/s the sender should pace to
``max_recipients``          1000                  recipients per send request
``delivered_rate``          0.95                  share of accepted messages delivered
``undelivered_rate``        0.03                  share undelivered (handset off, ...), at
                                                  most 1 - delivered_rate; the rest fail
                                                  (70 %) or are rejected (30 %)
``report_delay``            (0.5, 3.0)            seconds from acceptance to the final
                                                  report: a number, a (low, high) range or
                                                  "low,high"; the "sent" report comes
                                                  half-way
``mode``                    "signal"              "signal": send ``callback_received``;
                                                  "http": POST to our public webhook URL
``price_per_segment``       Decimal("0.0075")     price of one segment
``currency``                "USD"
``number``                  "+12025550100"        our (fictional) number: default sender
                                                  and inbound destination
``throttle_rate``           0                     share of requests answered 429
``server_error_rate``       0                     share of requests answered 5xx
``timeout_rate``            0                     share of requests that time out
``latency``                 0                     seconds slept per request
``invalid_prefixes``        ()                    numbers starting with one of these are
                                                  permanently invalid (list or "a,b")
``seed``                    None                  seed for a deterministic random.Random
``max_rate``                None                  messages/s accepted; beyond it whole
                                                  requests get 429
``shared_limit``            False                 keep the ``max_rate`` window in the
                                                  Django cache, shared by all processes
``background_reports``      False                 start the reporter thread at once
==========================  ====================  =========================================

Callback format (what ``verify_callback`` and ``parse_*_callback`` accept):

- ``POST``, ``Content-Type: application/json``, one report per request.
- Status body: ``{"type": "status", "message_id": "sim-…", "reference": "<our client
  reference>", "to": "+1…", "from": "+1…", "status": "sent|delivered|undelivered|failed|
  rejected", "error_code": "", "error_reason": "", "price": "0.0075" | null,
  "currency": "USD", "segments": 1, "opt_out": false, "timestamp": "<ISO 8601 UTC>"}``.
- Inbound body: ``{"type": "inbound", "message_id": "sim-in-…", "from": "+1…",
  "to": "+1…", "text": "STOP", "keyword": "STOP", "timestamp": "<ISO 8601 UTC>"}``.
- Headers ``X-Simulator-Timestamp`` (Unix seconds), ``X-Simulator-Nonce`` (32 hex
  digits) and ``X-Simulator-Signature: v1=<hex>``, where ``<hex>`` is
  HMAC-SHA256(key, ``"{timestamp}.{nonce}."`` + body bytes) and ``key`` is
  HMAC-SHA256(SECRET_KEY, ``"smscampaigns.simulator:" + alias``). Keys derived from
  ``SECRET_KEY_FALLBACKS`` are accepted too, so rotating the secret keeps reports valid.
  The URL is not signed: the body names everything a report means.

Throughput limit: ``max_rate`` counts messages per calendar second. A request that does
not fit in what is left of the second is refused as a whole with a retryable 429 whose
``retry_after`` is the time to the next second, and uses none of the budget. The window is
guarded by a lock, so it holds across threads of one process. With ``shared_limit=True``
it lives in ``django.core.cache.cache`` instead (``add`` creates the per-second key,
atomic ``incr`` takes the budget, ``decr`` gives back what a refused request took), so
worker processes sharing a Redis cache are limited together; with the default locmem
cache each process still has its own window. ``rate`` is what the sender paces to;
setting ``max_rate`` below it shows how the pipeline copes with a vendor's 429s.

The nonce only makes each signature unique; it is not remembered. A replayed report
within the freshness window repeats a status the message already has.

Reports are per process: pending ones live in this backend instance's memory, so a
worker that dies loses the reports it had not delivered yet. That is realistic (vendors
lose receipts too) and is what the status reconciliation has to cope with anyway.
"""

import functools
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured

from ..exceptions import CallbackAuthError, CallbackParseError
from ..messages import (
    Callback,
    DeliveryStatus,
    InboundSms,
    OutboundSms,
    SendError,
    SendErrorKind,
    SendResult,
    StatusEvent,
    mask_phone,
)
from ..signals import callback_received
from .base import BaseSmsBackend

logger = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Simulator-Timestamp"
NONCE_HEADER = "X-Simulator-Nonce"
SIGNATURE_HEADER = "X-Simulator-Signature"
SIGNATURE_VERSION = "v1"
KEY_SALT = "smscampaigns.simulator:"

E164 = re.compile(r"\+[1-9]\d{6,14}")

STATUSES = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "rejected": DeliveryStatus.REJECTED,
    "expired": DeliveryStatus.EXPIRED,
}

# Final outcomes carry the GSM MAP / carrier reasons real receipts carry, so the UI and
# the reports show something that looks like production.
UNDELIVERED_ERRORS = (
    ("27", "Absent subscriber: handset switched off or out of coverage"),
    ("31", "Subscriber busy for MT SMS"),
    ("32", "SM delivery failure: handset memory full"),
)
FAILED_ERRORS = (
    ("1", "Unknown subscriber: number not allocated"),
    ("13", "Call barred by the operator"),
    ("34", "System failure in the destination network"),
)
REJECTED_ERRORS = (
    ("spam", "Rejected by the carrier's spam filter", False),
    ("opt_out", "Recipient has blocked messages from this sender", True),
)
SERVER_ERRORS = (
    ("500", "Internal Server Error"),
    ("502", "Bad Gateway"),
    ("503", "Service Unavailable"),
)
FAILED_SHARE_OF_REST = 0.7
"""Of the messages neither delivered nor undelivered, this share fails, the rest is rejected."""

HTTP_DELIVERY_ATTEMPTS = 3
HTTP_TIMEOUT = 10.0


def clock() -> float:
    """Current Unix time; tests monkeypatch this module attribute to control time."""
    return time.time()


def sleep(seconds: float) -> None:
    """Injected latency; tests monkeypatch this to keep the suite fast."""
    time.sleep(seconds)


@functools.cache
def _segment_counter() -> Callable[[str], int]:
    # providers.encoding is optional: without it every text counts as one segment.
    # Cached, so a missing module costs one failed import per process, not per message.
    try:
        from ..encoding import segment_count
    except ImportError:
        return lambda text: 1
    return segment_count


def _iso(timestamp: float) -> str:
    return (
        datetime.fromtimestamp(timestamp, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _signing_key(alias: str, secret: str) -> bytes:
    return hmac.new(
        secret.encode(), (KEY_SALT + alias).encode(), hashlib.sha256
    ).digest()


def _signature(key: bytes, timestamp: str, nonce: str, body: bytes) -> str:
    message = f"{timestamp}.{nonce}.".encode() + body
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(order=True)
class _PendingReport:
    due: float
    seq: int
    kind: str = field(compare=False)
    payload: dict[str, Any] = field(compare=False)
    attempts: int = field(default=0, compare=False)


class SmsBackend(BaseSmsBackend):
    """A vendor without a vendor: see the module docstring for options and formats."""

    development_only = True
    max_recipients_per_request = 1000
    supports_per_recipient_text = True
    supports_client_reference = True
    supports_callback_url = True
    default_rate = 100.0
    replay_headers = (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)

    def __init__(
        self,
        *,
        alias: str,
        max_recipients: int = 1000,
        delivered_rate: float = 0.95,
        undelivered_rate: float = 0.03,
        report_delay: float | Sequence[float] | str = (0.5, 3.0),
        mode: str = "signal",
        price_per_segment: Decimal | str | float = Decimal("0.0075"),
        currency: str = "USD",
        number: str = "+12025550100",
        throttle_rate: float = 0.0,
        server_error_rate: float = 0.0,
        timeout_rate: float = 0.0,
        latency: float = 0.0,
        invalid_prefixes: Iterable[str] | str | None = None,
        seed: int | str | None = None,
        max_rate: float | None = None,
        shared_limit: bool = False,
        background_reports: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(alias=alias, **options)
        self.max_recipients_per_request = int(max_recipients)
        self.delivered_rate = self._share("delivered_rate", delivered_rate)
        # delivered_rate=1 alone should mean "everything is delivered", so the
        # undelivered share only takes what the delivered one leaves.
        self.undelivered_rate = min(
            self._share("undelivered_rate", undelivered_rate), 1 - self.delivered_rate
        )
        self.report_delay = self._delay_range(report_delay)
        if mode not in {"signal", "http"}:
            raise ImproperlyConfigured(
                f"SMS provider {alias!r}: mode must be 'signal' or 'http', not {mode!r}"
            )
        if mode == "http" and not settings.PUBLIC_BASE_URL:
            raise ImproperlyConfigured(
                f"SMS provider {alias!r}: mode 'http' needs PUBLIC_BASE_URL to post reports to"
            )
        self.mode = mode
        try:
            self.price_per_segment = Decimal(str(price_per_segment))
        except InvalidOperation:
            raise ImproperlyConfigured(
                f"SMS provider {alias!r}: price_per_segment {price_per_segment!r} is not a number"
            ) from None
        self.currency = currency
        self.number = number
        self.throttle_rate = self._share("throttle_rate", throttle_rate)
        self.server_error_rate = self._share("server_error_rate", server_error_rate)
        self.timeout_rate = self._share("timeout_rate", timeout_rate)
        if self.throttle_rate + self.server_error_rate + self.timeout_rate > 1:
            raise ImproperlyConfigured(
                f"SMS provider {alias!r}: throttle_rate + server_error_rate + timeout_rate exceeds 1"
            )
        self.latency = float(latency or 0)
        if isinstance(invalid_prefixes, str):
            invalid_prefixes = invalid_prefixes.split(",")
        self.invalid_prefixes = tuple(
            p.strip() for p in invalid_prefixes or () if p.strip()
        )
        self.max_rate = float(max_rate) if max_rate else None
        self.shared_limit = bool(shared_limit)

        # seed="" (an unset environment variable) means unseeded.
        self._random = random.Random(seed if seed not in (None, "") else None)
        self._random_lock = threading.Lock()
        self._queue: list[_PendingReport] = []
        self._queue_lock = threading.Lock()
        self._seq = itertools.count()
        self._window_lock = threading.Lock()
        self._window: tuple[int, float] = (0, 0.0)
        self._stats_lock = threading.Lock()
        self._stats = dict.fromkeys(self._STAT_NAMES, 0)
        self._reporter: threading.Thread | None = None
        self._reporter_stop = threading.Event()
        if background_reports:
            self.start_reporter()

    _STAT_NAMES = (
        "requests",
        "messages",
        "accepted",
        "throttled",
        "throttled_requests",
        "errors",
        "invalid",
        "reports_delivered",
        "reports_failed",
    )

    def _share(self, name: str, value: float) -> float:
        share = float(value or 0)
        if not 0 <= share <= 1:
            raise ImproperlyConfigured(
                f"SMS provider {self.alias!r}: {name} must be between 0 and 1, not {value!r}"
            )
        return share

    def _delay_range(self, value: float | Sequence[float] | str) -> tuple[float, float]:
        try:
            if isinstance(value, str):
                parts = [float(p) for p in value.split(",")]
            elif isinstance(value, int | float):
                parts = [float(value)]
            else:
                parts = [float(p) for p in value]
            low, high = (parts[0], parts[0]) if len(parts) == 1 else parts
        except (TypeError, ValueError):
            raise ImproperlyConfigured(
                f"SMS provider {self.alias!r}: report_delay must be seconds or a (low, high) range, not {value!r}"
            ) from None
        if not 0 <= low <= high:
            raise ImproperlyConfigured(
                f"SMS provider {self.alias!r}: report_delay needs 0 <= low <= high, not {value!r}"
            )
        return low, high

    # --- Sending -------------------------------------------------------------------

    def send_batch(self, messages: Sequence[OutboundSms]) -> list[SendResult]:
        messages = list(messages)
        self._count(requests=1, messages=len(messages))
        if self.latency:
            sleep(self.latency)

        error = self._request_error(len(messages))
        if error is not None:
            if error.kind == SendErrorKind.THROTTLED:
                self._count(throttled=len(messages), throttled_requests=1)
            else:
                self._count(errors=len(messages))
            return [
                SendResult(reference=m.reference, to=m.to, error=error)
                for m in messages
            ]

        now = clock()
        results = []
        for message in messages:
            invalid = self._invalid(message)
            if invalid is not None:
                self._count(invalid=1)
                results.append(
                    SendResult(
                        reference=message.reference, to=message.to, error=invalid
                    )
                )
                continue
            message_id = f"sim-{uuid.uuid4().hex}"
            self._schedule(message, message_id, now)
            self._count(accepted=1)
            results.append(
                SendResult(
                    reference=message.reference,
                    to=message.to,
                    provider_message_id=message_id,
                )
            )
        return results

    def _request_error(self, size: int) -> SendError | None:
        """The error a whole request gets, if any: too large, throttled, 5xx, timeout."""
        if size > self.max_recipients_per_request:
            return SendError(
                SendErrorKind.PERMANENT,
                "400",
                f"Too many recipients: {size} > {self.max_recipients_per_request}",
            )
        # Draw before the rate check so a seeded run draws the same numbers whether or
        # not the limit bites.
        with self._random_lock:
            draw = self._random.random()
            server_error = self._random.choice(SERVER_ERRORS)
        if draw < self.throttle_rate:
            return SendError(
                SendErrorKind.THROTTLED,
                "429",
                "Too Many Requests (simulated)",
                retry_after=1.0,
            )
        wait = self._rate_limit_wait(size)
        if wait is not None:
            return SendError(
                SendErrorKind.THROTTLED,
                "429",
                f"Throughput limit of {self.max_rate:g} messages/s exceeded",
                retry_after=wait,
            )
        draw -= self.throttle_rate
        if draw < self.server_error_rate:
            code, reason = server_error
            # 500, 502 and 503 say the request was not processed.
            return SendError(SendErrorKind.NOT_SENT, code, f"{reason} (simulated)")
        draw -= self.server_error_rate
        if draw < self.timeout_rate:
            # A read timeout: the sender cannot know whether the vendor took it.
            return SendError(
                SendErrorKind.MAYBE_SENT, "timeout", "Request timed out (simulated)"
            )
        return None

    def _rate_limit_wait(self, size: int) -> float | None:
        """None when ``size`` messages fit in this second's budget (and take it); else
        the seconds until the next window.

        The window is one calendar second. A request that does not fit is refused as a
        whole, like a vendor's 429, and uses none of the budget. A request larger than
        ``max_rate`` is admitted into an empty second, or it could never be sent.
        """
        if self.max_rate is None:
            return None
        if self.shared_limit:
            now = clock()
            second = int(now)
            if self._take_shared(second, size):
                return None
            return max(second + 1 - now, 0.001)
        with self._window_lock:
            # The clock is read under the lock: a thread that read it just before a
            # second boundary must not reset the window another thread has moved on.
            now = clock()
            second = int(now)
            window_second, used = self._window
            if window_second != second:
                used = 0
            if used and used + size > self.max_rate:
                return max(second + 1 - now, 0.001)
            self._window = (second, used + size)
        return None

    def _take_shared(self, second: int, size: int) -> bool:
        # One counter per alias and second in the shared cache (Redis in production),
        # so every worker process draws on the same budget. incr is atomic; add only
        # creates the key when no other process did first.
        key = f"providers:simulator:{self.alias}:rate:{second}"
        cache.add(key, 0, timeout=10)
        try:
            used = cache.incr(key, size)
        except ValueError:
            # The key expired between add and incr: this second is long gone anyway.
            cache.add(key, 0, timeout=10)
            used = cache.incr(key, size)
        if used > self.max_rate and used != size:
            # Give the budget back: a refused request must not starve the ones after it.
            cache.decr(key, size)
            return False
        return True

    def _invalid(self, message: OutboundSms) -> SendError | None:
        if not E164.fullmatch(message.to):
            return SendError(
                SendErrorKind.PERMANENT,
                "invalid_number",
                "Invalid destination number: not E.164",
            )
        if self.invalid_prefixes and message.to.startswith(self.invalid_prefixes):
            return SendError(
                SendErrorKind.PERMANENT, "invalid_number", "Invalid destination number"
            )
        if not message.text:
            return SendError(SendErrorKind.PERMANENT, "empty_text", "Empty message")
        return None

    # --- Delivery reports ----------------------------------------------------------

    def _schedule(self, message: OutboundSms, message_id: str, now: float) -> None:
        with self._random_lock:
            draw = self._random.random()
            low, high = self.report_delay
            delay = self._random.uniform(low, high)
            if draw < self.delivered_rate:
                status, code, reason, opt_out = "delivered", "", "", False
            elif draw < self.delivered_rate + self.undelivered_rate:
                code, reason = self._random.choice(UNDELIVERED_ERRORS)
                status, opt_out = "undelivered", False
            elif self._random.random() < FAILED_SHARE_OF_REST:
                code, reason = self._random.choice(FAILED_ERRORS)
                status, opt_out = "failed", False
            else:
                code, reason, opt_out = self._random.choice(REJECTED_ERRORS)
                status = "rejected"
        segments = _segment_counter()(message.text)
        base = {
            "type": "status",
            "message_id": message_id,
            "reference": message.reference,
            "to": message.to,
            "from": message.sender or self.number,
            "segments": segments,
            "currency": self.currency,
        }
        # Carriers charge for what reached the network; rejected and failed cost nothing.
        charged = status in {"delivered", "undelivered"}
        price = self.price_per_segment * segments if charged else Decimal(0)
        sent = {
            **base,
            "status": "sent",
            "error_code": "",
            "error_reason": "",
            "price": None,
            "opt_out": False,
        }
        final = {
            **base,
            "status": status,
            "error_code": code,
            "error_reason": reason,
            "price": str(price),
            "opt_out": opt_out,
        }
        with self._queue_lock:
            heapq.heappush(
                self._queue,
                _PendingReport(now + delay / 2, next(self._seq), "status", sent),
            )
            heapq.heappush(
                self._queue,
                _PendingReport(now + delay, next(self._seq), "status", final),
            )

    def pending_count(self) -> int:
        """Reports accepted messages still owe."""
        with self._queue_lock:
            return len(self._queue)

    def deliver_due(self, now: float | None = None) -> int:
        """Deliver every report due by ``now`` (default: the clock); return how many.

        A report counts as delivered once handed over, whatever the receiver made of it
        (like a webhook answering 500); ``stats()`` tells successes from failures.
        """
        now = clock() if now is None else now
        due: list[_PendingReport] = []
        with self._queue_lock:
            while self._queue and self._queue[0].due <= now:
                due.append(heapq.heappop(self._queue))
        # Deliver outside the lock: a receiver may send messages, which schedules reports.
        for report in due:
            self._deliver(report)
        return len(due)

    def flush(self) -> int:
        """Deliver every pending report now, due or not; return how many."""
        return self.deliver_due(now=math.inf)

    def simulate_inbound(
        self, from_number: str, to_number: str = "", text: str = ""
    ) -> Callback:
        """Deliver, at once, a text ``from_number`` sent to ``to_number`` (default: our
        number); returns the signed callback."""
        report = self._inbound_report(from_number, to_number, text)
        callback = self._build_callback(report)
        self._dispatch(report, callback)
        return callback

    def inbound_callback(
        self, from_number: str, to_number: str = "", text: str = ""
    ) -> Callback:
        """The signed callback a text ``from_number`` sent to ``to_number`` would
        bring, without delivering it: for the admin's "Simulate an inbound message",
        which posts it to the webhook view itself."""
        return self._build_callback(self._inbound_report(from_number, to_number, text))

    def _inbound_report(
        self, from_number: str, to_number: str, text: str
    ) -> "_PendingReport":
        words = text.split()
        payload = {
            "type": "inbound",
            "message_id": f"sim-in-{uuid.uuid4().hex}",
            "from": from_number,
            "to": to_number or self.number,
            "text": text,
            "keyword": words[0].upper() if words else "",
        }
        return _PendingReport(clock(), next(self._seq), "inbound", payload)

    def _deliver(self, report: _PendingReport) -> bool:
        return self._dispatch(report, self._build_callback(report))

    def _build_callback(self, report: _PendingReport) -> Callback:
        payload = {**report.payload, "timestamp": _iso(report.due)}
        body = json.dumps(payload, separators=(",", ":")).encode()
        # Signed when sent, not when scheduled, as a vendor does: the freshness check
        # judges the moment of delivery.
        timestamp = str(int(clock()))
        nonce = uuid.uuid4().hex
        signature = _signature(
            _signing_key(self.alias, settings.SECRET_KEY), timestamp, nonce, body
        )
        if report.kind == "status":
            url = self.status_callback_url()
        else:
            url = self.inbound_callback_url()
        return Callback(
            method="POST",
            url=url or f"/webhooks/{self.alias}/{report.kind}/",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "smscampaigns-simulator/1",
                TIMESTAMP_HEADER: timestamp,
                NONCE_HEADER: nonce,
                SIGNATURE_HEADER: f"{SIGNATURE_VERSION}={signature}",
            },
            body=body,
            content_type="application/json",
        )

    def _dispatch(self, report: _PendingReport, callback: Callback) -> bool:
        if self.mode == "http":
            ok = self._post(callback)
            if not ok:
                self._retry_later(report)
        else:
            ok = self._signal(report.kind, callback)
        self._count(**{"reports_delivered" if ok else "reports_failed": 1})
        return ok

    def _signal(self, kind: str, callback: Callback) -> bool:
        responses = callback_received.send_robust(
            sender=type(self), alias=self.alias, kind=kind, callback=callback
        )
        if not responses:
            logger.debug("No receiver for simulated %s callback: dropped", kind)
            return False
        ok = True
        for receiver, response in responses:
            if isinstance(response, Exception):
                ok = False
                logger.error(
                    "Receiver %r failed on a simulated %s callback",
                    receiver,
                    kind,
                    exc_info=response,
                )
        return ok

    def _post(self, callback: Callback) -> bool:
        try:
            response = requests.post(
                callback.url,
                data=callback.body,
                headers=dict(callback.headers),
                timeout=HTTP_TIMEOUT,
            )
        except requests.RequestException as exc:
            logger.warning("Simulated callback to %s failed: %s", callback.url, exc)
            return False
        if not response.ok:
            logger.warning(
                "Simulated callback to %s answered %s",
                callback.url,
                response.status_code,
            )
            return False
        return True

    def _retry_later(self, report: _PendingReport) -> None:
        # Like a vendor: a few attempts with growing pauses, then the receipt is lost.
        report.attempts += 1
        if report.attempts >= HTTP_DELIVERY_ATTEMPTS:
            logger.warning(
                "Simulated report for %s dropped after %d attempts",
                mask_phone(str(report.payload.get("to") or report.payload.get("from"))),
                report.attempts,
            )
            return
        retry = _PendingReport(
            max(report.due, clock()) + 5 * 2 ** (report.attempts - 1),
            next(self._seq),
            report.kind,
            report.payload,
            report.attempts,
        )
        with self._queue_lock:
            heapq.heappush(self._queue, retry)

    # --- Background reporter -------------------------------------------------------

    def start_reporter(self, interval: float = 0.2) -> None:
        """Deliver due reports every ``interval`` seconds from a daemon thread."""
        if self._reporter is not None and self._reporter.is_alive():
            return
        self._reporter_stop.clear()
        self._reporter = threading.Thread(
            target=self._run_reporter,
            args=(interval,),
            name=f"sms-simulator-{self.alias}",
            daemon=True,
        )
        self._reporter.start()

    def stop_reporter(self, timeout: float | None = 5.0) -> None:
        """Stop the reporter thread; pending reports stay queued."""
        self._reporter_stop.set()
        if self._reporter is not None:
            self._reporter.join(timeout)
            self._reporter = None

    def _run_reporter(self, interval: float) -> None:
        from django.db import connections

        try:
            while not self._reporter_stop.is_set():
                try:
                    self.deliver_due()
                except Exception:
                    logger.exception("Simulated report delivery failed")
                self._reporter_stop.wait(interval)
        finally:
            # Receivers touch the database from this thread: give its connections back.
            connections.close_all()

    # --- Counters ------------------------------------------------------------------

    def _count(self, **increments: int) -> None:
        with self._stats_lock:
            for name, value in increments.items():
                self._stats[name] += value

    def stats(self) -> dict[str, int]:
        """Counters since creation (or reset_stats()): ``requests`` (send calls),
        ``messages`` (recipients in them), ``accepted``, ``throttled`` (messages refused
        with 429), ``throttled_requests``, ``errors`` (messages hit by 5xx or timeouts),
        ``invalid`` (permanent per-message errors), ``reports_delivered``,
        ``reports_failed`` and ``reports_pending``."""
        with self._stats_lock:
            counters = dict(self._stats)
        counters["reports_pending"] = self.pending_count()
        return counters

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._stats = dict.fromkeys(self._STAT_NAMES, 0)

    # --- Callbacks -----------------------------------------------------------------

    def verify_callback(self, callback: Callback) -> None:
        timestamp = callback.header(TIMESTAMP_HEADER)
        nonce = callback.header(NONCE_HEADER)
        signature = callback.header(SIGNATURE_HEADER)
        if not (timestamp or nonce or signature):
            if settings.SMS_WEBHOOK_ALLOW_UNSIGNED:
                return
            raise CallbackAuthError("missing signature")
        if not (timestamp and nonce and signature):
            raise CallbackAuthError("incomplete signature headers")
        version, _, digest = signature.partition("=")
        if version != SIGNATURE_VERSION or not digest:
            raise CallbackAuthError("unsupported signature format")
        secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
        if not any(
            hmac.compare_digest(
                digest,
                _signature(
                    _signing_key(self.alias, secret), timestamp, nonce, callback.body
                ),
            )
            for secret in secrets
        ):
            raise CallbackAuthError("signature mismatch")
        try:
            signed_at = int(timestamp)
        except ValueError:
            raise CallbackAuthError("malformed timestamp") from None
        leeway = settings.SMS_WEBHOOK_MAX_AGE + settings.SMS_WEBHOOK_CLOCK_SKEW
        if abs(clock() - signed_at) > leeway:
            raise CallbackAuthError("stale signature")

    def parse_status_callback(self, callback: Callback) -> list[StatusEvent]:
        data = self._body(callback, "status")
        message_id = self._required(data, "message_id")
        raw_status = self._required(data, "status")
        price = data.get("price")
        if price is not None:
            try:
                price = Decimal(str(price))
            except InvalidOperation:
                raise CallbackParseError(f"price {price!r} is not a number") from None
        segments = data.get("segments")
        if segments is not None and (
            not isinstance(segments, int) or isinstance(segments, bool)
        ):
            raise CallbackParseError(f"segments {segments!r} is not an integer")
        return [
            StatusEvent(
                status=STATUSES.get(raw_status, DeliveryStatus.UNKNOWN),
                raw_status=raw_status,
                provider_message_id=message_id,
                reference=str(data.get("reference") or callback.query.get("ref", "")),
                recipient=str(data.get("to") or ""),
                error_code=str(data.get("error_code") or ""),
                error_reason=str(data.get("error_reason") or ""),
                price=price,
                currency=str(data.get("currency") or "") if price is not None else "",
                segments=segments,
                occurred_at=self._timestamp(data),
                opt_out_signal=data.get("opt_out") is True,
                payload=data,
            )
        ]

    def parse_inbound_callback(self, callback: Callback) -> list[InboundSms]:
        data = self._body(callback, "inbound")
        text = data.get("text")
        if not isinstance(text, str):
            raise CallbackParseError("inbound callback lacks 'text'")
        return [
            InboundSms(
                from_number=self._required(data, "from"),
                to_number=self._required(data, "to"),
                text=text,
                provider_message_id=str(data.get("message_id") or ""),
                received_at=self._timestamp(data),
                keyword_hint=str(data.get("keyword") or "").lower(),
                payload=data,
            )
        ]

    @staticmethod
    def _body(callback: Callback, kind: str) -> dict[str, Any]:
        data = callback.json()
        if not isinstance(data, dict):
            raise CallbackParseError("body is not a JSON object")
        if data.get("type") != kind:
            raise CallbackParseError(
                f"expected a {kind!r} callback, got type {data.get('type')!r}"
            )
        return data

    @staticmethod
    def _required(data: dict[str, Any], name: str) -> str:
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise CallbackParseError(f"callback lacks {name!r}")
        return value

    @staticmethod
    def _timestamp(data: dict[str, Any]) -> datetime | None:
        value = data.get("timestamp")
        if value in (None, ""):
            return None
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            raise CallbackParseError(f"timestamp {value!r} is not ISO 8601") from None
