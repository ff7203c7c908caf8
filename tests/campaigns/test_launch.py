import pytest

from campaigns.models import Campaign, Message
from campaigns.sending.launch import CampaignError, campaign_launch
from contacts.models import Suppression
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db


def test_launch_queues_one_message_per_eligible_recipient():
    first, second = ContactListFactory(), ContactListFactory()
    in_both = ContactFactory(first_name="Ada")
    in_both.lists.add(first, second)
    only_second = ContactFactory()
    only_second.lists.add(second)
    opted_out = ContactFactory()
    opted_out.lists.add(first)
    opted_out.opted_out_at = opted_out.created_at
    opted_out.save()
    suppressed = ContactFactory()
    suppressed.lists.add(first)
    Suppression.objects.create(phone=suppressed.phone)
    ContactFactory()  # in no list
    campaign = CampaignFactory(
        lists=[first, second], provider="simulator", sender="+14155550100"
    )

    assert campaign_launch(campaign=campaign) == 2

    messages = Message.objects.filter(campaign=campaign).order_by("contact_id")
    assert [m.contact_id for m in messages] == [in_both.pk, only_second.pk]
    message = messages[0]
    assert (
        message.to,
        message.provider,
        message.sender,
        message.status,
        message.kind,
    ) == (
        in_both.phone,
        "simulator",
        "+14155550100",
        "queued",
        "campaign",
    )
    assert message.time_zone == in_both.time_zone
    assert messages[0].client_reference != messages[1].client_reference
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING
    assert campaign.started_at is not None


def test_launching_twice_creates_nothing_new_but_picks_up_new_members():
    contact_list = ContactListFactory()
    ContactFactory().lists.add(contact_list)
    campaign = CampaignFactory(lists=[contact_list])
    assert campaign_launch(campaign=campaign) == 1
    assert campaign_launch(campaign=campaign) == 0
    ContactFactory().lists.add(contact_list)
    assert campaign_launch(campaign=campaign) == 1
    assert Message.objects.filter(campaign=campaign).count() == 2


def test_a_finished_campaign_cannot_be_launched():
    campaign = CampaignFactory(status=Campaign.Status.CANCELLED)
    with pytest.raises(CampaignError, match="is cancelled"):
        campaign_launch(campaign=campaign)


def test_launch_without_lists_queues_nothing():
    campaign = CampaignFactory()
    assert campaign_launch(campaign=campaign) == 0
