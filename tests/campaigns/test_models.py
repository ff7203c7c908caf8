import uuid

import pytest

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from campaigns.models import Campaign, Message
from tests.factories import CampaignFactory, ContactFactory, MessageFactory

pytestmark = pytest.mark.django_db


def test_one_message_per_campaign_and_contact():
    message = MessageFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        MessageFactory(campaign=message.campaign, contact=message.contact)
    # The same contact in another campaign is fine.
    MessageFactory(contact=message.contact)
    assert Message.objects.filter(contact=message.contact).count() == 2


def test_each_message_gets_its_own_client_reference():
    first, second = MessageFactory(), MessageFactory()
    assert isinstance(first.client_reference, uuid.UUID)
    assert first.client_reference != second.client_reference


def test_new_campaign_uses_the_default_provider(settings):
    settings.SMS_DEFAULT_PROVIDER = "simulator"
    campaign = Campaign.objects.create(name="Launch", body="Hello")
    assert campaign.provider == "simulator"
    assert campaign.status == Campaign.Status.DRAFT


def test_unknown_provider_alias_is_a_validation_error():
    campaign = Campaign(name="Launch", body="Hello", provider="carrier-pigeon")
    with pytest.raises(ValidationError) as exc_info:
        campaign.full_clean()
    assert "carrier-pigeon is not a configured provider" in str(exc_info.value)


def test_status_counts_cover_every_status():
    campaign = CampaignFactory()
    MessageFactory.create_batch(3, campaign=campaign)
    MessageFactory(campaign=campaign, status=Message.Status.DELIVERED)
    MessageFactory(status=Message.Status.DELIVERED)  # another campaign
    counts = campaign.status_counts()
    assert counts["queued"] == 3
    assert counts["delivered"] == 1
    assert counts["failed"] == 0
    assert set(counts) == set(Message.Status.values)


def test_statuses_only_move_forward():
    assert Message.Status.SENT in Message.statuses_below(Message.Status.DELIVERED)
    assert Message.Status.DELIVERED not in Message.statuses_below(Message.Status.SENT)
    # A final outcome does not replace another final outcome.
    assert Message.Status.DELIVERED not in Message.statuses_below(Message.Status.FAILED)
    assert Message.Status.UNKNOWN in Message.statuses_below(Message.Status.SUBMITTED)


def test_deleting_a_contact_keeps_the_campaign_record():
    contact = ContactFactory()
    message = MessageFactory(contact=contact)
    contact.delete()
    message.refresh_from_db()
    assert message.contact is None
    assert message.to
