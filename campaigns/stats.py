"""How a campaign is doing: counts by status, delivery rate, cost and opt-outs.

Every figure comes from a few aggregate queries, whatever the campaign's size.
"""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q, Sum

from contacts.models import ConsentEvent

from .actions import CANCELLED_CODE
from .claims import OPTED_OUT_CODE
from .models import Campaign, Message

#: How long after a message was submitted an opt-out from its recipient counts
#: against the campaign.
OPT_OUT_ATTRIBUTION = timedelta(days=7)

#: Final outcomes of messages that reached the provider.
DELIVERY_OUTCOMES = (
    Message.Status.DELIVERED,
    Message.Status.UNDELIVERED,
    Message.Status.FAILED,
    Message.Status.REJECTED,
    Message.Status.EXPIRED,
)


@dataclass(frozen=True)
class CampaignStats:
    counts: dict[str, int]
    """Messages per status; every status is present."""
    delivery_rate: float | None
    """Delivered over final outcomes, None before any outcome is known."""
    opt_outs: int
    """Recipients who opted out within :data:`OPT_OUT_ATTRIBUTION` of their message."""
    cost: Decimal
    currency: str
    cost_by_currency: dict[str, Decimal]
    skipped_opted_out: int
    """Messages not sent because the recipient had opted out by then."""


def campaign_stats(*, campaign: Campaign) -> CampaignStats:
    messages = Message.objects.filter(campaign=campaign).order_by()
    counts = dict.fromkeys(Message.Status.values, 0)
    skipped = cancelled = 0
    rows = messages.values("status").annotate(
        n=Count("pk"),
        opted_out=Count("pk", filter=Q(error_code=OPTED_OUT_CODE)),
        cancelled=Count("pk", filter=Q(error_code=CANCELLED_CODE)),
    )
    for row in rows:
        counts[row["status"]] = row["n"]
        if row["status"] == Message.Status.FAILED:
            skipped, cancelled = row["opted_out"], row["cancelled"]
    # Messages skipped for an opt-out or a cancel are "failed" but never reached a
    # carrier, so they say nothing about deliverability.
    outcomes = sum(counts[status] for status in DELIVERY_OUTCOMES) - skipped - cancelled
    delivered = counts[Message.Status.DELIVERED]
    delivery_rate = delivered / outcomes if outcomes > 0 else None

    cost_by_currency = {
        row["currency"]: row["total"]
        for row in messages.filter(price__isnull=False)
        .values("currency")
        .annotate(total=Sum("price"))
        .order_by("-total")
    }
    if cost_by_currency:
        currency, cost = next(iter(cost_by_currency.items()))
    else:
        currency, cost = settings.SMS_PRICE_CURRENCY, Decimal(0)

    return CampaignStats(
        counts=counts,
        delivery_rate=delivery_rate,
        opt_outs=campaign_opt_out_count(campaign=campaign),
        cost=cost,
        currency=currency,
        cost_by_currency=cost_by_currency,
        skipped_opted_out=skipped,
    )


def campaign_opt_out_count(*, campaign: Campaign) -> int:
    """Recipients of ``campaign`` who opted out after their message was submitted,
    within :data:`OPT_OUT_ATTRIBUTION`. One query: an EXISTS per message answered
    from the (phone, created_at) index of consent events."""
    opt_out_after = ConsentEvent.objects.filter(
        kind=ConsentEvent.Kind.OPT_OUT,
        phone=OuterRef("to"),
        created_at__gte=OuterRef("submitted_at"),
        created_at__lt=OuterRef("submitted_at") + OPT_OUT_ATTRIBUTION,
    )
    # A campaign texts each number once, so messages counted are recipients counted.
    return (
        Message.objects.filter(campaign=campaign, submitted_at__isnull=False)
        .filter(Exists(opt_out_after))
        .count()
    )
