"""A campaign's "send by" deadline: what has not gone out by then never goes out.

The claim of every batch asks :func:`expire_unsent` first, so no message is handed
to a provider after its campaign's deadline; the scheduler sweeps the campaigns
whose deadline passed while their messages waited (outside the send window, or
paused), so the campaign finishes instead of waiting for the next window. The
vendors are told the same deadline (``OutboundSms.expires_at``: Vonage ``ttl``,
Sinch ``expire_at``, Plivo ``message_expiry``), so they stop trying then too.
"""

from datetime import datetime

from django.db.models import Q

from ..models import Campaign, Message

EXPIRED_REASON = "Not sent by the campaign's send-by time"


def campaign_send_by(campaign_id: int) -> datetime | None:
    return (
        Campaign.objects.filter(pk=campaign_id)
        .values_list("send_by", flat=True)
        .first()
    )


def expire_unsent(
    *, campaign_id: int, now: datetime, send_by: datetime | None = None
) -> int:
    """Mark the campaign's queued messages "failed", skip reason "expired", once its
    send-by time has passed; return how many. One indexed UPDATE, none before."""
    send_by = send_by if send_by is not None else campaign_send_by(campaign_id)
    if send_by is None or send_by > now:
        return 0
    return Message.objects.filter(
        campaign_id=campaign_id,
        kind=Message.Kind.CAMPAIGN,
        status=Message.Status.QUEUED,
    ).update(
        status=Message.Status.FAILED,
        error_code=Message.SkipReason.EXPIRED,
        error_reason=EXPIRED_REASON,
        next_attempt_at=None,
        status_changed_at=now,
    )


def expire_overdue_campaigns(*, now: datetime) -> int:
    """The scheduler's sweep: every campaign past its send-by time with messages
    still queued."""
    overdue = (
        Campaign.objects.filter(send_by__lte=now)
        .filter(
            Q(
                pk__in=Message.objects.filter(status=Message.Status.QUEUED).values(
                    "campaign_id"
                )
            )
        )
        .values_list("pk", "send_by")
    )
    return sum(
        expire_unsent(campaign_id=pk, now=now, send_by=send_by)
        for pk, send_by in overdue
    )
