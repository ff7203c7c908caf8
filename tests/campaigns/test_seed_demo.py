from io import StringIO

import pytest

from django.core.management import call_command

from campaigns.models import Campaign
from contacts.models import Contact, ContactList

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_contacts_list_and_campaign_and_can_run_again():
    out = StringIO()
    call_command("seed_demo", contacts=150, stdout=out)
    assert "150 created" in out.getvalue()
    assert Contact.objects.count() == 150
    demo_list = ContactList.objects.get()
    assert demo_list.contacts.count() == 150
    campaign = Campaign.objects.get()
    assert list(campaign.lists.all()) == [demo_list]

    out = StringIO()
    call_command("seed_demo", contacts=150, stdout=out)
    assert "0 created, 150 already there" in out.getvalue()
    assert Contact.objects.count() == 150
    assert Campaign.objects.count() == 1
