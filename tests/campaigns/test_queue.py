"""The send path enqueues Celery tasks by name: the names must be the tasks'."""

import campaigns.tasks  # noqa: F401  (registers the tasks)
from campaigns.sending import queue
from smscampaigns.celery import app


def test_every_task_the_send_path_enqueues_exists():
    for name in (queue.START_CAMPAIGN, queue.DISPATCH_CAMPAIGN, queue.DELIVER_MESSAGE):
        assert name in app.tasks, name
