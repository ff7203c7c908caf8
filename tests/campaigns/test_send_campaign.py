from io import StringIO

import pytest

from django.core.management import call_command
from django.core.management.base import CommandError, OutputWrapper

from campaigns.management.commands.send_campaign import Progress
from campaigns.models import Campaign, Message
from campaigns.sending.dispatch import Dispatcher, Step
from providers.backends import locmem
from providers.messages import SendError, SendErrorKind
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign():
    contact_list = ContactListFactory()
    for name in ["Ada", "Alan", "Grace"]:
        ContactFactory(first_name=name).lists.add(contact_list)
    return CampaignFactory(
        lists=[contact_list],
        provider="locmem",
        body="Hello {first_name}! Reply STOP to opt out",
    )


def send(*args) -> str:
    out = StringIO()
    call_command("send_campaign", *[str(a) for a in args], stdout=out)
    return out.getvalue()


def test_send_campaign_launches_sends_and_summarizes(campaign, sms_outbox):
    output = send(campaign.pk)
    assert "Queued 3 messages" in output
    assert "100.0%" in output
    assert f"Campaign #{campaign.pk} completed: 3 messages" in output
    assert "submitted 3" in output
    assert len(sms_outbox) == 3
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    # The admin's campaign list reads the last snapshot: it has the final figures.
    assert campaign.snapshots.latest().counts["submitted"] == 3


def test_running_it_again_sends_nobody_twice(campaign, sms_outbox):
    send(campaign.pk)
    output = send(campaign.pk)
    assert len(sms_outbox) == 3
    assert "completed" in output


def test_dry_run_renders_counts_and_prices_without_sending(
    campaign, sms_outbox, settings
):
    settings.SMS_PRICE_PER_SEGMENT = {
        **settings.SMS_PRICE_PER_SEGMENT,
        "locmem": "0.01",
    }
    output = send(campaign.pk, "--dry-run")
    assert "Recipients: 3 after exclusions" in output
    assert "Segments: 3 in all, up to 1 per message" in output
    assert "Estimated cost: 0.03 USD" in output
    assert "Hello Ada! Reply STOP to opt out" in output
    assert sms_outbox == []
    assert Message.objects.count() == 0


def test_dry_run_reports_unknown_placeholders(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(body="Hi {nickname}")
    output = send(campaign.pk, "--dry-run")
    assert "Unknown placeholder {nickname}" in output


def test_unknown_campaign_is_a_clear_error():
    with pytest.raises(CommandError, match="No campaign with id 999"):
        send(999)


def test_a_campaign_where_nothing_is_accepted_exits_non_zero(campaign):
    locmem.fail_next(
        SendError(
            kind=SendErrorKind.PERMANENT, code="invalid_number", reason="Invalid number"
        ),
        count=3,
    )
    with pytest.raises(CommandError, match="failed"):
        send(campaign.pk)


def test_paused_campaign_needs_resume(campaign, sms_outbox):
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)
    with pytest.raises(CommandError, match="paused"):
        send(campaign.pk)
    send(campaign.pk, "--resume")
    assert len(sms_outbox) == 3


def test_a_waiting_sender_says_what_it_waits_for(campaign):
    out = StringIO()
    dispatcher = Dispatcher(campaign.pk)
    dispatcher.last_step = Step(
        "waiting",
        reason="waiting for messages another sender holds (3 with dispatcher #7)",
    )
    Progress(OutputWrapper(out), total=3).update(campaign.pk, dispatcher)
    assert "(waiting for messages another sender holds (3 with dispatcher #7))" in (
        out.getvalue()
    )
