"""Celery tasks: thin wrappers around the services."""

import time

from celery import shared_task

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from .sending import direct, scheduling


@shared_task(acks_late=True, ignore_result=True)
def deliver_message(message_id: int) -> None:
    direct.message_deliver(message_id=message_id)


@shared_task(acks_late=True, ignore_result=True)
def start_campaign(campaign_id: int) -> None:
    scheduling.start_campaign(campaign_id)


@shared_task(acks_late=True, ignore_result=True)
def dispatch_campaign(campaign_id: int) -> None:
    """Send one campaign for a time slice, then hand over to a fresh task.

    Slices keep one long campaign from holding a worker for hours, and make a worker
    lost mid-campaign cost at most one slice: the task is acknowledged late, so the
    broker hands it to another worker.
    """
    from providers import get_provider

    from .models import Campaign
    from .provider_checks import campaign_pause_if_unusable
    from .sending.dispatch import Dispatcher

    campaign = (
        Campaign.objects.filter(pk=campaign_id)
        .only("status", "provider", "fallback_provider")
        .first()
    )
    if campaign is None:
        return
    # A provider that cannot send pauses its campaign (with the reason), not the
    # worker: the task ends quietly instead of failing on every retry.
    if campaign.status == Campaign.Status.SENDING and campaign_pause_if_unusable(
        campaign
    ):
        return
    try:
        backend = get_provider(campaign.provider)
        deliver_reports = getattr(backend, "deliver_due", None)

        def on_batch(dispatcher) -> None:
            if deliver_reports is not None:
                deliver_reports()

        step = Dispatcher(campaign_id, on_batch=on_batch).run(
            deadline=time.monotonic() + settings.SMS_TASK_SLICE_SECONDS
        )
    except ImproperlyConfigured as exc:
        campaign_pause_if_unusable(campaign, error=exc)
        return
    if step.state in ("done", "stopped"):
        return
    countdown = 0.0
    if step.state == "waiting" and step.wait_until is not None:
        countdown = min(max((step.wait_until - timezone.now()).total_seconds(), 0), 300)
    dispatch_campaign.apply_async((campaign_id,), countdown=countdown)


@shared_task(ignore_result=True)
def scheduler_tick() -> dict:
    return scheduling.tick()
