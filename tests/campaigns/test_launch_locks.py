"""Messages name their campaign and contact without foreign-key constraints in the
database (they cost a launch seconds); launches and deletions lock each other out."""

import threading

import psycopg
import pytest

from django.db import OperationalError, connection, transaction

from campaigns.lifecycle import CampaignError
from campaigns.models import Campaign, Message
from campaigns.sending.launch import campaign_launch
from campaigns.writes import campaign_delete
from contacts.models import Contact
from contacts.services import _MESSAGE_CONTACTS_LOCK, contact_delete, contacts_delete
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    MessageFactory,
)

pytestmark = pytest.mark.django_db

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite lets one transaction write at a time: nothing runs beside another",
)


@pytest.fixture
def elsewhere():
    """A second session on the test database, as another process would hold one."""
    settings = connection.settings_dict
    other = psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
    )
    yield other
    other.rollback()
    other.close()


def _waits(operation) -> bool:
    """Whether ``operation`` waits for a lock held elsewhere (gives up after 200 ms)."""
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '200ms'")
            operation()
    except OperationalError as error:
        return "lock timeout" in str(error)
    return False


def test_deleting_a_contact_sets_its_messages_contact_to_null():
    message = MessageFactory()
    contact_delete(contact=message.contact)
    message.refresh_from_db()
    assert message.contact_id is None
    assert Message.objects.filter(pk=message.pk).exists()


def test_deleting_contacts_in_bulk_sets_their_messages_contact_to_null():
    messages = [MessageFactory(), MessageFactory()]
    contacts_delete(contacts=Contact.objects.filter(pk=messages[0].contact_id))
    assert list(
        Message.objects.filter(pk__in=[m.pk for m in messages])
        .order_by("pk")
        .values_list("contact_id", flat=True)
    ) == [None, messages[1].contact_id]


@postgresql_only
def test_deleting_a_contact_waits_for_a_launch_in_progress(elsewhere):
    contact = ContactFactory()
    elsewhere.execute(
        "SELECT pg_advisory_xact_lock_shared(%s)", [_MESSAGE_CONTACTS_LOCK]
    )

    assert _waits(lambda: contact_delete(contact=contact))
    assert _waits(lambda: Contact.objects.filter(pk=contact.pk).delete())

    elsewhere.rollback()
    contact_delete(contact=contact)
    assert not Contact.objects.filter(pk=contact.pk).exists()


@postgresql_only
def test_a_launch_waits_for_a_deletion_of_contacts_in_progress(elsewhere):
    contact_list = ContactListFactory()
    ContactFactory().lists.add(contact_list)
    campaign = CampaignFactory(lists=[contact_list])
    elsewhere.execute("SELECT pg_advisory_xact_lock(%s)", [_MESSAGE_CONTACTS_LOCK])

    assert _waits(lambda: campaign_launch(campaign=campaign))

    elsewhere.rollback()
    assert campaign_launch(campaign=campaign) == 1


@postgresql_only
def test_launches_do_not_wait_for_each_other(elsewhere):
    contact_list = ContactListFactory()
    ContactFactory().lists.add(contact_list)
    campaign = CampaignFactory(lists=[contact_list])
    elsewhere.execute(
        "SELECT pg_advisory_xact_lock_shared(%s)", [_MESSAGE_CONTACTS_LOCK]
    )

    assert not _waits(lambda: campaign_launch(campaign=campaign))


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_deleting_a_campaign_being_launched_waits_and_then_refuses(elsewhere):
    campaign = CampaignFactory()
    # A launch in progress elsewhere holds the campaign's row until it commits.
    elsewhere.execute(
        "SELECT 1 FROM campaigns_campaign WHERE id = %s FOR UPDATE", [campaign.pk]
    )
    outcome = []

    def delete() -> None:
        try:
            campaign_delete(campaign=Campaign.objects.get(pk=campaign.pk))
            outcome.append("deleted")
        except CampaignError:
            outcome.append("refused")
        finally:
            connection.close()

    deleting = threading.Thread(target=delete)
    deleting.start()
    deleting.join(timeout=0.5)
    assert deleting.is_alive()  # waiting for the launch

    elsewhere.execute(
        "UPDATE campaigns_campaign SET status = %s WHERE id = %s",
        [Campaign.Status.SENDING, campaign.pk],
    )
    elsewhere.commit()
    deleting.join(timeout=10)

    assert outcome == ["refused"]
    assert Campaign.objects.filter(pk=campaign.pk).exists()
