"""Every entry point (API, admin, send_campaign) applies the lifecycle's one rule:
the disagreements of issue #11 (item 7), each pinned."""

from datetime import timedelta
from io import StringIO

import pytest
from rest_framework.test import APIClient

from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from campaigns.actions import EmptyAudience, campaign_send_now
from campaigns.models import Campaign, Message
from contacts.models import Suppression
from smscampaigns.models import ApiKey, Scope
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    MessageFactory,
)

pytestmark = pytest.mark.django_db

Status = Campaign.Status


@pytest.fixture
def api() -> APIClient:
    _, raw = ApiKey.generate(name="shop integration", scopes=Scope.values)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


@pytest.fixture
def campaign():
    contact_list = ContactListFactory()
    for _ in range(2):
        ContactFactory().lists.add(contact_list)
    return CampaignFactory(lists=[contact_list], provider="locmem")


@pytest.fixture
def empty():
    """Lists whose only member opted out, another who is suppressed: nobody to text."""
    contact_list = ContactListFactory()
    ContactFactory(opted_out_at=timezone.now()).lists.add(contact_list)
    suppressed = ContactFactory()
    suppressed.lists.add(contact_list)
    Suppression.objects.create(phone=suppressed.phone)
    return CampaignFactory(lists=[contact_list], provider="locmem")


def url(campaign: Campaign, action: str = "") -> str:
    return f"/api/v1/campaigns/{campaign.pk}/" + (f"{action}/" if action else "")


# --- Retrying a cancelled campaign ------------------------------------------------


def test_api_retry_failed_of_a_cancelled_campaign_is_409_and_queues_nothing(
    api, campaign
):
    Campaign.objects.filter(pk=campaign.pk).update(status=Status.CANCELLED)
    failed = MessageFactory(campaign=campaign, status="failed", error_code="timeout")

    response = api.post(url(campaign, "retry-failed"))

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "status": 409,
            "code": "conflict",
            "message": f"Campaign {campaign.pk} is cancelled: it cannot be retried",
        }
    }
    failed.refresh_from_db()
    assert failed.status == Message.Status.FAILED
    assert not Message.objects.filter(status=Message.Status.QUEUED).exists()


@pytest.mark.parametrize("status", [Status.DRAFT, Status.SCHEDULED])
def test_api_retry_failed_of_a_campaign_not_started_is_409(api, campaign, status):
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    assert api.post(url(campaign, "retry-failed")).status_code == 409


def test_api_retry_failed_of_a_paused_campaign_keeps_it_paused(api, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(
        status=Status.PAUSED, started_at=timezone.now()
    )
    MessageFactory(campaign=campaign, status="failed", error_code="timeout")
    response = api.post(url(campaign, "retry-failed"))
    assert response.json() == {"queued": 1}
    campaign.refresh_from_db()
    assert campaign.status == Status.PAUSED


# --- An empty audience ----------------------------------------------------------------


def test_api_send_of_an_empty_audience_is_409_and_changes_nothing(api, empty):
    response = api.post(url(empty, "send"))
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict"
    assert error["message"] == (
        f"Campaign {empty.pk} cannot be sent: nobody would get it: its lists and "
        "segments are empty, or everyone in them opted out or is suppressed."
    )
    empty.refresh_from_db()
    assert (empty.status, empty.scheduled_at) == (Status.DRAFT, None)


def test_api_send_of_a_campaign_without_lists_is_409(api):
    campaign = CampaignFactory(provider="locmem")
    response = api.post(url(campaign, "send"))
    assert response.status_code == 409
    assert "it has no lists" in response.json()["error"]["message"]


def test_api_schedule_of_an_empty_audience_is_409(api, empty):
    at = timezone.now() + timedelta(days=1)
    response = api.post(url(empty, "schedule"), {"scheduled_at": at.isoformat()})
    assert response.status_code == 409
    assert (
        "cannot be scheduled: nobody would get it"
        in (response.json()["error"]["message"])
    )


def test_send_campaign_refuses_an_empty_audience(empty, sms_outbox):
    with pytest.raises(CommandError, match="cannot be sent: nobody would get it"):
        call_command("send_campaign", str(empty.pk), stdout=StringIO())
    empty.refresh_from_db()
    assert (empty.status, empty.started_at) == (Status.DRAFT, None)
    assert not Message.objects.exists()


def test_send_campaign_refuses_a_campaign_without_lists(sms_outbox):
    campaign = CampaignFactory(provider="locmem")
    with pytest.raises(CommandError, match="it has no lists"):
        call_command("send_campaign", str(campaign.pk), stdout=StringIO())


def test_the_service_refuses_an_empty_audience(empty):
    with pytest.raises(EmptyAudience):
        campaign_send_now(campaign=empty)


# --- Send now is "Starting" ---------------------------------------------------------


def test_api_send_answers_starting_and_what_is_allowed_now(api, campaign):
    response = api.post(url(campaign, "send"))
    assert response.status_code == 202
    data = response.json()
    assert data["status"] == "scheduled"  # until a worker launches it
    assert data["status_display"] == "Starting"
    assert data["allowed_actions"] == ["schedule", "pause", "cancel"]
    # Sending it now again is refused, as the admin no longer offers it.
    again = api.post(url(campaign, "send"))
    assert again.status_code == 409
    assert "is starting: it cannot be sent" in again.json()["error"]["message"]


@pytest.mark.parametrize(
    ("status", "allowed"),
    [
        (Status.DRAFT, ["send", "schedule", "cancel"]),
        (Status.SENDING, ["pause", "cancel", "retry_failed"]),
        (Status.PAUSED, ["resume", "cancel", "retry_failed"]),
        (Status.COMPLETED, ["retry_failed"]),
        (Status.CANCELLED, []),
        (Status.FAILED, ["retry_failed"]),
    ],
)
def test_api_shows_the_allowed_actions(api, campaign, status, allowed):
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    assert api.get(url(campaign)).json()["allowed_actions"] == allowed


def test_send_campaign_sends_a_paused_campaign_that_never_started(campaign, sms_outbox):
    campaign_send_now(campaign=campaign)
    Campaign.objects.filter(pk=campaign.pk).update(status=Status.PAUSED)
    out = StringIO()
    call_command("send_campaign", str(campaign.pk), "--resume", stdout=out)
    campaign.refresh_from_db()
    assert campaign.status == Status.COMPLETED
    assert len(sms_outbox) == 2


# --- The admin ------------------------------------------------------------------------


def change_url(campaign: Campaign) -> str:
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def progress_url(campaign: Campaign) -> str:
    return reverse("admin:campaigns_campaign_progress", args=[campaign.pk])


def test_after_send_now_the_page_says_starting_and_offers_no_send(
    admin_client, campaign
):
    campaign_send_now(campaign=campaign)
    html = admin_client.get(change_url(campaign)).content.decode()
    assert f"<h1>{campaign.name} (starting)</h1>" in html
    assert 'id="campaign-status" class="campaign-status campaign-status-starting"' in (
        html
    )
    assert 'id="action-send"' not in html
    assert 'id="action-pause"' in html
    changelist = admin_client.get(reverse("admin:campaigns_campaign_changelist"))
    assert "campaign-status-starting" in changelist.content.decode()


def test_the_admin_refuses_sending_a_starting_campaign(admin_client, campaign):
    campaign_send_now(campaign=campaign)
    response = admin_client.get(
        reverse("admin:campaigns_campaign_send", args=[campaign.pk])
    )
    assert response.status_code == 302


def test_the_progress_refresh_carries_the_pages_state(admin_client, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(
        status=Status.COMPLETED,
        started_at=timezone.now(),
        completed_at=timezone.now(),
    )
    data = admin_client.get(progress_url(campaign)).json()
    assert data["status"] == "completed"
    assert data["status_display"] == "Completed"
    assert data["allowed_actions"] == ["retry_failed"]
    assert data["title"] == f"{campaign.name} (completed)"
    assert data["actions"] == ["test", "retry", "duplicate"]

    panel = admin_client.get(progress_url(campaign) + "?format=html").content.decode()
    assert '<template id="dashboard-page"' in panel
    assert f'data-title="{campaign.name} (completed)"' in panel
    assert 'data-actions="action-test action-retry action-duplicate"' in panel
    assert 'id="action-send"' not in panel
