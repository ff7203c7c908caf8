"""Celery tasks: thin wrappers around the services."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, ignore_result=True)
def deliver_message(message_id: int) -> None:
    services.message_deliver(message_id=message_id)
