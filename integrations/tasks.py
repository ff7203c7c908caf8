"""Celery tasks: thin wrappers around the deliverer."""

import time

from celery import shared_task

from .delivery import deliver_due
from .services import delivery_log_prune

#: Seconds one task delivers before it ends (beat starts one every 5 s; endpoint
#: leases keep overlapping tasks from posting to the same endpoint at once).
SLICE_SECONDS = 30.0


@shared_task(acks_late=True, ignore_result=True)
def deliver_webhooks() -> int:
    return deliver_due(deadline=time.monotonic() + SLICE_SECONDS)


@shared_task(acks_late=True, ignore_result=True)
def prune_delivery_log() -> int:
    return delivery_log_prune()
