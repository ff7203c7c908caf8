"""A campaign's "send by" time (issue 13): what has not gone out by then ends
"expired" (skip reason), and the vendors' validity fields carry the same deadline."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import responses

from django.utils import timezone

from campaigns.actions import campaign_retry_failed
from campaigns.models import Campaign, Message
from campaigns.sending.claims import claim_batch
from campaigns.sending.dispatch import Dispatcher
from campaigns.sending.scheduling import tick
from campaigns.stats import campaign_stats
from providers import get_provider
from providers.messages import OutboundSms
from tests.campaigns.test_api import api  # noqa: F401
from tests.factories import CampaignFactory, ContactListFactory, MessageFactory
from tests.webhooks.test_views import vendors  # noqa: F401

pytestmark = pytest.mark.django_db


def sending_campaign(send_by):
    campaign = CampaignFactory(
        status=Campaign.Status.SENDING, started_at=timezone.now(), send_by=send_by
    )
    delivered = MessageFactory(campaign=campaign, status=Message.Status.DELIVERED)
    queued = MessageFactory(campaign=campaign, status=Message.Status.QUEUED)
    return campaign, delivered, queued


def test_nothing_is_claimed_after_the_send_by_time():
    now = timezone.now()
    campaign, delivered, queued = sending_campaign(now - timedelta(minutes=1))

    claim = claim_batch(
        campaign_id=campaign.pk, provider="locmem", after_id=0, now=now, limit=10
    )

    assert claim.messages == []
    queued.refresh_from_db()
    assert (queued.status, queued.error_code) == (Message.Status.FAILED, "expired")
    delivered.refresh_from_db()
    assert delivered.status == Message.Status.DELIVERED


def test_before_the_send_by_time_messages_are_claimed_and_carry_it():
    now = timezone.now()
    deadline = now + timedelta(hours=1)
    campaign, _, queued = sending_campaign(deadline)

    claim = claim_batch(
        campaign_id=campaign.pk, provider="locmem", after_id=0, now=now, limit=10
    )

    assert [m.id for m in claim.messages] == [queued.pk]
    assert claim.send_by == deadline


def test_the_dispatcher_hands_the_deadline_to_the_vendor(sms_outbox):
    deadline = timezone.now() + timedelta(hours=1)
    campaign, _, queued = sending_campaign(deadline)
    campaign.provider = "locmem"
    campaign.save(update_fields=["provider"])

    Dispatcher(campaign.pk).run()

    assert [(m.reference, m.expires_at) for m in sms_outbox] == [
        (str(queued.client_reference), deadline)
    ]


def test_the_scheduler_expires_messages_waiting_for_a_window():
    _campaign, _, queued = sending_campaign(timezone.now() - timedelta(seconds=1))
    _on_time, _, still_queued = sending_campaign(timezone.now() + timedelta(days=1))

    tick()

    queued.refresh_from_db()
    still_queued.refresh_from_db()
    assert queued.status == Message.Status.FAILED
    assert queued.error_code == Message.SkipReason.EXPIRED
    assert still_queued.status == Message.Status.QUEUED


def test_expired_unsent_are_skipped_not_failures_and_not_retried():
    campaign, _, _queued = sending_campaign(timezone.now() - timedelta(seconds=1))
    tick()

    stats = campaign_stats(campaign=campaign)
    assert stats.delivery_rate == 1.0
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.COMPLETED)
    campaign.refresh_from_db()
    assert campaign_retry_failed(campaign=campaign) == 0


def test_the_api_takes_a_send_by_time(api):  # noqa: F811
    contact_list = ContactListFactory()
    response = api.post(
        "/api/v1/campaigns/",
        {
            "name": "Flash sale",
            "body": "Today only",
            "lists": [contact_list.pk],
            "send_by": "2030-01-01T18:00:00+01:00",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert Campaign.objects.get().send_by == datetime(2030, 1, 1, 17, tzinfo=UTC)


# --- The vendors' validity fields ---------------------------------------------------


def outbound(expires_at):
    return OutboundSms(
        to="+14155550123", text="Hi", reference="r-1", expires_at=expires_at
    )


def test_vonage_ttl_carries_the_deadline(vendors):  # noqa: F811
    with responses.RequestsMock() as api_mock:
        api_mock.post(
            "https://api.nexmo.com/v1/messages", json={"message_uuid": "u"}, status=202
        )
        get_provider("vonage").send_messages(
            [outbound(timezone.now() + timedelta(hours=2))]
        )
        body = json.loads(api_mock.calls[0].request.body)
    assert 7190 <= body["ttl"] <= 7200


def test_sinch_expire_at_carries_the_deadline(vendors):  # noqa: F811
    deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=5)
    with responses.RequestsMock() as api_mock:
        api_mock.post(
            "https://us.sms.api.sinch.com/xms/v1/plan/batches",
            json={"id": "B"},
            status=201,
        )
        get_provider("sinch").send_messages([outbound(deadline)])
        body = json.loads(api_mock.calls[0].request.body)
    assert body["expire_at"] == deadline.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_plivo_message_expiry_carries_a_deadline_within_its_queue_limit(vendors):  # noqa: F811
    with responses.RequestsMock() as api_mock:
        api_mock.post(
            "https://api.plivo.com/v1/Account/MAXXXXXXXXXXXXXXXXXX/Message/",
            json={"message_uuid": ["u"]},
            status=202,
        )
        plivo = get_provider("plivo")
        plivo.send_messages([outbound(timezone.now() + timedelta(minutes=30))])
        plivo.send_messages([outbound(timezone.now() + timedelta(days=1))])
        soon = json.loads(api_mock.calls[0].request.body)
        later = json.loads(api_mock.calls[1].request.body)
    assert 1790 <= soon["message_expiry"] <= 1800
    assert "message_expiry" not in later
