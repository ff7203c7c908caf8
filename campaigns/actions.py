"""What a marketer or integrator can do to a campaign. The admin, the API and the
commands call these; none of them blocks on sending."""

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .claims import OPTED_OUT_CODE
from .dispatch import CANCELLED_CODE, cancel_queued
from .launch import CampaignError
from .models import Campaign, Message
from .provider_checks import campaign_require_usable_providers
from .scheduling import enqueue_dispatch, enqueue_start

SCHEDULABLE = {Campaign.Status.DRAFT, Campaign.Status.SCHEDULED}


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _move(campaign: Campaign, allowed: set[str], verb: str, **fields) -> Campaign:
    """Change the campaign's status only if it is still in one of ``allowed`` states."""
    moved = Campaign.objects.filter(pk=campaign.pk, status__in=allowed).update(
        updated_at=timezone.now(), **fields
    )
    campaign.refresh_from_db()
    if not moved:
        raise CampaignError(
            f"Campaign {campaign.pk} is {campaign.get_status_display().lower()}: it cannot be {verb}"
        )
    return campaign


@transaction.atomic
def campaign_send_now(*, campaign: Campaign) -> Campaign:
    """Start sending as soon as a worker picks it up."""
    return campaign_schedule(campaign=campaign, at=timezone.now())


@transaction.atomic
def campaign_schedule(
    *,
    campaign: Campaign,
    at: datetime,
    time_zone: str = "",
    send_window: dict | None = None,
) -> Campaign:
    """Send at ``at`` (now or later). The scheduler launches it on time.

    ``time_zone`` is the IANA zone the time was picked in, kept only to show the
    time as it was chosen (empty: none given, the server's zone shows it).
    ``send_window`` replaces the sending hours when given ({} clears them).
    """
    if timezone.is_naive(at):
        raise CampaignError("The schedule needs a time zone")
    if campaign.status in SCHEDULABLE:
        # (Otherwise the state is what refuses it, below.)
        campaign_require_usable_providers(campaign)
    if time_zone and not _is_zone(time_zone):
        raise CampaignError(f"Unknown time zone {time_zone!r}")
    window = {} if send_window is None else {"send_window": send_window or None}
    _move(
        campaign,
        SCHEDULABLE,
        "scheduled",
        status=Campaign.Status.SCHEDULED,
        scheduled_at=at,
        schedule_time_zone=time_zone,
        **window,
    )
    if at <= timezone.now():
        transaction.on_commit(lambda: enqueue_start(campaign.pk))
    return campaign


@transaction.atomic
def campaign_pause(*, campaign: Campaign) -> Campaign:
    """Stop sending after the batch in flight; nothing is lost."""
    return _move(
        campaign,
        {Campaign.Status.SENDING, Campaign.Status.SCHEDULED},
        "paused",
        status=Campaign.Status.PAUSED,
    )


@transaction.atomic
def campaign_resume(*, campaign: Campaign) -> Campaign:
    """Carry on from where it stopped; nobody gets a message twice."""
    if campaign.status == Campaign.Status.PAUSED:
        # Refused while the provider still cannot send: a worker would pause it again.
        campaign_require_usable_providers(campaign)
    was_launched = campaign.started_at is not None
    _move(
        campaign,
        {Campaign.Status.PAUSED},
        "resumed",
        status=Campaign.Status.SENDING if was_launched else Campaign.Status.SCHEDULED,
        waiting_reason="",
    )
    if was_launched:
        transaction.on_commit(lambda: enqueue_dispatch(campaign.pk))
    elif campaign.scheduled_at and campaign.scheduled_at <= timezone.now():
        transaction.on_commit(lambda: enqueue_start(campaign.pk))
    return campaign


@transaction.atomic
def campaign_cancel(*, campaign: Campaign) -> Campaign:
    """Stop for good: messages not yet sent are marked as cancelled."""
    _move(
        campaign,
        {
            Campaign.Status.DRAFT,
            Campaign.Status.SCHEDULED,
            Campaign.Status.SENDING,
            Campaign.Status.PAUSED,
        },
        "cancelled",
        status=Campaign.Status.CANCELLED,
        completed_at=timezone.now(),
        waiting_reason="",
    )
    cancel_queued(campaign_id=campaign.pk)
    return campaign


@transaction.atomic
def campaign_retry_failed(*, campaign: Campaign, include_unknown: bool = False) -> int:
    """Queue failed messages again (and, if asked, those whose fate a crash left
    unknown: they may have gone out once already). Opted-out and cancelled
    messages stay as they are. Returns how many were queued."""
    statuses = [Message.Status.FAILED]
    if include_unknown:
        statuses.append(Message.Status.UNKNOWN)
    retry = Message.objects.filter(campaign=campaign, status__in=statuses).exclude(
        Q(error_code=OPTED_OUT_CODE) | Q(error_code=CANCELLED_CODE)
    )
    count = retry.update(
        status=Message.Status.QUEUED,
        attempts=0,
        next_attempt_at=None,
        error_code="",
        error_reason="",
        status_changed_at=timezone.now(),
    )
    # A cancelled campaign stays cancelled: retrying never revives it.
    revivable = {
        Campaign.Status.COMPLETED,
        Campaign.Status.FAILED,
        Campaign.Status.SENDING,
    }
    if count and campaign.status in revivable:
        Campaign.objects.filter(pk=campaign.pk).update(
            status=Campaign.Status.SENDING, completed_at=None
        )
        transaction.on_commit(lambda: enqueue_dispatch(campaign.pk))
    campaign.refresh_from_db()
    return count
