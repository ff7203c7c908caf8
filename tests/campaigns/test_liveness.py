"""A dead sender is noticed at once (issue #11, 3): its claims are settled inside every
dispatcher's loop, so a resume right after a crash finishes without waiting for the
lease; a live sender's claims are left alone."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign, DispatchSession, Message
from campaigns.sending.dispatch import Dispatcher
from campaigns.sending.launch import campaign_launch
from campaigns.sending.liveness import Liveness, live_sessions, recover_stale
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def campaign(db):
    contact_list = ContactListFactory()
    for _ in range(6):
        ContactFactory().lists.add(contact_list)
    campaign = CampaignFactory(lists=[contact_list], provider="locmem")
    campaign_launch(campaign=campaign)
    return campaign


def _claimed_by_a_dead_sender(campaign: Campaign) -> tuple[list[int], list[int]]:
    """Four of the campaign's messages claimed a moment ago by a sender that then died
    (killed: no lock, and silent): two were already handed to the provider."""
    dead = DispatchSession.objects.create(
        pid=999_999, beat_at=timezone.now() - timedelta(minutes=5)
    )
    ids = list(
        Message.objects.filter(campaign=campaign)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    handed, unhanded = ids[:2], ids[2:4]
    now = timezone.now()
    Message.objects.filter(pk__in=handed + unhanded).update(
        status=Message.Status.SENDING,
        claimed_by=dead,
        attempts=1,
        status_changed_at=now,
    )
    Message.objects.filter(pk__in=handed).update(handed_at=now)
    return handed, unhanded


@pytest.mark.django_db
def test_a_resume_right_after_a_crash_finishes_without_waiting_for_the_lease(
    campaign, sms_outbox, settings
):
    settings.SMS_SEND_LEASE_SECONDS = 3600
    handed, unhanded = _claimed_by_a_dead_sender(campaign)

    step = Dispatcher(campaign.pk).run(deadline=time.monotonic() + 20)

    assert step.state == "done"
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    statuses = dict(Message.objects.values_list("pk", "status"))
    # Handed over before the crash: may have been sent, never sent again.
    assert {statuses[pk] for pk in handed} == {"unknown"}
    # Claimed but never handed over: sent now, once.
    assert {statuses[pk] for pk in unhanded} == {"submitted"}
    sent_to = [m.to for m in sms_outbox]
    assert len(sent_to) == 4
    assert len(set(sent_to)) == 4
    assert not Message.objects.filter(pk__in=handed, to__in=sent_to).exists()
    assert not DispatchSession.objects.exists()


@pytest.mark.django_db
def test_a_live_senders_claims_are_left_alone(campaign, settings):
    settings.SMS_SEND_LEASE_SECONDS = 3600
    other = Liveness()
    session_id = other.open()
    try:
        Message.objects.filter(campaign=campaign).update(
            status=Message.Status.SENDING,
            claimed_by_id=session_id,
            handed_at=timezone.now(),
            status_changed_at=timezone.now(),
        )
        assert live_sessions({session_id}) == {session_id}
        assert recover_stale(campaign_id=campaign.pk) == 0
        assert set(Message.objects.values_list("status", flat=True)) == {"sending"}

        step = Dispatcher(campaign.pk).step()
        assert step.state == "waiting"
        assert f"dispatcher #{session_id}" in step.reason
    finally:
        other.close()
    # Closed with messages still claimed: they are now a dead sender's.
    assert recover_stale(campaign_id=campaign.pk) == 6


@pytest.mark.django_db
def test_a_silent_sender_counts_as_dead_only_where_no_lock_proves_it_alive(settings):
    settings.SMS_DISPATCHER_TIMEOUT = 15
    silent = DispatchSession.objects.create(
        beat_at=timezone.now() - timedelta(seconds=20)
    )
    recent = DispatchSession.objects.create(beat_at=timezone.now())
    alive = live_sessions({silent.pk, recent.pk})
    if connection.vendor == "postgresql":
        # Neither holds its lock: a killed process, whatever its last heartbeat.
        assert alive == set()
    else:
        assert alive == {recent.pk}


@pytest.mark.django_db(transaction=True)
def test_send_campaign_run_again_right_after_kill_9_finishes(settings, tmp_path):
    """The issue's scenario with real processes: a resume started within the lease
    used to wait for it (300 s) and never finish."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "sender processes need a database they can share: run on PostgreSQL"
        )
    contact_list = ContactListFactory()
    for _ in range(300):
        ContactFactory().lists.add(contact_list)
    campaign = CampaignFactory(lists=[contact_list], provider="simulator")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "smscampaigns.settings",
        "ENV_FILE": os.devnull,
        "DEBUG": "true",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CACHE_URL": "",
        "SIMULATOR_LATENCY": "0.2",
        "SIMULATOR_RATE": "100",
        "SIMULATOR_DELIVERED_RATE": "1",
        "SIMULATOR_UNDELIVERED_RATE": "0",
        "SIMULATOR_BACKGROUND_REPORTS": "false",
        "SMS_SEND_LEASE_SECONDS": "300",
    }
    command = [sys.executable, "manage.py", "send_campaign", str(campaign.pk)]
    command += ["--report-wait", "0"]
    first = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and first.poll() is None:
        if Message.objects.filter(campaign=campaign, status="submitted").count() >= 50:
            break
        time.sleep(0.05)
    assert first.poll() is None, "the first sender finished before it could be killed"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()

    started = time.monotonic()
    resume = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    took = time.monotonic() - started

    assert resume.returncode == 0, resume.stdout + resume.stderr
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    messages = Message.objects.filter(campaign=campaign)
    assert not messages.filter(status__in=["queued", "sending"]).exists()
    # Only what was in flight at the kill is unknown; the lease (300 s) played no part.
    assert messages.filter(status="unknown").count() <= 64
    assert took < 120
