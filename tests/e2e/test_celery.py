"""Two real Celery worker processes on a real Redis broker drain one campaign together."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from django.db import connection

from campaigns.actions import campaign_send_now
from campaigns.models import Campaign, Message
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

ROOT = Path(__file__).resolve().parents[2]
BROKER = "redis://127.0.0.1:6379/14"

pytestmark = pytest.mark.django_db(transaction=True)


def _redis_up() -> bool:
    try:
        return redis.Redis.from_url(BROKER, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


@pytest.fixture
def workers(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip(
            "worker processes need a database they can share: run on PostgreSQL"
        )
    if not _redis_up():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    redis.Redis.from_url(BROKER).flushdb()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "smscampaigns.settings",
        "ENV_FILE": os.devnull,
        "DEBUG": "true",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": BROKER,
        "CACHE_URL": "redis://127.0.0.1:6379/13",
        "SIMULATOR_REPORT_DELAY": "0,0",
        "SIMULATOR_BACKGROUND_REPORTS": "false",
        "SMS_DISPATCH_BATCH_SIZE": "50",
        "SMS_TASK_SLICE_SECONDS": "2",
    }
    processes, logs = [], []
    for n in range(2):
        log = tmp_path / f"worker{n}.log"
        logs.append(log)
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "smscampaigns",
                    "worker",
                    "--pool=solo",
                    "--loglevel=INFO",
                    "-n",
                    f"w{n}@%h",
                ],
                cwd=ROOT,
                env=env,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
            )
        )
    yield logs
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def test_two_workers_send_a_campaign_once_each(workers, settings):
    settings.CELERY_BROKER_URL = BROKER
    from smscampaigns.celery import app

    app.conf.broker_url = BROKER
    contact_list = ContactListFactory()
    ContactFactory.reset_sequence(0)
    for contact in ContactFactory.create_batch(400):
        contact.lists.add(contact_list)
    campaign = CampaignFactory(
        lists=[contact_list], provider="simulator", body="Hello {first_name}"
    )

    campaign_send_now(campaign=campaign)

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        campaign.refresh_from_db()
        if campaign.status == Campaign.Status.COMPLETED:
            break
        time.sleep(0.5)
    logs = [log.read_text() for log in workers]
    assert campaign.status == Campaign.Status.COMPLETED, logs
    messages = Message.objects.filter(campaign=campaign)
    assert messages.count() == 400
    assert not messages.filter(status__in=["queued", "sending", "unknown"]).exists()
    ids = list(messages.values_list("provider_message_id", flat=True))
    assert len(set(ids)) == 400  # each recipient accepted exactly once
    assert all(m.attempts == 1 for m in messages.only("attempts"))
    # Both workers took part.
    assert all("campaigns.tasks.dispatch_campaign" in text for text in logs), logs
