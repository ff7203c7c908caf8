"""How a campaign is doing: counts by status, delivery rate, cost and opt-outs.

Every figure comes from a few aggregate queries, whatever the campaign's size.

Snapshots keep those figures so pages do not count a million messages on every view:
``campaign_snapshot_take`` records one, ``campaign_progress`` returns the latest and
takes a new one only when it is stale and the campaign can still change. The
scheduler's tick and the dispatcher take them in the background while a campaign
sends, so a page view usually only reads. Nothing is counted before a campaign
started sending (a snapshot of zeros would pin the chart's start to the day someone
looked at the scheduled campaign), and only one process counts a campaign at a time
(``campaign_snapshot_take_once``): the others read the latest snapshot meanwhile. The series of snapshots is the chart of the
campaign's delivery over time; ``campaign_snapshots_prune`` keeps it to a few hundred
points (every snapshot of the last hour, then one per 10 minutes for a day, then one
per hour, and always the first).
"""

from dataclasses import dataclass, field
from datetime import UTC, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from contacts.models import ConsentEvent, Source

from .models import Campaign, CampaignSnapshot, LinkClick, Message, variant_label

#: How long after a message was submitted an opt-out from its recipient counts
#: against the campaign.
OPT_OUT_ATTRIBUTION = timedelta(days=7)


@dataclass(frozen=True)
class CampaignStats:
    status: str
    """The campaign's status, so a client polling the stats needs no second call."""
    counts: dict[str, int]
    """Messages per status; every status is present."""
    delivery_rate: float | None
    """Delivered over final outcomes, None before any outcome is known."""
    opt_outs: int
    """Recipients who opted out within :data:`OPT_OUT_ATTRIBUTION` of their message."""
    replied_stop: int
    """Those of ``opt_outs`` who replied STOP (the others: a vendor's signal, the
    admin, the API)."""
    cost: Decimal
    currency: str
    cost_by_currency: dict[str, Decimal]
    skipped_opted_out: int
    """Messages not sent because the recipient had opted out by then."""
    skipped_cancelled: int = 0
    """Messages not sent because the campaign was cancelled."""
    unique_clicks: int = 0
    """Recipients who clicked a tracked link (link previews left out)."""
    clicks: int = 0
    """Clicks on tracked links, a recipient's repeated clicks included."""
    skipped_frequency_cap: int = 0
    """Messages not sent because the recipient had reached the frequency cap."""
    variants: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per text variant ("A", "B"…): messages, delivered, unique_clicks, clicks and
    opt_outs; empty for a campaign with one text."""

    @property
    def click_rate(self) -> float | None:
        """Unique clicks over delivered messages; None before any delivery."""
        return click_rate(self.unique_clicks, self.counts[Message.Status.DELIVERED])


def click_rate(unique_clicks: int, delivered: int) -> float | None:
    """The click-through rate: unique clicks over delivered messages (a click on a
    message whose receipt has not come yet still counts, so it may pass 100 %
    while receipts are late)."""
    return unique_clicks / delivered if delivered else None


def campaign_stats(*, campaign: Campaign) -> CampaignStats:
    messages = Message.objects.filter(campaign=campaign).order_by()
    counts = dict.fromkeys(Message.Status.values, 0)
    skipped = cancelled = capped = 0
    cost_by_currency: dict[str, Decimal] = {}
    # Counts and cost in one pass over the campaign's messages (a million rows take a
    # scan each): grouped by status and currency, then added up here.
    rows = messages.values("status", "currency", "variant").annotate(
        n=Count("pk"),
        opted_out=Count("pk", filter=Q(error_code=Message.SkipReason.OPTED_OUT)),
        capped=Count("pk", filter=Q(error_code=Message.SkipReason.FREQUENCY_CAP)),
        # Expired unsent (send-by passed) never reached a carrier either.
        cancelled=Count(
            "pk",
            filter=Q(
                error_code__in=[
                    Message.SkipReason.CANCELLED,
                    Message.SkipReason.EXPIRED,
                ]
            ),
        ),
        priced=Count("price"),
        total=Sum("price"),
        # Clicks come in the same pass: no second scan of a million messages.
        clicked=Count("pk", filter=Q(first_clicked_at__isnull=False)),
        clicks=Sum("clicks"),
    )
    unique_clicks = clicks = 0
    variants: dict[str, dict[str, int]] = {}
    for row in rows:
        counts[row["status"]] += row["n"]
        unique_clicks += row["clicked"]
        clicks += row["clicks"] or 0
        if row["variant"] is not None:
            figures = variants.setdefault(
                variant_label(row["variant"]), dict.fromkeys(VARIANT_FIGURES, 0)
            )
            figures["messages"] += row["n"]
            if row["status"] == Message.Status.DELIVERED:
                figures["delivered"] += row["n"]
            figures["unique_clicks"] += row["clicked"]
            figures["clicks"] += row["clicks"] or 0
        if row["status"] == Message.Status.FAILED:
            skipped += row["opted_out"]
            cancelled += row["cancelled"]
            capped += row["capped"]
        if row["priced"]:
            currency = row["currency"]
            cost_by_currency[currency] = (
                cost_by_currency.get(currency, Decimal(0)) + row["total"]
            )
    # Messages skipped for an opt-out, a cancel or the frequency cap are "failed"
    # but never reached a carrier, so they say nothing about deliverability.
    outcomes = (
        sum(counts[status] for status in Message.FINAL) - skipped - cancelled - capped
    )
    delivered = counts[Message.Status.DELIVERED]
    delivery_rate = delivered / outcomes if outcomes > 0 else None

    cost_by_currency = dict(
        sorted(cost_by_currency.items(), key=lambda item: item[1], reverse=True)
    )
    if cost_by_currency:
        currency, cost = next(iter(cost_by_currency.items()))
    else:
        currency, cost = settings.SMS_PRICE_CURRENCY, Decimal(0)

    opt_outs, replied_stop = campaign_opt_out_counts(campaign=campaign)
    if variants:
        # Opted out after the message, in any way, as opt_outs counts them.
        opt_outs_by_variant = (
            Message.objects.filter(opted_out_after_filter(), campaign=campaign)
            .order_by()
            .values_list("variant")
            .annotate(n=Count("pk"))
        )
        for number, n in opt_outs_by_variant:
            if number is not None and variant_label(number) in variants:
                variants[variant_label(number)]["opt_outs"] = n
        variants = dict(sorted(variants.items()))
    return CampaignStats(
        status=campaign.status,
        counts=counts,
        delivery_rate=delivery_rate,
        opt_outs=opt_outs,
        replied_stop=replied_stop,
        cost=cost,
        currency=currency,
        cost_by_currency=cost_by_currency,
        skipped_opted_out=skipped,
        skipped_cancelled=cancelled,
        skipped_frequency_cap=capped,
        unique_clicks=unique_clicks,
        clicks=clicks,
        variants=variants,
    )


#: What campaign_stats counts per text variant.
VARIANT_FIGURES = ("messages", "delivered", "unique_clicks", "clicks", "opt_outs")


def variant_figures(*, campaign: Campaign, stats: dict[str, dict]) -> list[dict]:
    """``stats`` (CampaignStats.variants, or a snapshot's) as rows, A first, with
    each variant's set share and click-through rate."""
    if not stats:
        return []
    shares = {
        variant_label(number): share for number, share in campaign.variant_shares()
    }
    return [
        {
            "variant": label,
            "share": shares.get(label),
            **figures,
            "click_rate": click_rate(figures["unique_clicks"], figures["delivered"]),
        }
        for label, figures in sorted(stats.items())
    ]


def campaign_clicks_per_hour(*, campaign: Campaign) -> list[dict]:
    """The campaign's clicks per hour (UTC), oldest first: {"hour", "clicks",
    "recipients"}; link previews left out. One GROUP BY through its links' index."""
    rows = (
        LinkClick.objects.filter(link__campaign=campaign, is_bot=False)
        .annotate(hour=TruncHour("clicked_at", tzinfo=UTC))
        .order_by()
        .values("hour")
        .annotate(clicks=Count("pk"), recipients=Count("message", distinct=True))
        .order_by("hour")
    )
    return list(rows)


def campaign_clicked_since(*, campaign: Campaign, moment) -> bool:
    """Whether someone clicked one of the campaign's links after ``moment``: an index
    range per link (the campaign has a few)."""
    return LinkClick.objects.filter(
        link__campaign=campaign, clicked_at__gt=moment, is_bot=False
    ).exists()


def _opted_out_after(**filters) -> Exists:
    return Exists(
        ConsentEvent.objects.filter(
            kind=ConsentEvent.Kind.OPT_OUT,
            phone=OuterRef("to"),
            created_at__gte=OuterRef("submitted_at"),
            created_at__lt=OuterRef("submitted_at") + OPT_OUT_ATTRIBUTION,
            **filters,
        )
    )


def opted_out_after_filter() -> Q:
    """Messages whose recipient opted out, in any way, after the message was
    submitted, within :data:`OPT_OUT_ATTRIBUTION`: an EXISTS per message answered
    from the (phone, created_at) index of consent events."""
    return Q(submitted_at__isnull=False) & Q(_opted_out_after())


def replied_stop_filter() -> Q:
    """Those of :func:`opted_out_after_filter` who texted a STOP keyword (not a
    vendor's opt-out signal, nor an opt-out recorded in the admin or the API). The
    campaign page's "Replied STOP" count and its link to the messages both use it."""
    return Q(submitted_at__isnull=False) & Q(_opted_out_after(source=Source.KEYWORD))


def other_opt_out_filter() -> Q:
    """Opted out after the message, but not by a STOP reply: a vendor's signal, the
    admin or the API."""
    return opted_out_after_filter() & ~Q(_opted_out_after(source=Source.KEYWORD))


def campaign_opt_out_counts(*, campaign: Campaign) -> tuple[int, int]:
    """(opted out, replied STOP): recipients of ``campaign`` who opted out after
    their message was submitted, within :data:`OPT_OUT_ATTRIBUTION`, and those of
    them who texted STOP. One query."""
    # A campaign texts each number once, so messages counted are recipients counted.
    counts = Message.objects.filter(
        opted_out_after_filter(), campaign=campaign
    ).aggregate(
        opted_out=Count("pk"),
        replied_stop=Count("pk", filter=Q(_opted_out_after(source=Source.KEYWORD))),
    )
    return counts["opted_out"], counts["replied_stop"]


# --- Snapshots ------------------------------------------------------------------------

TOP_FAILURE_REASONS = 10

#: A page shows a snapshot younger than this as it is.
SNAPSHOT_MAX_AGE = timedelta(seconds=30)

#: How long one process may hold a campaign's counting lock; it is released as soon
#: as the count is done, this only bounds a crash (a million messages count in well
#: under a second).
SNAPSHOT_LOCK_SECONDS = 30

#: How long after a campaign ended its figures may still move: carriers retry for up
#: to 72 hours, and each late receipt changes a count.
RECEIPTS_GRACE = timedelta(days=3)

#: Snapshot resolution kept by campaign_snapshots_prune: every snapshot this recent...
PRUNE_KEEP_ALL = timedelta(hours=1)
#: ...then one per 10 minutes up to this age, then one per hour.
PRUNE_FINE_UNTIL = timedelta(days=1)
_PRUNE_FINE_BUCKET = 600
_PRUNE_COARSE_BUCKET = 3600

_LIVE_STATUSES = (
    Campaign.Status.SCHEDULED,
    Campaign.Status.SENDING,
    Campaign.Status.PAUSED,
)


def campaign_failure_reasons(
    *, campaign: Campaign, skipped: dict[str, int]
) -> list[dict]:
    """The most frequent (error code, reason) pairs among the campaign's failed
    messages, with counts, most frequent first. Messages skipped for an opt-out or a
    cancel (``skipped``: counts by code, from campaign_stats) are listed too, always,
    under a plain label and with ``skipped`` set.

    One GROUP BY over the failed part of the (campaign, status) index.
    """
    top = (
        Message.objects.filter(campaign=campaign, status__in=Message.FAILURES)
        .exclude(status=Message.Status.FAILED, error_code__in=Message.SkipReason.values)
        .order_by()
        .values("error_code", "error_reason")
        .annotate(count=Count("pk"))
        .order_by("-count", "error_code", "error_reason")[:TOP_FAILURE_REASONS]
    )
    reasons = [
        {
            "code": row["error_code"],
            "reason": row["error_reason"],
            "count": row["count"],
            "skipped": False,
        }
        for row in top
    ]
    reasons += [
        {"code": code, "reason": label, "count": skipped[code], "skipped": True}
        for code, label in Message.SkipReason.choices
        if skipped.get(code)
    ]
    reasons.sort(key=lambda reason: (-reason["count"], reason["code"]))
    return reasons


def campaign_snapshot_take(*, campaign: Campaign) -> CampaignSnapshot:
    """Count the campaign's messages now and keep the figures as a snapshot."""
    # Stamped before counting: the figures are at least as recent as this.
    taken_at = timezone.now()
    stats = campaign_stats(campaign=campaign)
    snapshot = CampaignSnapshot.objects.create(
        campaign=campaign,
        taken_at=taken_at,
        counts=stats.counts,
        delivery_rate=stats.delivery_rate,
        opt_outs=stats.opt_outs,
        replied_stop=stats.replied_stop,
        skipped_opted_out=stats.skipped_opted_out,
        cost=stats.cost,
        currency=stats.currency,
        # Strings: JSON has no decimals, and floats would round the amounts.
        cost_by_currency={
            code: str(amount) for code, amount in stats.cost_by_currency.items()
        },
        failure_reasons=campaign_failure_reasons(
            campaign=campaign,
            skipped={
                Message.SkipReason.OPTED_OUT: stats.skipped_opted_out,
                Message.SkipReason.CANCELLED: stats.skipped_cancelled,
                Message.SkipReason.FREQUENCY_CAP: stats.skipped_frequency_cap,
            },
        ),
        unique_clicks=stats.unique_clicks,
        clicks=stats.clicks,
        variants=stats.variants,
    )
    campaign_snapshots_prune(campaign_id=campaign.pk, now=taken_at)
    return snapshot


def campaign_latest_snapshot(*, campaign_id: int) -> CampaignSnapshot | None:
    return (
        CampaignSnapshot.objects.filter(campaign_id=campaign_id)
        .order_by("-taken_at", "-id")
        .first()
    )


def campaign_can_change(
    *, campaign: Campaign, snapshot: CampaignSnapshot | None
) -> bool:
    """Whether the campaign's figures may differ from ``snapshot``'s by now.

    Scheduled, sending and paused campaigns can move. A finished one still moves while
    messages it sent wait for receipts, for up to :data:`RECEIPTS_GRACE` after it ended,
    and whenever someone clicked one of its links since the snapshot (links work for
    ever); a snapshot taken before it ended is out of date in any case. Drafts have
    nothing to count.
    """
    if campaign.status == Campaign.Status.DRAFT:
        return False
    if snapshot is None or campaign.status in _LIVE_STATUSES:
        return True
    ended = campaign.completed_at or campaign.updated_at
    if snapshot.taken_at < ended:
        return True
    if campaign_clicked_since(campaign=campaign, moment=snapshot.taken_at):
        return True
    if timezone.now() - ended > RECEIPTS_GRACE:
        return False
    return snapshot_in_flight(snapshot) > 0


def snapshot_in_flight(snapshot: CampaignSnapshot) -> int:
    return sum(snapshot.counts.get(status, 0) for status in Message.UNSETTLED)


def campaign_snapshot_take_once(*, campaign: Campaign) -> CampaignSnapshot | None:
    """Take a snapshot unless another request or worker is counting this campaign
    right now; then return None (the caller shows the latest snapshot).

    Without it, every open tab and poll that finds the latest snapshot stale counts
    the campaign's million messages at the same moment. The lock is a cache entry
    (``cache.add`` is atomic), so it spans processes when the cache is shared
    (Redis, Memcached, database) and one process with the default local memory.
    """
    key = f"campaigns:snapshot-lock:{campaign.pk}"
    if not cache.add(key, True, timeout=SNAPSHOT_LOCK_SECONDS):
        return None
    try:
        return campaign_snapshot_take(campaign=campaign)
    finally:
        cache.delete(key)


def campaign_progress(
    *,
    campaign: Campaign,
    max_age: timedelta = SNAPSHOT_MAX_AGE,
    may_count: bool = True,
) -> CampaignSnapshot | None:
    """The campaign's latest figures, at most ``max_age`` old while they can change.

    Usually one indexed read: a new snapshot is taken only when none exists or the
    latest is older than ``max_age`` (or than the start of sending) and the campaign
    can still change, and nobody else is counting it. With ``may_count`` off (a user
    who may only look) it only reads. None before the campaign started sending.
    """
    if campaign.started_at is None:
        return None
    latest = campaign_latest_snapshot(campaign_id=campaign.pk)
    if not may_count:
        # Zeros counted before the start (by an older version) are no figures.
        return latest if latest and latest.taken_at >= campaign.started_at else None
    if latest is not None and (
        (
            timezone.now() - latest.taken_at < max_age
            and latest.taken_at >= campaign.started_at
        )
        or not campaign_can_change(campaign=campaign, snapshot=latest)
    ):
        return latest
    return campaign_snapshot_take_once(campaign=campaign) or latest


def campaign_snapshot_refresh(
    *, campaign: Campaign, min_interval: timedelta
) -> CampaignSnapshot | None:
    """Take a snapshot unless one was taken within ``min_interval`` (by anyone: the
    scheduler, a dispatcher or a page view), someone is counting it right now, or the
    campaign has not started sending. Returns the new snapshot, if any."""
    if campaign.started_at is None:
        return None
    last = (
        CampaignSnapshot.objects.filter(campaign_id=campaign.pk)
        .order_by("-taken_at")
        .values_list("taken_at", flat=True)
        .first()
    )
    if last is not None and timezone.now() - last < min_interval:
        return None
    return campaign_snapshot_take_once(campaign=campaign)


def campaign_snapshots_refresh_active(*, min_interval: timedelta) -> int:
    """Snapshot every campaign whose figures can still move (sending, paused, or
    finished within :data:`RECEIPTS_GRACE` with receipts outstanding) and whose
    latest snapshot is older than ``min_interval``. Returns how many were taken.

    Finished campaigns matter: receipts keep arriving after the last message went
    out, and the changelist only ever reads snapshots. Campaigns that never started
    sending (paused or cancelled while scheduled) have nothing to count.
    """
    recent = timezone.now() - RECEIPTS_GRACE
    candidates = (
        Campaign.objects.filter(started_at__isnull=False)
        .filter(
            Q(status__in=[Campaign.Status.SENDING, Campaign.Status.PAUSED])
            | Q(
                status__in=[
                    Campaign.Status.COMPLETED,
                    Campaign.Status.CANCELLED,
                    Campaign.Status.FAILED,
                ],
                completed_at__gte=recent,
            )
        )
        .order_by("pk")
    )
    taken = 0
    for campaign in candidates:
        if campaign.status not in _LIVE_STATUSES and not campaign_can_change(
            campaign=campaign,
            snapshot=campaign_latest_snapshot(campaign_id=campaign.pk),
        ):
            continue
        if campaign_snapshot_refresh(campaign=campaign, min_interval=min_interval):
            taken += 1
    return taken


def campaign_snapshots_prune(*, campaign_id: int, now=None) -> int:
    """Thin out a campaign's older snapshots so its chart stays a few hundred points.

    Keeps every snapshot of the last :data:`PRUNE_KEEP_ALL`, then the last one of each
    10-minute slot up to :data:`PRUNE_FINE_UNTIL`, then the last one of each hour, and
    always the first snapshot (where the chart starts). Returns how many were deleted.
    """
    now = now or timezone.now()
    older = list(
        CampaignSnapshot.objects.filter(
            campaign_id=campaign_id, taken_at__lt=now - PRUNE_KEEP_ALL
        )
        .order_by("taken_at", "id")
        .values_list("pk", "taken_at")
    )
    if len(older) < 2:
        return 0
    last_in_slot: dict[tuple[int, int], int] = {}
    for pk, taken_at in older:
        width = (
            _PRUNE_FINE_BUCKET
            if now - taken_at < PRUNE_FINE_UNTIL
            else _PRUNE_COARSE_BUCKET
        )
        last_in_slot[(width, int(taken_at.timestamp()) // width)] = pk
    keep = set(last_in_slot.values()) | {older[0][0]}
    drop = [pk for pk, _ in older if pk not in keep]
    if not drop:
        return 0
    deleted, _ = CampaignSnapshot.objects.filter(pk__in=drop).delete()
    return deleted
