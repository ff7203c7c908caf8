"""Getting campaigns moving: on Celery when a broker is configured, otherwise by the
``run_worker`` command (or ``send_campaign``) on this machine."""

import logging
from datetime import timedelta

from django.utils import timezone

from smscampaigns import metrics
from smscampaigns.celery import broker_configured

from ..models import Campaign
from ..stats import campaign_snapshots_refresh_active
from .deadline import expire_overdue_campaigns
from .launch import CampaignError, campaign_launch
from .liveness import campaign_stalled, recover_stale, sessions_prune
from .queue import enqueue_dispatch, enqueue_start
from .receipts import delivery_events_sweep

logger = logging.getLogger(__name__)

# Sending campaigns get a progress snapshot at most this often from the scheduler, so
# the admin's pages read figures instead of counting messages.
SNAPSHOT_INTERVAL = timedelta(seconds=15)


def start_campaign(campaign_id: int) -> int:
    """Launch a scheduled campaign (materialize its audience) and start dispatching."""
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.status not in (Campaign.Status.SCHEDULED, Campaign.Status.SENDING):
        return 0
    try:
        added = campaign_launch(campaign=campaign)
    except CampaignError as exc:
        logger.warning("campaign %s not launched: %s", campaign_id, exc)
        return 0
    logger.info("campaign %s launched: %d messages queued", campaign_id, added)
    enqueue_dispatch(campaign_id)
    return added


def due_campaigns():
    return Campaign.objects.filter(
        status=Campaign.Status.SCHEDULED, scheduled_at__lte=timezone.now()
    ).order_by("scheduled_at")


def tick() -> dict[str, int]:
    """One round of the scheduler: start due campaigns, recover messages orphaned by
    dead workers, restart dispatch for sending campaigns nobody is working on, and
    snapshot the progress of sending campaigns."""
    # The workers' heartbeat on /metrics, whether or not anything is sending.
    metrics.scheduler_tick_record()
    started = 0
    for campaign in due_campaigns():
        if broker_configured():
            enqueue_start(campaign.pk)
        else:
            start_campaign(campaign.pk)
        started += 1
    retried = retry_direct_messages()
    # Campaigns past their send-by time stop waiting for a window: the rest expires.
    expire_overdue_campaigns(now=timezone.now())
    delivery_events_sweep()
    recovered = recover_stale()
    sessions_prune()
    restarted = 0
    if broker_configured():
        for campaign_id in Campaign.objects.filter(
            status=Campaign.Status.SENDING
        ).values_list("pk", flat=True):
            if campaign_stalled(campaign_id):
                enqueue_dispatch(campaign_id, parallel=1)
                restarted += 1
    snapshots = campaign_snapshots_refresh_active(min_interval=SNAPSHOT_INTERVAL)
    return {
        "started": started,
        "recovered": recovered,
        "restarted": restarted,
        "retried": retried,
        "snapshots": snapshots,
    }


def retry_direct_messages(limit: int = 500) -> int:
    """Put on the queue keyword replies and test sends that are due (their first
    attempt's task was lost, or their retry time has come). Without a broker,
    run_worker's DirectSender sends them, many at once: sending them one by one here
    would hold up the whole worker for the vendor's answer each time."""
    from .direct import direct_message_ids_due, dispatch_direct

    if not broker_configured():
        return 0
    due = direct_message_ids_due(limit=limit)
    for message_id in due:
        dispatch_direct(message_id)
    return len(due)
