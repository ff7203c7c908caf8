"""What a marketer or integrator can do to a campaign. The admin, the API and the
commands call these; none of them blocks on sending."""

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import transaction
from django.utils import timezone

from . import lifecycle
from .lifecycle import CampaignError
from .models import Campaign, Message
from .preview import campaign_audience
from .provider_checks import campaign_require_usable_providers
from .sending.dispatch import cancel_queued
from .sending.queue import enqueue_dispatch, enqueue_start


class EmptyAudience(CampaignError):
    """A campaign that would reach nobody: sending or scheduling it is refused."""


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def audience_problem(
    campaign: Campaign,
    *,
    list_ids: list[int] | None = None,
    segment_ids: list[int] | None = None,
    recipients: int | None = None,
) -> str:
    """Why the campaign would reach nobody ("" when it reaches someone): the rule
    every entry point applies before sending or scheduling. ``list_ids``,
    ``segment_ids`` and ``recipients`` are the caller's own counts, when it has
    them (the admin's confirmation pages show them)."""
    if list_ids is None:
        list_ids = list(campaign.lists.values_list("pk", flat=True))
    if segment_ids is None:
        segment_ids = list(campaign.segments.values_list("pk", flat=True))
    if not list_ids and not segment_ids:
        return (
            "it has no lists or segments: choose who gets it on the campaign page "
            "first."
        )
    if recipients is None:
        recipients = 1 if campaign_audience(campaign).exists() else 0
    if not recipients:
        return (
            "nobody would get it: its lists and segments are empty, or everyone in "
            "them opted out or is suppressed."
        )
    return ""


def campaign_require_audience(campaign: Campaign, *, verb: str = "sent") -> None:
    """Raise :class:`EmptyAudience` when the campaign would reach nobody."""
    if problem := audience_problem(campaign):
        raise EmptyAudience(f"Campaign {campaign.pk} cannot be {verb}: {problem}")


@transaction.atomic
def campaign_send_now(*, campaign: Campaign) -> Campaign:
    """Start sending as soon as a worker picks it up (it shows as "Starting" until
    then, see campaigns.lifecycle)."""
    return _schedule(campaign, "send", at=timezone.now())


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
    if time_zone and not _is_zone(time_zone):
        raise CampaignError(f"Unknown time zone {time_zone!r}")
    return _schedule(
        campaign, "schedule", at=at, time_zone=time_zone, send_window=send_window
    )


def _schedule(
    campaign: Campaign,
    action: str,
    *,
    at: datetime,
    time_zone: str = "",
    send_window: dict | None = None,
) -> Campaign:
    # The state first: a cancelled campaign is refused as such, whatever its lists.
    lifecycle.require(campaign, action)
    campaign_require_usable_providers(campaign)
    campaign_require_audience(campaign, verb=lifecycle.TRANSITIONS[action].verb)
    window = {} if send_window is None else {"send_window": send_window or None}
    lifecycle.move(
        campaign,
        action,
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
    return lifecycle.move(campaign, "pause")


@transaction.atomic
def campaign_resume(*, campaign: Campaign) -> Campaign:
    """Carry on from where it stopped; nobody gets a message twice. A campaign
    paused before it was launched goes back to its schedule."""
    lifecycle.require(campaign, "resume")
    # Refused while the provider still cannot send: a worker would pause it again.
    campaign_require_usable_providers(campaign)
    lifecycle.move(campaign, "resume", waiting_reason="")
    if campaign.status == Campaign.Status.SENDING:
        transaction.on_commit(lambda: enqueue_dispatch(campaign.pk))
    elif campaign.scheduled_at and campaign.scheduled_at <= timezone.now():
        transaction.on_commit(lambda: enqueue_start(campaign.pk))
    return campaign


@transaction.atomic
def campaign_cancel(*, campaign: Campaign) -> Campaign:
    """Stop for good: messages not yet sent are marked as cancelled."""
    lifecycle.move(campaign, "cancel", completed_at=timezone.now(), waiting_reason="")
    cancel_queued(campaign_id=campaign.pk)
    return campaign


@transaction.atomic
def campaign_retry_failed(*, campaign: Campaign, include_unknown: bool = False) -> int:
    """Queue failed messages again (and, if asked, those whose fate a crash left
    unknown: they may have gone out once already). Opted-out and cancelled
    messages stay as they are. Returns how many were queued.

    Refused (:class:`CampaignError`) unless the campaign's state allows it: a
    cancelled campaign's requeued messages would never go out. A finished campaign
    sends again; a paused one sends them when it is resumed.
    """
    # Held until the commit, so nobody cancels it between the check and the requeue.
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if not lifecycle.can(locked, "retry_failed"):
        campaign.refresh_from_db()
        raise lifecycle.refusal(campaign, "retry_failed")
    statuses = [Message.Status.FAILED]
    if include_unknown:
        statuses.append(Message.Status.UNKNOWN)
    retry = Message.objects.filter(campaign=campaign, status__in=statuses).exclude(
        error_code__in=Message.SkipReason.values
    )
    count = retry.update(
        status=Message.Status.QUEUED,
        attempts=0,
        next_attempt_at=None,
        error_code="",
        error_reason="",
        status_changed_at=timezone.now(),
    )
    if count:
        lifecycle.move(campaign, "retry_failed", completed_at=None)
        if campaign.status == Campaign.Status.SENDING:
            transaction.on_commit(lambda: enqueue_dispatch(campaign.pk))
    else:
        campaign.refresh_from_db()
    return count
