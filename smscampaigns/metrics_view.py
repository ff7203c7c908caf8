"""``/metrics``: Prometheus' text format, for a scraper that holds ``METRICS_TOKEN``.

Off (404) while ``METRICS_TOKEN`` is empty; 403 without ``Authorization: Bearer
<METRICS_TOKEN>``. Counters come from smscampaigns/metrics.py; gauges are read from
the database at each scrape, each with one small query answered from an index.
"""

import hashlib
import hmac
import json
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from django.conf import settings
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from campaigns.models import Campaign, CampaignSnapshot, DispatchSession, Message
from campaigns.sending.liveness import live_sessions
from webhooks.queue import queued_callbacks_waiting

from . import metrics


@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("metrics are off: METRICS_TOKEN is not set")
    if not _authorized(request, token):
        return HttpResponse(
            "403: send Authorization: Bearer <METRICS_TOKEN>\n",
            status=403,
            content_type="text/plain",
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    # The classic text format (0.0.4), which every Prometheus version reads, as
    # prometheus-client's own server answers when nothing else is negotiated.
    return HttpResponse(
        generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4
    )


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Digests of equal length: the comparison takes the same time whatever the
    # given token's length or first wrong character.
    return hmac.compare_digest(
        hashlib.sha256(given.strip().encode()).digest(),
        hashlib.sha256(token.encode()).digest(),
    )


class DatabaseCollector:
    """Every figure, read when scraped."""

    def collect(self) -> Iterator[Metric]:
        # This process's own held-back callback durations first.
        metrics.webhook_observations_write()
        stored = metrics.stored_values()
        yield from _counters(stored)
        yield from _histograms(stored)
        tick = GaugeMetricFamily(
            metrics.SCHEDULER_TICK,
            "When the scheduler (run_worker, or Celery beat's task) last ran (Unix time).",
        )
        for value in stored.get(metrics.SCHEDULER_TICK, {}).values():
            tick.add_metric([], value)
        yield tick
        yield from _campaigns()
        yield from _queues()
        yield from _callbacks()
        yield from _dispatchers()


def _split(labels: str) -> dict[str, str]:
    return json.loads(labels) if labels else {}


def _counters(stored) -> Iterator[Metric]:
    messages = CounterMetricFamily(
        "sms_messages",
        "Messages whose send result was recorded, by provider and outcome "
        "(accepted by the vendor; failed; unknown: may have left; retried: queued again).",
        labels=["provider", "outcome"],
    )
    for labels, value in stored.get(metrics.MESSAGES, {}).items():
        pairs = _split(labels)
        messages.add_metric([pairs["provider"], pairs["outcome"]], value)
    yield messages
    throttled = CounterMetricFamily(
        "sms_provider_throttled",
        "Messages a vendor refused as over its rate (HTTP 429), by provider.",
        labels=["provider"],
    )
    for labels, value in stored.get(metrics.THROTTLED, {}).items():
        throttled.add_metric([_split(labels)["provider"]], value)
    yield throttled


def _histograms(stored) -> Iterator[Metric]:
    docs = {
        metrics.SEND_DURATION: (
            "How long one request to a vendor took (seconds), by provider.",
            ["provider"],
        ),
        metrics.WEBHOOK_DURATION: (
            "How long a provider callback took to answer (seconds), by vendor, kind "
            "(status or inbound) and outcome.",
            ["vendor", "kind", "outcome"],
        ),
    }
    for name, (doc, label_names) in docs.items():
        series = _histogram_series(stored, name, label_names)
        family = HistogramMetricFamily(name, doc, labels=label_names)
        for key, (buckets, total) in sorted(series.items()):
            family.add_metric(list(key), buckets=buckets, sum_value=total)
        yield family
        if name == metrics.WEBHOOK_DURATION:
            requests = CounterMetricFamily(
                "sms_webhook_requests",
                "Provider callbacks received, by vendor, kind and outcome.",
                labels=label_names,
            )
            for key, (buckets, _) in sorted(series.items()):
                requests.add_metric(list(key), buckets[-1][1])
            yield requests


def _histogram_series(stored, name: str, label_names: list[str]):
    """label values (in ``label_names`` order) → (cumulative buckets, sum)."""
    counts: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
    for labels, value in stored.get(name, {}).items():
        pairs = _split(labels)
        counts[tuple(pairs.get(n, "") for n in label_names)][pairs["le"]] = value
    sums = {}
    for labels, value in stored.get(name + "_sum", {}).items():
        pairs = _split(labels)
        sums[tuple(pairs.get(n, "") for n in label_names)] = value
    series = {}
    bounds = [repr(float(b)) for b in metrics.HISTOGRAMS[name]] + ["+Inf"]
    for key, per_bound in counts.items():
        running, buckets = 0.0, []
        for bound in bounds:
            running += per_bound.get(bound, 0.0)
            buckets.append((bound, running))
        series[key] = (buckets, sums.get(key, 0.0))
    return series


def _campaigns() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "sms_campaigns", "Campaigns by status.", labels=["status"]
    )
    counts = dict.fromkeys(Campaign.Status.values, 0)
    counts.update(
        Campaign.objects.order_by().values_list("status").annotate(n=Count("pk"))
    )
    for status, n in counts.items():
        family.add_metric([status], n)
    yield family


EXACT_QUEUE = 100_000
"""Queues are counted exactly up to this many messages (a few tens of milliseconds at
most); a longer one shows its campaign's latest progress snapshot, which the workers
take every 10-15 s while it sends, so a scrape never counts a million rows."""


def _queues() -> Iterator[Metric]:
    """Queued messages of every sending or paused campaign, and of keyword replies and
    test sends (campaign "direct"), with the age of the oldest: the first in id order
    (the one claims take next), read through the (campaign, status, id) index."""
    depth = GaugeMetricFamily(
        "sms_queue_depth",
        "Messages queued (waiting for their turn, window or retry), per campaign; "
        'campaign "direct" is keyword replies and test sends.',
        labels=["campaign", "status"],
    )
    oldest = GaugeMetricFamily(
        "sms_queue_oldest_age_seconds",
        "Seconds since the first queued message of the campaign was queued.",
        labels=["campaign", "status"],
    )
    now = timezone.now()
    active = Campaign.objects.filter(
        status__in=[Campaign.Status.SENDING, Campaign.Status.PAUSED]
    ).order_by("pk")
    rows = []
    for pk, status in active.values_list("pk", "status"):
        queued = Message.objects.filter(campaign_id=pk, status=Message.Status.QUEUED)
        rows.append((str(pk), status, _depth(pk, queued), _first_queued(queued)))
    direct = Message.objects.filter(
        kind__in=[Message.Kind.REPLY, Message.Kind.TEST], status=Message.Status.QUEUED
    )
    rows.append(("direct", "", direct.count(), _first_queued(direct)))
    for campaign, status, n, first in rows:
        depth.add_metric([campaign, status], n)
        age = max((now - first).total_seconds(), 0.0) if first else 0.0
        oldest.add_metric([campaign, status], age)
    yield depth
    yield oldest


def _callbacks() -> Iterator[Metric]:
    """Callbacks answered and waiting for the worker to apply them (a growing number,
    or an old first one, means no worker is applying them: STOPs wait too)."""
    waiting, oldest = queued_callbacks_waiting()
    depth = GaugeMetricFamily(
        "sms_callbacks_queued",
        "Vendor callbacks (receipts, inbound texts) answered and waiting to be applied.",
    )
    depth.add_metric([], waiting)
    yield depth
    age = GaugeMetricFamily(
        "sms_callbacks_oldest_age_seconds",
        "Seconds the oldest waiting callback has waited to be applied.",
    )
    age.add_metric(
        [], max((timezone.now() - oldest).total_seconds(), 0.0) if oldest else 0.0
    )
    yield age


def _depth(campaign_id: int, queued) -> int:
    counted = queued.order_by()[: EXACT_QUEUE + 1].count()
    if counted <= EXACT_QUEUE:
        return counted
    counts = (
        CampaignSnapshot.objects.filter(campaign_id=campaign_id)
        .order_by("-taken_at")
        .values_list("counts", flat=True)
        .first()
    )
    return max(counted, (counts or {}).get(Message.Status.QUEUED, 0))


def _first_queued(queued):
    return queued.order_by("pk").values_list("queued_at", flat=True).first()


def _dispatchers() -> Iterator[Metric]:
    sessions = list(DispatchSession.objects.order_by("pk"))
    alive = live_sessions({s.pk for s in sessions})
    count = GaugeMetricFamily(
        "sms_dispatchers_alive",
        "Dispatchers (send_campaign, a run_worker slice, a Celery task) sending now.",
    )
    count.add_metric([], len(alive))
    yield count
    beats = GaugeMetricFamily(
        "sms_dispatcher_last_beat_timestamp_seconds",
        "When each live dispatcher last proved it was alive (Unix time).",
        labels=["dispatcher", "host", "pid"],
    )
    for session in sessions:
        if session.pk in alive:
            beats.add_metric(
                [str(session.pk), session.host, str(session.pid)],
                session.beat_at.timestamp(),
            )
    yield beats
