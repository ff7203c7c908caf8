"""A provider that cannot be used (no credentials, a development backend in
production) is refused at every door, and never stops a worker: its campaign is
paused with the reason and the others go on."""

import re
from datetime import timedelta
from html import unescape
from io import StringIO

import pytest
from rest_framework.test import APIClient

from django.contrib.messages import get_messages
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from campaigns import tasks
from campaigns.actions import campaign_resume
from campaigns.models import Campaign, Message
from campaigns.provider_checks import ProviderUnusable, campaign_pause_for_provider
from campaigns.sending.launch import campaign_launch
from smscampaigns.models import ApiKey, Scope
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    MessageFactory,
)

pytestmark = [pytest.mark.django_db, pytest.mark.urls("smscampaigns.urls")]

Status = Campaign.Status
# The test settings leave Sinch and Plivo without credentials, like the default .env.
SINCH_NEEDS = "SMS provider 'sinch' needs SINCH_SERVICE_PLAN_ID"
PLIVO_NEEDS = "SMS provider 'plivo' needs PLIVO_AUTH_ID"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


@pytest.fixture
def api() -> APIClient:
    _, raw = ApiKey.generate(name="shop integration", scopes=Scope.values)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


@pytest.fixture
def contact_list():
    contact_list = ContactListFactory()
    for name in ["Ada", "Alan"]:
        ContactFactory(first_name=name).lists.add(contact_list)
    return contact_list


def draft(contact_list, provider: str = "sinch", **fields) -> Campaign:
    """A campaign stored before its provider became unusable (the factory skips the
    services' checks, as an older row or a changed .env would)."""
    return CampaignFactory(lists=[contact_list], provider=provider, **fields)


def sending(contact_list, provider: str) -> Campaign:
    campaign = draft(contact_list, provider)
    campaign_launch(campaign=campaign)
    return campaign


def error(response) -> dict:
    return response.json()["error"]


def work_once() -> str:
    out = StringIO()
    call_command("run_worker", "--once", stdout=out)
    return out.getvalue()


# --- REST API --------------------------------------------------------------------


def test_api_create_refuses_a_provider_without_credentials(api, contact_list):
    response = api.post(
        "/api/v1/campaigns/",
        {
            "name": "Spring",
            "body": "Hi!",
            "lists": [contact_list.pk],
            "provider": "sinch",
        },
    )
    assert response.status_code == 400
    body = error(response)
    assert body["code"] == "invalid"
    [message] = body["fields"]["provider"]
    assert message.startswith(SINCH_NEEDS)
    assert "Choose another provider" in message
    assert not Campaign.objects.exists()


def test_api_create_refuses_an_unusable_fallback(api):
    response = api.post(
        "/api/v1/campaigns/",
        {"name": "Spring", "body": "Hi!", "fallback_provider": "plivo"},
    )
    assert response.status_code == 400
    assert error(response)["fields"]["fallback_provider"][0].startswith(PLIVO_NEEDS)
    assert not Campaign.objects.exists()


def test_api_refuses_development_backends_when_they_are_not_allowed(api, settings):
    settings.SMS_ALLOW_DEVELOPMENT_PROVIDERS = False
    response = api.post(
        "/api/v1/campaigns/", {"name": "Spring", "body": "Hi!", "provider": "console"}
    )
    assert response.status_code == 400
    [message] = error(response)["fields"]["provider"]
    assert "SMS provider 'console' is a development backend" in message
    # Without a provider, the default (locmem in the tests) is judged the same way.
    response = api.post("/api/v1/campaigns/", {"name": "Spring", "body": "Hi!"})
    assert response.status_code == 400
    assert (
        "'locmem' is a development backend" in error(response)["fields"]["provider"][0]
    )
    assert not Campaign.objects.exists()


def test_api_update_refuses_switching_to_an_unusable_provider(api, contact_list):
    campaign = draft(contact_list, provider="locmem")
    response = api.patch(f"/api/v1/campaigns/{campaign.pk}/", {"provider": "sinch"})
    assert response.status_code == 400
    assert error(response)["fields"]["provider"][0].startswith(SINCH_NEEDS)
    campaign.refresh_from_db()
    assert campaign.provider == "locmem"


def test_api_update_of_other_fields_keeps_the_stored_provider(api, contact_list):
    campaign = draft(contact_list)
    response = api.patch(f"/api/v1/campaigns/{campaign.pk}/", {"name": "Renamed"})
    assert response.status_code == 200, response.json()
    assert response.json()["provider"] == "sinch"


@pytest.mark.parametrize(
    ("action", "data"),
    [
        ("send", {}),
        ("schedule", {"scheduled_at": "2099-01-01T09:00:00+00:00"}),
        ("test", {"to": ["+12065550100"]}),
    ],
)
def test_api_actions_refuse_a_campaign_whose_provider_cannot_send(
    api, contact_list, sms_outbox, django_capture_on_commit_callbacks, action, data
):
    campaign = draft(contact_list)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/campaigns/{campaign.pk}/{action}/", data)
    assert response.status_code == 409
    assert response["Content-Type"] == "application/json"
    body = error(response)
    assert body["code"] == "provider_unusable"
    assert body["message"].startswith(SINCH_NEEDS)
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT
    assert not Message.objects.exists()
    assert sms_outbox == []


def test_api_resume_is_refused_while_the_provider_still_cannot_send(api, contact_list):
    campaign = sending(contact_list, "sinch")
    campaign_pause_for_provider(campaign_id=campaign.pk, alias="sinch", problem="x")
    response = api.post(f"/api/v1/campaigns/{campaign.pk}/resume/")
    assert response.status_code == 409
    assert error(response)["message"].startswith(SINCH_NEEDS)
    campaign.refresh_from_db()
    assert campaign.status == Status.PAUSED


def test_api_bulk_refuses_an_unusable_provider(api, sms_outbox):
    response = api.post(
        "/api/v1/messages/bulk/",
        {"recipients": ["+12065550100"], "message": "Hi", "provider": "plivo"},
    )
    assert response.status_code == 400
    assert error(response)["fields"]["provider"][0].startswith(PLIVO_NEEDS)
    assert not Campaign.objects.exists()
    assert not Message.objects.exists()


def test_api_test_send_through_a_usable_provider_still_works(
    api, contact_list, sms_outbox, django_capture_on_commit_callbacks
):
    campaign = draft(contact_list, provider="locmem")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/api/v1/campaigns/{campaign.pk}/test/", {"to": ["+12065550100"]}
        )
    assert response.status_code == 202
    assert len(sms_outbox) == 1


# --- Admin -----------------------------------------------------------------------

ADD = reverse("admin:campaigns_campaign_add")


def admin_form(**fields) -> dict:
    return {
        "name": "Spring sale",
        "body": "Hi {first_name|there}!",
        "opt_out_footer": "",
        "provider": "locmem",
        "sender": "",
        "fallback_provider": "",
        **fields,
    }


def action_url(campaign: Campaign, action: str) -> str:
    return reverse(f"admin:campaigns_campaign_{action}", args=[campaign.pk])


def flashed(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def test_admin_offers_only_usable_providers(admin_client, settings):
    html = admin_client.get(ADD).content.decode()
    for alias in ["simulator", "console", "locmem"]:
        assert f'<option value="{alias}"' in html
    for alias in ["sinch", "plivo", "vonage"]:
        assert f'<option value="{alias}"' not in html

    settings.SMS_ALLOW_DEVELOPMENT_PROVIDERS = False
    html = admin_client.get(ADD).content.decode()
    assert '<option value="locmem"' not in html


@pytest.mark.parametrize(
    ("field", "alias", "expected"),
    [("provider", "sinch", SINCH_NEEDS), ("fallback_provider", "plivo", PLIVO_NEEDS)],
)
def test_admin_save_with_an_unusable_provider_is_a_field_error(
    admin_client, field, alias, expected
):
    response = admin_client.post(ADD, admin_form(**{field: alias}))
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors[field][0].startswith(expected)
    assert not Campaign.objects.exists()


def test_admin_shows_a_stored_unusable_provider_as_such(admin_client, contact_list):
    campaign = draft(contact_list)
    response = admin_client.get(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    )
    html = unescape(response.content.decode())
    assert '<option value="sinch" selected>sinch (cannot send now)</option>' in html
    assert SINCH_NEEDS in html


@pytest.mark.parametrize(
    ("action", "verb", "data"),
    [
        ("send", "sent", {}),
        (
            "schedule",
            "scheduled",
            {
                "date": f"{timezone.now().year + 1}-12-01",
                "time": "09:00",
                "time_zone": "UTC",
                "window_start": "",
                "window_end": "",
            },
        ),
        ("test", "tested", {"numbers": "+12065550100"}),
    ],
)
def test_admin_confirmation_pages_refuse_with_the_reason(
    admin_client,
    contact_list,
    sms_outbox,
    django_capture_on_commit_callbacks,
    action,
    verb,
    data,
):
    campaign = draft(contact_list)
    page = admin_client.get(action_url(campaign, action))
    html = unescape(page.content.decode())
    assert page.status_code == 200
    assert 'id="confirm-provider"' in html
    assert SINCH_NEEDS in html
    assert re.search(r'id="confirm-action" value="[^"]*" disabled>', html)

    fingerprint = page.context["fingerprint"]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            action_url(campaign, action), {"fingerprint": fingerprint, **data}
        )
    assert response.status_code == 302
    [(level, text)] = flashed(response)
    assert level == "error"
    assert text.startswith(f"“{campaign}” was not {verb}: {SINCH_NEEDS}")
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT
    assert not Message.objects.exists()
    assert sms_outbox == []


# --- send_campaign ---------------------------------------------------------------


def test_send_campaign_stops_before_launching(contact_list, sms_outbox):
    campaign = draft(contact_list)
    with pytest.raises(CommandError) as raised:
        call_command("send_campaign", str(campaign.pk), stdout=StringIO())
    message = str(raised.value)
    assert message.startswith(f"Campaign {campaign.pk} cannot be sent through sinch:")
    assert SINCH_NEEDS in message
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT
    assert not Message.objects.exists()


def test_send_campaign_pauses_a_sending_campaign_it_cannot_send(contact_list):
    campaign = sending(contact_list, "sinch")
    with pytest.raises(CommandError, match="cannot be sent through sinch"):
        call_command("send_campaign", str(campaign.pk), stdout=StringIO())
    campaign.refresh_from_db()
    assert campaign.status == Status.PAUSED
    assert SINCH_NEEDS in campaign.waiting_reason


# --- Workers ---------------------------------------------------------------------


def test_worker_pauses_the_broken_campaign_and_sends_the_other(
    contact_list, sms_outbox
):
    broken = sending(contact_list, "sinch")
    healthy = sending(contact_list, "locmem")

    output = work_once()

    broken.refresh_from_db()
    healthy.refresh_from_db()
    assert broken.status == Status.PAUSED
    assert broken.waiting_reason.startswith(f"Paused: {SINCH_NEEDS}")
    assert broken.waiting_reason.endswith(
        "Fix the provider's configuration, then resume."
    )
    assert f"Campaign #{broken.pk} paused: Paused: {SINCH_NEEDS}" in output
    assert set(broken.messages.values_list("status", flat=True)) == {"queued"}
    assert healthy.status == Status.COMPLETED
    assert len(sms_outbox) == 2
    # The next round leaves the paused campaign alone.
    work_once()
    broken.refresh_from_db()
    assert broken.status == Status.PAUSED


def test_worker_pauses_a_campaign_whose_dispatch_hits_a_broken_provider(
    contact_list, sms_outbox, monkeypatch
):
    """A provider that breaks mid-send (the dispatcher raising
    ImproperlyConfigured) costs its campaign, not the worker."""
    from campaigns.management.commands import run_worker

    broken = sending(contact_list, "locmem")
    healthy = sending(contact_list, "locmem")
    real_run = run_worker.Dispatcher.run

    def run(self, **kwargs):
        if self.campaign_id == broken.pk:
            raise ImproperlyConfigured("SMS provider 'locmem' lost its key")
        return real_run(self, **kwargs)

    monkeypatch.setattr(run_worker.Dispatcher, "run", run)
    work_once()

    broken.refresh_from_db()
    healthy.refresh_from_db()
    assert broken.status == Status.PAUSED
    assert "SMS provider 'locmem' lost its key" in broken.waiting_reason
    assert healthy.status == Status.COMPLETED


def test_worker_pauses_development_backends_when_they_are_not_allowed(
    contact_list, settings, sms_outbox
):
    campaign = sending(contact_list, "locmem")
    settings.SMS_ALLOW_DEVELOPMENT_PROVIDERS = False
    work_once()
    campaign.refresh_from_db()
    assert campaign.status == Status.PAUSED
    assert "is a development backend" in campaign.waiting_reason
    assert sms_outbox == []


def test_dispatch_task_pauses_the_campaign_instead_of_failing(contact_list, sms_outbox):
    broken = sending(contact_list, "plivo")
    tasks.dispatch_campaign(broken.pk)
    broken.refresh_from_db()
    assert broken.status == Status.PAUSED
    assert PLIVO_NEEDS in broken.waiting_reason
    assert sms_outbox == []


def test_a_fixed_provider_lets_the_paused_campaign_resume(
    contact_list, settings, sms_outbox
):
    campaign = sending(contact_list, "locmem")
    settings.SMS_ALLOW_DEVELOPMENT_PROVIDERS = False
    work_once()
    with pytest.raises(ProviderUnusable):
        campaign_resume(campaign=Campaign.objects.get(pk=campaign.pk))

    settings.SMS_ALLOW_DEVELOPMENT_PROVIDERS = True
    campaign_resume(campaign=Campaign.objects.get(pk=campaign.pk))
    work_once()
    campaign.refresh_from_db()
    assert campaign.status == Status.COMPLETED
    assert campaign.waiting_reason == ""
    assert len(sms_outbox) == 2


def test_the_pause_leaves_a_campaign_that_is_no_longer_sending_alone(contact_list):
    campaign = draft(contact_list)
    assert not campaign_pause_for_provider(
        campaign_id=campaign.pk, alias="sinch", problem="gone"
    )
    campaign.refresh_from_db()
    assert (campaign.status, campaign.waiting_reason) == (Status.DRAFT, "")


def test_a_queued_direct_message_through_a_broken_provider_fails_with_the_reason(
    contact_list, sms_outbox
):
    """A test send queued before its provider broke: the worker's retry of direct
    messages fails it for good instead of dying on it."""
    stuck = MessageFactory(
        kind=Message.Kind.TEST,
        campaign=None,
        contact=None,
        to="+12065550100",
        provider="sinch",
        queued_at=timezone.now() - timedelta(minutes=5),
    )
    healthy = sending(contact_list, "locmem")

    work_once()

    stuck.refresh_from_db()
    assert stuck.status == Message.Status.FAILED
    assert stuck.error_code == "provider_unusable"
    assert stuck.error_reason.startswith(SINCH_NEEDS)
    assert stuck.handed_at is None
    healthy.refresh_from_db()
    assert healthy.status == Status.COMPLETED
