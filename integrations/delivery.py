"""Delivering the outbox to integrators' endpoints.

- **One in flight per endpoint, in order.** A worker first takes an endpoint's lease
  (a conditional UPDATE, renewed while it works); only the lease holder posts to it,
  one event after the other in the order they were recorded.
- **Retries.** A non-2xx answer, a redirect, a timeout or a refused connection stops
  the endpoint's queue: the same (oldest) event is tried again after 10 s, 20 s,
  40 s… doubling up to an hour (WEBHOOK_BACKOFF_BASE, WEBHOOK_BACKOFF_MAX), and the
  ones behind it wait, so order holds. An event is given up (status "failed",
  re-sendable from the admin) only when an attempt fails more than
  WEBHOOK_RETRY_HOURS (24) after it happened.
- **At least once.** A success is recorded after the POST returns, a few at a time:
  a worker that dies in between sends those again. Receivers dedupe by event id.

``run_worker`` runs :class:`WebhookSender` on a thread of its own; with Celery, beat
runs ``integrations.tasks.deliver_webhooks`` every few seconds.
"""

import contextlib
import ipaddress
import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import urllib3

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from .models import Delivery, Event, WebhookEndpoint
from .services import delivery_log_prune
from .signing import SIGNATURE_HEADER, signature_header

logger = logging.getLogger(__name__)

#: Waiting deliveries read at a time for one endpoint.
BATCH = 200
#: Successes recorded together (a crash re-sends at most this many).
FLUSH_EVERY = 50
#: Seconds an endpoint's lease lasts; renewed every third of it while working.
LEASE_SECONDS = 60.0
#: Seconds run_worker's sender waits before looking again when nothing was due.
POLL_SECONDS = 0.5
#: Seconds between two prunes of the delivery log by run_worker's sender.
PRUNE_INTERVAL = 3600.0
USER_AGENT = "smscampaigns-webhooks/1"


def backoff_delay(failures: int) -> timedelta:
    """How long an endpoint rests after its ``failures``-th failure in a row."""
    base = settings.WEBHOOK_BACKOFF_BASE
    return timedelta(
        seconds=min(base * 2 ** max(failures - 1, 0), settings.WEBHOOK_BACKOFF_MAX)
    )


# --- HTTP -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    error: str = ""


class Poster:
    """POSTs signed events, reusing connections (one pool per host)."""

    def __init__(self) -> None:
        self._http = urllib3.PoolManager(num_pools=100, maxsize=4, retries=False)
        self._allowed: dict[str, tuple[bool, float]] = {}

    def post(self, endpoint: WebhookEndpoint, event: Event) -> Outcome:
        refused = self._refused(endpoint.url)
        if refused:
            return Outcome(False, error=refused)
        body = event.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature_header(endpoint.secret, body),
            "Smscampaigns-Event-Id": event.public_id,
            "Smscampaigns-Event-Type": event.type,
        }
        timeout = settings.WEBHOOK_TIMEOUT
        try:
            response = self._http.request(
                "POST",
                endpoint.url,
                body=body,
                headers=headers,
                redirect=False,
                preload_content=False,
                timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            )
            # What the receiver says does not matter, only that it took the event.
            # A short answer read to its end keeps the connection for the next
            # delivery; a long or unsized one is not waited for.
            response.read(65536, decode_content=False)
            if response.length_remaining == 0:
                response.release_conn()
            else:
                response.close()
        except urllib3.exceptions.HTTPError as exc:
            return Outcome(False, error=_describe(exc))
        if 200 <= response.status < 300:
            return Outcome(True, response.status)
        return Outcome(False, response.status, f"HTTP {response.status}")

    def _refused(self, url: str) -> str:
        """Why ``url`` may not be posted to (a private address), or "".

        Checked when the endpoint is saved too; here again because a name can be
        pointed at another address later. Cached for a minute per host.
        """
        if settings.WEBHOOK_ALLOW_LOCAL_URLS:
            return ""
        host = urlsplit(url).hostname or ""
        allowed, until = self._allowed.get(host, (True, 0.0))
        if time.monotonic() >= until:
            try:
                infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
                allowed = all(
                    ipaddress.ip_address(info[4][0].split("%")[0]).is_global
                    for info in infos
                )
            except (OSError, ValueError):
                allowed = True  # the POST reports the failure to resolve
            self._allowed[host] = (allowed, time.monotonic() + 60)
        return "" if allowed else f"Refused: {host} resolves to a private address."


def _describe(exc: Exception) -> str:
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "Timed out."
    reason = getattr(exc, "reason", None) or exc
    return f"{type(reason).__name__}: {reason}"[:255]


# --- Leases ---------------------------------------------------------------------------


def new_owner() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def endpoints_due(*, now=None) -> list[int]:
    """Active endpoints with something waiting, not resting after a failure and not
    leased by a live worker, oldest first."""
    now = now or timezone.now()
    waiting = Delivery.objects.filter(
        endpoint=OuterRef("pk"), status=Delivery.Status.PENDING
    )
    return list(
        WebhookEndpoint.objects.filter(is_active=True)
        .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .filter(Exists(waiting))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def endpoint_lease(*, endpoint_id: int, owner: str) -> bool:
    """Take the endpoint's lease unless a live worker holds it."""
    now = timezone.now()
    return bool(
        WebhookEndpoint.objects.filter(pk=endpoint_id)
        .filter(
            Q(leased_until__isnull=True)
            | Q(leased_until__lt=now)
            | Q(lease_owner=owner)
        )
        .update(leased_until=now + timedelta(seconds=LEASE_SECONDS), lease_owner=owner)
    )


def _renew(endpoint_id: int, owner: str) -> bool:
    return bool(
        WebhookEndpoint.objects.filter(pk=endpoint_id, lease_owner=owner).update(
            leased_until=timezone.now() + timedelta(seconds=LEASE_SECONDS)
        )
    )


def endpoint_release(*, endpoint_id: int, owner: str) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint_id, lease_owner=owner).update(
        leased_until=None, lease_owner=""
    )


# --- One endpoint ----------------------------------------------------------------------


def endpoint_deliver(
    *,
    endpoint_id: int,
    owner: str,
    poster: Poster,
    deadline: float,
    stop: threading.Event | None = None,
) -> int:
    """Post the endpoint's waiting events in order until none is left, one fails,
    the deadline passes or ``stop`` is set. The caller holds the lease; it is
    released here. Returns how many were delivered."""
    delivered = 0
    renewed = time.monotonic()
    try:
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            endpoint = WebhookEndpoint.objects.filter(
                pk=endpoint_id, lease_owner=owner, is_active=True
            ).first()
            if endpoint is None:
                break  # deactivated, deleted, or the lease was lost
            if endpoint.retry_at and endpoint.retry_at > timezone.now():
                break
            batch = list(
                Delivery.objects.filter(
                    endpoint_id=endpoint_id, status=Delivery.Status.PENDING
                )
                .select_related("event")
                .order_by("pk")[:BATCH]
            )
            if not batch:
                break
            done: list[tuple[int, int]] = []
            failed = False
            for delivery in batch:
                if time.monotonic() >= deadline or (stop and stop.is_set()):
                    break
                if time.monotonic() - renewed > LEASE_SECONDS / 3:
                    delivered += _record_successes(endpoint, done)
                    if not _renew(endpoint_id, owner):
                        return delivered
                    renewed = time.monotonic()
                outcome = poster.post(endpoint, delivery.event)
                if not outcome.ok:
                    delivered += _record_successes(endpoint, done)
                    _record_failure(endpoint, delivery, outcome)
                    failed = True
                    break
                done.append((delivery.pk, outcome.status))
                if len(done) >= FLUSH_EVERY:
                    delivered += _record_successes(endpoint, done)
            delivered += _record_successes(endpoint, done)
            if failed:
                break
    finally:
        endpoint_release(endpoint_id=endpoint_id, owner=owner)
    return delivered


def _record_successes(endpoint: WebhookEndpoint, done: list[tuple[int, int]]) -> int:
    """Mark ``done`` delivered (and the endpoint healthy); empties ``done``."""
    if not done:
        return 0
    now = timezone.now()
    by_status: dict[int, list[int]] = defaultdict(list)
    for pk, status in done:
        by_status[status].append(pk)
    with transaction.atomic():
        for status, pks in by_status.items():
            Delivery.objects.filter(pk__in=pks).update(
                status=Delivery.Status.DELIVERED,
                delivered_at=now,
                last_attempt_at=now,
                attempts=F("attempts") + 1,
                response_status=status,
                error="",
            )
        if endpoint.consecutive_failures or endpoint.failing_since:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
                consecutive_failures=0, failing_since=None, retry_at=None
            )
            logger.info("webhook endpoint %s: delivering again", endpoint.pk)
            endpoint.consecutive_failures, endpoint.failing_since = 0, None
            endpoint.retry_at = None
    count = len(done)
    done.clear()
    return count


def _record_failure(
    endpoint: WebhookEndpoint, delivery: Delivery, outcome: Outcome
) -> None:
    """Rest the endpoint (backoff); give up events past the retry window."""
    now = timezone.now()
    failures = endpoint.consecutive_failures + 1
    retry_at = now + backoff_delay(failures)
    expired_before = now - timedelta(hours=settings.WEBHOOK_RETRY_HOURS)
    gave_up = delivery.created_at < expired_before
    error = outcome.error or "Failed."
    if gave_up:
        error = f"{error} Gave up after {settings.WEBHOOK_RETRY_HOURS:g} h."
    with transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.Status.FAILED if gave_up else Delivery.Status.PENDING,
            attempts=F("attempts") + 1,
            last_attempt_at=now,
            response_status=outcome.status,
            error=error[:255],
        )
        # Events behind it that have waited past the window go with it, so a long
        # outage does not then cost one failed attempt per stale event.
        expired = Delivery.objects.filter(
            endpoint_id=endpoint.pk,
            status=Delivery.Status.PENDING,
            created_at__lt=expired_before,
        ).update(
            status=Delivery.Status.FAILED,
            error=f"Gave up after {settings.WEBHOOK_RETRY_HOURS:g} h: the endpoint "
            "kept failing.",
        )
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            consecutive_failures=failures,
            failing_since=endpoint.failing_since or now,
            retry_at=retry_at,
        )
    logger.warning(
        "webhook endpoint %s: %s (failure %d in a row; next try at %s%s)",
        endpoint.pk,
        error,
        failures,
        retry_at.isoformat(timespec="seconds"),
        f"; gave up {expired + gave_up} event(s)" if expired or gave_up else "",
    )


# --- Runners ---------------------------------------------------------------------------


def deliver_due(
    *,
    deadline: float,
    stop: threading.Event | None = None,
    concurrency: int | None = None,
    owner: str | None = None,
    poster: Poster | None = None,
) -> int:
    """Deliver what is due until ``deadline`` or nothing is left: up to
    ``concurrency`` endpoints at once, each on a thread of its own (0: one after
    the other on this thread, for tests). Returns how many were delivered."""
    owner = owner or new_owner()
    poster = poster or Poster()
    concurrency = settings.WEBHOOK_CONCURRENCY if concurrency is None else concurrency
    total = 0
    pool = ThreadPoolExecutor(concurrency, "webhooks") if concurrency else None
    try:
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            leased = [
                pk
                for pk in endpoints_due()[: max(concurrency, 1)]
                if endpoint_lease(endpoint_id=pk, owner=owner)
            ]
            if not leased:
                break
            work = {
                "owner": owner,
                "poster": poster,
                "deadline": deadline,
                "stop": stop,
            }
            if pool is None:
                sent = sum(endpoint_deliver(endpoint_id=pk, **work) for pk in leased)
            else:
                futures = [
                    pool.submit(_on_own_connection, endpoint_id=pk, **work)
                    for pk in leased
                ]
                sent = sum(future.result() for future in futures)
            total += sent
            if not sent:
                break  # every endpoint failed (and rests) or had nothing after all
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return total


def _on_own_connection(**work) -> int:
    """endpoint_deliver on a pool thread, which closes its own connection."""
    try:
        return endpoint_deliver(**work)
    except Exception:
        logger.exception("webhook endpoint %s: delivery failed", work["endpoint_id"])
        return 0
    finally:
        with contextlib.suppress(DatabaseError):
            connection.close()


class WebhookSender:
    """run_worker's deliverer: a thread that delivers due events and looks again
    every POLL_SECONDS when there were none."""

    def __init__(self, *, stop: threading.Event) -> None:
        self.stop = stop
        self.owner = new_owner()
        self.poster = Poster()
        self.delivered = 0
        self._pruned_at = 0.0
        self._thread = threading.Thread(target=self._run, name="webhook-sender")

    def start(self) -> "WebhookSender":
        self._thread.start()
        return self

    def join(self) -> None:
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        failures = 0
        try:
            while not self.stop.is_set():
                close_old_connections()
                try:
                    sent = deliver_due(
                        deadline=time.monotonic() + 10,
                        stop=self.stop,
                        owner=self.owner,
                        poster=self.poster,
                    )
                    failures = 0
                except Exception:
                    logger.exception("webhook sender: round failed")
                    failures += 1
                    with contextlib.suppress(DatabaseError):
                        connection.close()
                    self.stop.wait(min(2.0**failures, 30.0))
                    continue
                self.delivered += sent
                if time.monotonic() - self._pruned_at >= PRUNE_INTERVAL:
                    self._pruned_at = time.monotonic()
                    delivery_log_prune()
                if not sent:
                    self.stop.wait(POLL_SECONDS)
        finally:
            with contextlib.suppress(DatabaseError):
                connection.close()
