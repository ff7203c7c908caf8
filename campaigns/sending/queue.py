"""Background work on Celery, asked for by task name.

The tasks (``campaigns/tasks.py``) are thin wrappers that call the send path; the send
path puts work on the queue by the tasks' names, so neither imports the other. Without
a broker these are no-ops: ``run_worker`` (or ``send_campaign``) polls for the work.
"""

from django.conf import settings

from smscampaigns.celery import app, broker_configured

START_CAMPAIGN = "campaigns.tasks.start_campaign"
DISPATCH_CAMPAIGN = "campaigns.tasks.dispatch_campaign"
DELIVER_MESSAGE = "campaigns.tasks.deliver_message"


def enqueue_start(campaign_id: int) -> None:
    """Launch and dispatch a campaign in the background."""
    if broker_configured():
        app.send_task(START_CAMPAIGN, args=(campaign_id,))


def enqueue_dispatch(
    campaign_id: int, *, parallel: int | None = None, countdown: float = 0
) -> None:
    """Put ``parallel`` dispatch tasks for a campaign on the queue; each claims its own
    batches, so any number of workers on any number of machines share the work."""
    if not broker_configured():
        return
    for _ in range(parallel or settings.SMS_DISPATCH_PARALLEL_TASKS):
        app.send_task(DISPATCH_CAMPAIGN, args=(campaign_id,), countdown=countdown)


def enqueue_delivery(message_id: int) -> bool:
    """Send one direct message in a task; False without a broker (send it inline)."""
    if not broker_configured():
        return False
    app.send_task(DELIVER_MESSAGE, args=(message_id,))
    return True
