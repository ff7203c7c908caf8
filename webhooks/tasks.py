"""Celery tasks of the webhooks app: thin wrappers around its services."""

from celery import shared_task

from .replay import seen_callbacks_prune


@shared_task(ignore_result=True)
def prune_seen_callbacks() -> int:
    """Forget callbacks whose freshness window has passed (beat, every minute)."""
    return seen_callbacks_prune()
