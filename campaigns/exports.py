"""A campaign's per-recipient results as CSV rows (the admin and the API serve them
through smscampaigns.csv_export)."""

from collections.abc import Iterator

from django.utils import timezone
from django.utils.text import slugify

from smscampaigns.csv_export import stream_rows

from .models import Campaign, Message

RESULT_COLUMNS = (
    "message_id",
    "phone",
    "first_name",
    "last_name",
    "status",
    "error_code",
    "error_reason",
    "segments",
    "price",
    "currency",
    "sent_at",
    "delivered_at",
    "first_clicked_at",
)

_FIELDS = (
    "id",
    "to",
    "contact__first_name",
    "contact__last_name",
    "status",
    "error_code",
    "error_reason",
    "segments",
    "price",
    "currency",
    "submitted_at",
    "status_changed_at",
    "first_clicked_at",
)


def campaign_results_rows(campaign: Campaign) -> Iterator[tuple]:
    """One row per recipient (RESULT_COLUMNS), read a chunk at a time.

    Ordered by contact: the (campaign, contact) unique index hands the rows over in
    that order, so the database neither sorts a million rows nor scans other
    campaigns' messages first. ``sent_at`` is when the provider accepted the
    message; ``delivered_at`` when its delivery receipt arrived (a delivered message
    never changes status again); ``first_clicked_at`` when the recipient first
    opened one of its tracked links (empty: no click, or no tracked link).
    """
    messages = (
        Message.objects.filter(campaign=campaign, kind=Message.Kind.CAMPAIGN)
        .order_by("contact_id")
        .values_list(*_FIELDS)
    )
    delivered = Message.Status.DELIVERED
    for row in stream_rows(messages):
        (*head, status_changed_at, first_clicked_at) = row
        delivered_at = status_changed_at if row[4] == delivered else None
        yield (*head, delivered_at, first_clicked_at)


def campaign_results_filename(campaign: Campaign) -> str:
    """ "campaign-12-spring-sale-results-2026-12-05.csv"."""
    slug = slugify(campaign.name)[:50] or "campaign"
    day = timezone.localdate().isoformat()
    return f"campaign-{campaign.pk}-{slug}-results-{day}.csv"
