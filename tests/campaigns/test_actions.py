from datetime import timedelta
from io import StringIO

import pytest

from django.core.management import call_command
from django.utils import timezone

from campaigns.actions import (
    campaign_cancel,
    campaign_pause,
    campaign_resume,
    campaign_retry_failed,
    campaign_schedule,
    campaign_send_now,
)
from campaigns.models import Campaign, Message
from campaigns.sending.launch import CampaignError, campaign_launch
from providers.backends import locmem
from providers.messages import SendError, SendErrorKind
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def campaign():
    contact_list = ContactListFactory()
    for _ in range(3):
        ContactFactory().lists.add(contact_list)
    return CampaignFactory(lists=[contact_list], provider="locmem")


def work_once():
    call_command("run_worker", "--once", stdout=StringIO())


def test_send_now_is_picked_up_by_the_worker(campaign, sms_outbox):
    campaign_send_now(campaign=campaign)
    assert campaign.status == Campaign.Status.SCHEDULED
    assert sms_outbox == []  # the request that said "send" did not send
    work_once()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert len(sms_outbox) == 3


def test_a_scheduled_campaign_waits_for_its_time(campaign, sms_outbox):
    campaign_schedule(campaign=campaign, at=timezone.now() + timedelta(hours=1))
    work_once()
    assert sms_outbox == []
    Campaign.objects.filter(pk=campaign.pk).update(
        scheduled_at=timezone.now() - timedelta(seconds=1)
    )
    work_once()
    assert len(sms_outbox) == 3


def test_schedule_needs_a_time_zone(campaign):
    with pytest.raises(CampaignError, match="time zone"):
        campaign_schedule(campaign=campaign, at=timezone.now().replace(tzinfo=None))


def test_pause_resume_and_no_duplicates(campaign, sms_outbox):
    campaign_launch(campaign=campaign)
    campaign_pause(campaign=campaign)
    work_once()
    assert sms_outbox == []
    campaign_resume(campaign=campaign)
    work_once()
    work_once()
    assert len(sms_outbox) == 3


def test_cancel_marks_unsent_messages_and_cannot_be_undone(campaign, sms_outbox):
    campaign_launch(campaign=campaign)
    campaign_cancel(campaign=campaign)
    work_once()
    assert sms_outbox == []
    assert set(Message.objects.values_list("status", "error_code")) == {
        ("failed", "cancelled")
    }
    with pytest.raises(CampaignError, match="cannot be resumed"):
        campaign_resume(campaign=campaign)


def test_retry_failed_sends_them_again(campaign, sms_outbox):
    locmem.fail_next(
        SendError(
            kind=SendErrorKind.PERMANENT, code="invalid_number", reason="Invalid"
        ),
        count=1,
    )
    campaign_launch(campaign=campaign)
    work_once()
    assert Message.objects.filter(status="failed").count() == 1
    assert campaign_retry_failed(campaign=campaign) == 1
    work_once()
    assert Message.objects.filter(status="submitted").count() == 3
    assert len(sms_outbox) == 3


def test_retry_leaves_unknown_unless_asked(campaign):
    campaign_launch(campaign=campaign)
    Message.objects.update(status=Message.Status.UNKNOWN)
    assert campaign_retry_failed(campaign=campaign) == 0
    assert campaign_retry_failed(campaign=campaign, include_unknown=True) == 3


def test_a_reply_that_hit_a_provider_error_is_retried_by_the_worker(
    sms_outbox, settings
):
    from campaigns.sending.direct import message_create_direct

    settings.SMS_RETRY_BASE_DELAY = 0.0
    locmem.fail_next(SendError(kind=SendErrorKind.NOT_SENT, code="503", reason="down"))
    message = message_create_direct(
        to="+14155550123",
        body="You are unsubscribed.",
        provider="locmem",
        kind=Message.Kind.REPLY,
    )
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.next_attempt_at is not None
    work_once()
    message.refresh_from_db()
    assert message.status == Message.Status.SUBMITTED
    assert [m.text for m in sms_outbox] == ["You are unsubscribed."]


def test_a_reply_whose_first_send_never_ran_is_sent_by_the_worker(sms_outbox):
    from datetime import timedelta as _timedelta

    from django.utils import timezone as _timezone

    message = Message.objects.create(
        kind=Message.Kind.REPLY,
        to="+14155550123",
        body="You are unsubscribed.",
        provider="locmem",
        queued_at=_timezone.now() - _timedelta(minutes=2),
    )
    work_once()
    message.refresh_from_db()
    assert message.status == Message.Status.SUBMITTED
    assert len(sms_outbox) == 1


def test_retrying_a_cancelled_campaign_is_refused(campaign, sms_outbox):
    # It used to queue the cancelled messages again, stranded for ever.
    campaign_launch(campaign=campaign)
    campaign_cancel(campaign=campaign)
    with pytest.raises(CampaignError, match="is cancelled: it cannot be retried"):
        campaign_retry_failed(campaign=campaign)
    work_once()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED
    assert not campaign.messages.filter(status=Message.Status.QUEUED).exists()
    assert sms_outbox == []
