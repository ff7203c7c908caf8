"""The content lock of stored campaigns (campaigns.writes): one rule, content_locked,
for every entry point (API, admin)."""

from datetime import timedelta

import pytest

from django.utils import timezone

from campaigns.actions import campaign_pause, campaign_resume, campaign_schedule
from campaigns.models import Campaign
from campaigns.sending.launch import CampaignError
from campaigns.writes import campaign_update, content_locked
from tests.factories import (
    CampaignFactory,
    ContactListFactory,
    ListMembershipFactory,
)

pytestmark = pytest.mark.django_db


def test_a_campaign_paused_before_it_started_can_change_its_text():
    campaign = CampaignFactory(body="Old", lists=[ListMembershipFactory().contact_list])
    campaign_schedule(campaign=campaign, at=timezone.now() + timedelta(days=1))
    campaign_pause(campaign=campaign)
    new_list = ContactListFactory()

    campaign_update(campaign=campaign, body="New", lists=[new_list])

    campaign.refresh_from_db()
    assert (campaign.status, campaign.started_at) == (Campaign.Status.PAUSED, None)
    assert not content_locked(campaign)
    assert campaign.body == "New"
    assert list(campaign.lists.all()) == [new_list]
    # Resumed, it is scheduled again, with the new text.
    campaign_resume(campaign=campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED


def test_a_campaign_paused_while_sending_cannot_change_its_text():
    campaign = CampaignFactory(
        body="Old", status=Campaign.Status.PAUSED, started_at=timezone.now()
    )

    with pytest.raises(CampaignError, match="can no longer change"):
        campaign_update(campaign=campaign, body="New")

    campaign.refresh_from_db()
    assert content_locked(campaign)
    assert campaign.body == "Old"


@pytest.mark.parametrize(
    "status",
    [Campaign.Status.SENDING, Campaign.Status.COMPLETED, Campaign.Status.CANCELLED],
)
def test_other_states_stay_locked_even_without_a_start(status):
    campaign = CampaignFactory(body="Old", status=status)

    assert content_locked(campaign)
    with pytest.raises(CampaignError):
        campaign_update(campaign=campaign, body="New")
