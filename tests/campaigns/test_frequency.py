"""The frequency cap: its setting and per-campaign override, the skip at claim time,
what counts toward it (and what never does), and where the skips are shown."""

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from django.core.exceptions import ValidationError
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from campaigns.frequency import FrequencyCap, parse_cap, validate_frequency_cap
from campaigns.models import Campaign, Message
from campaigns.preview import campaign_estimate
from campaigns.sending.claims import claim_batch
from campaigns.sending.dispatch import Dispatcher
from campaigns.sending.launch import campaign_launch
from campaigns.stats import campaign_stats
from campaigns.writes import campaign_send_test
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    MessageFactory,
)

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


# --- The rule as written ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cap"),
    [
        ("2 per 7 days", FrequencyCap(2, timedelta(days=7))),
        ("1 per day", FrequencyCap(1, timedelta(days=1))),
        ("3 per 24 hours", FrequencyCap(3, timedelta(hours=24))),
        ("5 / 2 weeks", FrequencyCap(5, timedelta(weeks=2))),
        ("4 Per 30 Minutes", FrequencyCap(4, timedelta(minutes=30))),
        ("off", None),
        ("", None),
    ],
)
def test_caps_are_written_as_a_number_per_a_period(text, cap):
    assert parse_cap(text) == cap


def test_a_cap_reads_back_in_words():
    assert str(parse_cap("2 per 7 days")) == "2 per week"
    assert str(parse_cap("3 per 24 hours")) == "3 per day"
    assert str(parse_cap("1 per 90 minutes")) == "1 per 90 minutes"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("twice a week", "write it as “2 per 7 days”"),
        ("0 per day", "from 1 to 1000"),
        ("2 per 400 days", "1 minute to 366 days"),
    ],
)
def test_a_bad_cap_is_refused_saying_how_to_write_it(text, message):
    with pytest.raises(ValidationError, match=message):
        validate_frequency_cap(text)


def test_a_bad_setting_stops_the_server_at_start_up():
    env = {
        **os.environ,
        "SMS_FREQUENCY_CAP": "often",
        "DJANGO_SETTINGS_MODULE": "smscampaigns.settings_test",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: SMS_FREQUENCY_CAP" in result.stderr


# --- Claims -------------------------------------------------------------------------


@pytest.fixture
def people():
    """Ann got two marketing messages this week, Bob one, Cid one long ago."""
    now = timezone.now()
    contact_list = ContactListFactory()
    ann, bob, cid = (ContactFactory(first_name=name) for name in ("Ann", "Bob", "Cid"))
    for contact in (ann, bob, cid):
        contact.lists.add(contact_list)
    for days in (1, 3):
        MessageFactory(
            contact=ann, status="delivered", handed_at=now - timedelta(days=days)
        )
    MessageFactory(contact=bob, status="sent", handed_at=now - timedelta(days=2))
    MessageFactory(contact=cid, status="delivered", handed_at=now - timedelta(days=30))
    return {"list": contact_list, "ann": ann, "bob": bob, "cid": cid}


def launched(people, **fields) -> Campaign:
    campaign = CampaignFactory(lists=[people["list"]], provider="locmem", **fields)
    campaign_launch(campaign=campaign)
    return campaign


def claim(campaign: Campaign):
    return claim_batch(
        campaign_id=campaign.pk,
        provider="locmem",
        after_id=0,
        now=timezone.now(),
        limit=100,
    )


def outcome(campaign: Campaign) -> dict[str, tuple[str, str]]:
    return {
        m.contact.first_name: (m.status, m.error_code)
        for m in Message.objects.filter(campaign=campaign).select_related("contact")
    }


@override_settings(SMS_FREQUENCY_CAP="2 per 7 days")
def test_messages_beyond_the_cap_are_skipped_when_claimed(people):
    campaign = launched(people)

    claimed = claim(campaign)

    assert sorted(m.to for m in claimed.messages) == sorted(
        [people["bob"].phone, people["cid"].phone]
    )
    assert claimed.opted_out == 1
    assert outcome(campaign)["Ann"] == ("failed", "frequency_cap")
    ann = Message.objects.get(campaign=campaign, contact=people["ann"])
    assert ann.error_reason == "Recipient had reached the frequency cap (2 per week)"
    assert ann.attempts == 0


def test_the_cap_is_off_by_default(people):
    campaign = launched(people)
    assert len(claim(campaign).messages) == 3


@override_settings(SMS_FREQUENCY_CAP="2 per 7 days")
def test_a_campaign_may_turn_the_cap_off(people):
    campaign = launched(people, frequency_cap="off")
    assert len(claim(campaign).messages) == 3


def test_a_campaign_may_set_its_own_cap(people):
    campaign = launched(people, frequency_cap="1 per 7 days")
    claim(campaign)
    assert outcome(campaign) == {
        "Ann": ("failed", "frequency_cap"),
        "Bob": ("failed", "frequency_cap"),
        "Cid": ("sending", ""),
    }


@override_settings(SMS_FREQUENCY_CAP="1 per 7 days")
def test_replies_test_sends_and_failures_never_count(people):
    now = timezone.now()
    cid = people["cid"]
    MessageFactory(campaign=None, kind="reply", provider="locmem", contact=cid,
                   status="delivered", handed_at=now)  # fmt: skip
    MessageFactory(campaign=None, kind="test", provider="locmem", contact=cid,
                   status="delivered", handed_at=now)  # fmt: skip
    MessageFactory(contact=cid, status="failed", handed_at=now)
    MessageFactory(contact=cid, status="undelivered", handed_at=now)
    campaign = launched(people)
    claim(campaign)
    assert outcome(campaign)["Cid"] == ("sending", "")


@override_settings(SMS_FREQUENCY_CAP="1 per 7 days")
def test_a_message_being_sent_by_another_campaign_counts(people):
    cid = people["cid"]
    MessageFactory(contact=cid, status="sending", handed_at=None)
    campaign = launched(people)
    claim(campaign)
    assert outcome(campaign)["Cid"] == ("failed", "frequency_cap")


@override_settings(SMS_FREQUENCY_CAP="1 per 7 days")
def test_test_sends_are_never_capped(people, sms_outbox):
    campaign = CampaignFactory(lists=[people["list"]], provider="locmem")
    messages = campaign_send_test(campaign=campaign, numbers=[people["ann"].phone])
    assert [m.kind for m in messages] == ["test"]
    assert Message.objects.get(pk=messages[0].pk).error_code != "frequency_cap"


@override_settings(SMS_FREQUENCY_CAP="2 per 7 days")
def test_a_whole_send_skips_the_capped_and_reports_them(people, sms_outbox):
    campaign = launched(people)
    Dispatcher(campaign.pk).run(deadline=_soon())

    assert sorted(sms.to for sms in sms_outbox) == sorted(
        [people["bob"].phone, people["cid"].phone]
    )
    stats = campaign_stats(campaign=campaign)
    assert stats.skipped_frequency_cap == 1
    # A skipped message says nothing about delivery: not an outcome.
    assert stats.counts["failed"] == 1


# --- Where it shows -----------------------------------------------------------------


@override_settings(SMS_FREQUENCY_CAP="2 per 7 days")
def test_the_estimate_counts_who_is_at_the_cap_now(people):
    estimate = campaign_estimate(body="Hi", lists=[people["list"]], provider="locmem")
    assert (estimate.contacts, estimate.frequency_capped, estimate.recipients) == (
        3,
        1,
        2,
    )
    off = campaign_estimate(
        body="Hi", lists=[people["list"]], provider="locmem", frequency_cap="off"
    )
    assert (off.frequency_capped, off.recipients) == (0, 3)


@override_settings(SMS_FREQUENCY_CAP="2 per 7 days")
def test_the_composer_shows_the_capped_row(admin_client, people):
    from django.core.cache import cache

    cache.clear()
    response = admin_client.post(
        reverse("admin:campaigns_campaign_compose"),
        {"body": "Hi", "provider": "locmem", "lists": [people["list"].pk]},
    )
    audience = response.json()["audience"]
    assert (audience["frequency_capped"], audience["recipients"]) == (1, 2)


@override_settings(SMS_FREQUENCY_CAP="2 per 7 days")
def test_the_send_confirmation_page_names_the_cap(admin_client, people):
    from django.core.cache import cache

    cache.clear()
    campaign = CampaignFactory(lists=[people["list"]], provider="locmem")
    response = admin_client.get(
        reverse("admin:campaigns_campaign_send", args=[campaign.pk])
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "1 at the frequency cap" in html
    assert "2 per week (the default)" in html


@override_settings(SMS_FREQUENCY_CAP="2 per 7 days")
def test_capped_messages_are_not_offered_for_retry(admin_client, people):
    campaign = launched(people)
    claim(campaign)
    Message.objects.filter(campaign=campaign, status="sending").update(
        status="failed", error_code="rejected"
    )
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.COMPLETED)
    html = admin_client.get(
        reverse("admin:campaigns_campaign_retry", args=[campaign.pk])
    ).content.decode()
    assert 'id="confirm-frequency-capped"' in html
    # Bob and Cid failed; Ann was skipped for the cap and is not retried.
    assert re.search(r'id="confirm-recipients"><strong>2</strong>', html)
    assert re.search(r'id="confirm-frequency-capped"><strong>1</strong>', html)


@override_settings(SMS_FREQUENCY_CAP="2 per 7 days")
def test_the_campaign_page_shows_the_skipped(admin_client, people):
    from campaigns.stats import campaign_snapshot_take

    campaign = launched(people)
    claim(campaign)
    campaign_snapshot_take(campaign=campaign)
    html = admin_client.get(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    ).content.decode()
    assert "Not sent: frequency cap" in html


def _soon() -> float:
    import time

    return time.monotonic() + 10
