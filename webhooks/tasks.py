"""Celery tasks of the webhooks app: thin wrappers around its services."""

import time

from celery import shared_task

from .queue import queued_callbacks_apply
from .replay import seen_callbacks_prune


@shared_task(ignore_result=True)
def prune_seen_callbacks() -> int:
    """Forget callbacks whose freshness window has passed (beat, every minute)."""
    return seen_callbacks_prune()


@shared_task(ignore_result=True)
def apply_queued_callbacks() -> int:
    """Apply the callbacks webhooks stored (started by each webhook, and by beat in
    case one was missed); returns at once when another worker is applying them."""
    return queued_callbacks_apply(deadline=time.monotonic() + 50.0)
