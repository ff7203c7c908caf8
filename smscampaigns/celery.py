"""The Celery application: background launch, dispatch and scheduling.

Configured from Django settings under the ``CELERY_`` namespace, so the broker comes from
``CELERY_BROKER_URL`` like every other setting.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smscampaigns.settings")

app = Celery("smscampaigns")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def broker_configured() -> bool:
    """Whether background work goes to Celery (else run_worker polls for it)."""
    from django.conf import settings

    return bool(settings.CELERY_BROKER_URL)
