"""The campaign actions in the admin: buttons, confirmation pages and what they do."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape

import pytest

from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.actions import campaign_schedule, campaign_send_now
from campaigns.models import Campaign, Message
from campaigns.sending.launch import CampaignError
from campaigns.writes import campaign_update
from contacts.models import Suppression
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    MessageFactory,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("prices"),
]

Status = Campaign.Status
ALL_ACTIONS = [
    "test",
    "send",
    "schedule",
    "pause",
    "resume",
    "cancel",
    "retry",
    "duplicate",
]
NEXT_YEAR = timezone.now().year + 1


@pytest.fixture
def prices(settings):
    settings.SMS_PRICE_PER_SEGMENT = {"locmem": Decimal("0.05")}
    settings.SMS_PRICE_CURRENCY = "USD"


@pytest.fixture
def campaign():
    """Three recipients, after one opted-out, one suppressed contact and one
    contact in both lists."""
    first, second = ContactListFactory(), ContactListFactory()
    ada = ContactFactory(first_name="Ada")
    ada.lists.add(first, second)
    for _ in range(2):
        ContactFactory().lists.add(first)
    ContactFactory(opted_out_at=timezone.now()).lists.add(first)
    suppressed = ContactFactory()
    suppressed.lists.add(second)
    Suppression.objects.create(phone=suppressed.phone)
    return CampaignFactory(
        lists=[first, second], provider="locmem", body="Hi {first_name|there}!"
    )


def action_url(campaign: Campaign, action: str) -> str:
    return reverse(f"admin:campaigns_campaign_{action}", args=[campaign.pk])


def change_url(campaign: Campaign) -> str:
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def flashed(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def schedule_fields(**fields) -> dict:
    return {
        "date": f"{NEXT_YEAR}-12-01",
        "time": "09:00",
        "time_zone": "America/New_York",
        "window_start": "",
        "window_end": "",
        **fields,
    }


def fingerprint(html: str) -> str:
    match = re.search(
        r'name="fingerprint" id="confirm-fingerprint" value="(\w+)"', html
    )
    assert match, "no fingerprint on the page"
    return match[1]


def confirm(client, campaign: Campaign, action: str, data: dict | None = None):
    """Open the action's page, then submit its form as a user would."""
    page = client.get(action_url(campaign, action))
    assert page.status_code == 200, page
    fields = {"fingerprint": fingerprint(page.content.decode()), **(data or {})}
    return client.post(action_url(campaign, action), fields)


def figure(html: str, html_id: str) -> str:
    match = re.search(rf'id="{html_id}"><strong>([^<]*)</strong>', html)
    assert match, f"#{html_id} not on the page"
    return match[1]


def launched(status: str = Status.SENDING, **messages: int) -> Campaign:
    """A started campaign with ``messages`` of each status (failed_opted_out:
    failed because the recipient opted out)."""
    campaign = CampaignFactory(
        provider="locmem", status=status, started_at=timezone.now()
    )
    for status_name, count in messages.items():
        fields = {"status": status_name}
        if status_name == "failed_opted_out":
            fields = {
                "status": Message.Status.FAILED,
                "error_code": Message.SkipReason.OPTED_OUT,
            }
        MessageFactory.create_batch(count, campaign=campaign, **fields)
    return campaign


# --- Buttons -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        (Status.DRAFT, {"test", "send", "schedule", "cancel", "duplicate"}),
        (
            Status.SCHEDULED,
            {"test", "send", "schedule", "pause", "cancel", "duplicate"},
        ),
        (Status.SENDING, {"test", "pause", "cancel", "retry", "duplicate"}),
        (Status.PAUSED, {"test", "resume", "cancel", "retry", "duplicate"}),
        (Status.COMPLETED, {"test", "retry", "duplicate"}),
        (Status.CANCELLED, {"test", "duplicate"}),
        (Status.FAILED, {"test", "retry", "duplicate"}),
    ],
)
def test_the_campaign_page_shows_the_buttons_its_status_allows(
    admin_client, status, shown
):
    campaign = CampaignFactory(status=status)
    html = admin_client.get(change_url(campaign)).content.decode()
    for action in ALL_ACTIONS:
        assert (f'id="action-{action}"' in html) == (action in shown), action
    for action in shown:
        assert f'href="{action_url(campaign, action)}"' in html


def test_the_add_page_has_no_action_buttons(admin_client):
    response = admin_client.get(reverse("admin:campaigns_campaign_add"))
    assert response.status_code == 200
    assert 'id="action-' not in response.content.decode()


# --- Send now ------------------------------------------------------------------------


def test_send_page_restates_audience_cost_and_text(admin_client, campaign):
    response = admin_client.get(action_url(campaign, "send"))
    assert response.status_code == 200
    html = response.content.decode()
    assert figure(html, "confirm-recipients") == "3"
    assert (
        figure(html, "confirm-cost") == "$0.15"
    )  # 3 recipients, 1 segment each, 0.05 a segment
    assert "1 opted out, 1 on the suppression list; 1 duplicates across lists" in html
    assert "GSM-7" in html
    assert ">Hi Ada!</textarea>" in html
    assert "locmem" in html
    assert 'id="confirm-action"' in html
    assert 'value="Yes, send it now">' in html  # not disabled
    # Breadcrumbs lead back to the campaign.
    assert f'<a href="{change_url(campaign)}">{campaign.name}</a>' in html


def test_send_now_queues_the_campaign(admin_client, campaign):
    response = confirm(admin_client, campaign, "send")
    assert response.status_code == 302
    assert response.url == change_url(campaign)
    campaign.refresh_from_db()
    assert campaign.status == Status.SCHEDULED
    assert campaign.scheduled_at <= timezone.now()
    [(level, text)] = flashed(response)
    assert level == "success"
    assert "queued to send now" in text
    assert "A worker starts sending within seconds." in text
    assert "manage.py" not in text  # marketers are not told to run commands


def test_send_is_refused_for_a_completed_campaign(admin_client):
    campaign = CampaignFactory(status=Status.COMPLETED)
    for method in (admin_client.get, admin_client.post):
        response = method(action_url(campaign, "send"))
        assert response.status_code == 302
        assert response.url == change_url(campaign)
        level, text = flashed(response)[-1]
        assert level == "error"
        assert "completed: it cannot be sent" in text
    campaign.refresh_from_db()
    assert campaign.status == Status.COMPLETED


def test_send_is_disabled_and_refused_when_the_text_has_problems(
    admin_client, campaign
):
    Campaign.objects.filter(pk=campaign.pk).update(body="Your size: {shoe_size}")
    html = admin_client.get(action_url(campaign, "send")).content.decode()
    assert 'id="confirm-problems"' in html
    assert "Unknown placeholder {shoe_size}" in html
    assert 'value="Yes, send it now" disabled>' in html

    response = confirm(admin_client, campaign, "send")
    [(level, text)] = flashed(response)
    assert level == "error"
    assert "Unknown placeholder" in text
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT


@pytest.mark.parametrize("action", ["send", "schedule"])
def test_a_campaign_without_lists_cannot_be_sent_or_scheduled(admin_client, action):
    campaign = CampaignFactory(provider="locmem", body="Hi")
    html = admin_client.get(action_url(campaign, action)).content.decode()
    assert "This campaign has no lists or segments yet" in html
    assert figure(html, "confirm-recipients") == "0"
    assert re.search(r'id="confirm-action" value="[^"]+" disabled>', html)

    response = confirm(admin_client, campaign, action, schedule_fields())
    assert response.status_code == 302
    [(level, text)] = flashed(response)
    assert level == "error"
    assert "it has no lists" in text
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT
    assert campaign.scheduled_at is None


@pytest.mark.parametrize("action", ["send", "schedule"])
def test_an_empty_audience_cannot_be_sent_or_scheduled(admin_client, action):
    contact_list = ContactListFactory()
    ContactFactory(opted_out_at=timezone.now()).lists.add(contact_list)
    campaign = CampaignFactory(lists=[contact_list], provider="locmem")
    html = admin_client.get(action_url(campaign, action)).content.decode()
    assert "Nobody would get this campaign" in html
    assert figure(html, "confirm-recipients") == "0"
    assert re.search(r'id="confirm-action" value="[^"]+" disabled>', html)

    response = confirm(admin_client, campaign, action, schedule_fields())
    [(level, text)] = flashed(response)
    assert level == "error"
    assert "nobody would get it" in text
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT


# --- Confirming what was shown -------------------------------------------------------


def test_send_now_confirms_the_audience_and_text_that_were_shown(admin_client):
    small, big = ContactListFactory(), ContactListFactory()
    ContactFactory().lists.add(small)
    for _ in range(30):
        ContactFactory().lists.add(big)
    campaign = CampaignFactory(lists=[small], provider="locmem", body="Hi")
    shown = admin_client.get(action_url(campaign, "send")).content.decode()
    assert figure(shown, "confirm-recipients") == "1"
    # A colleague changes the lists and the text before the marketer clicks.
    campaign_update(campaign=campaign, lists=[big], body="A much longer text " * 10)

    response = admin_client.post(
        action_url(campaign, "send"), {"fingerprint": fingerprint(shown)}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="confirm-changed"' in html
    assert (
        "This campaign changed since you opened this page: check the figures again"
        in html
    )
    assert figure(html, "confirm-recipients") == "30"  # the new figures to check
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT

    # Confirming the page as it is now sends.
    response = admin_client.post(
        action_url(campaign, "send"), {"fingerprint": fingerprint(html)}
    )
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == Status.SCHEDULED


def test_a_confirmation_without_its_fingerprint_does_nothing(admin_client, campaign):
    response = admin_client.post(action_url(campaign, "send"))
    assert response.status_code == 200
    assert 'id="confirm-changed"' in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT


def test_a_growing_list_is_a_change_too(admin_client, campaign):
    shown = admin_client.get(action_url(campaign, "schedule")).content.decode()
    ContactFactory().lists.add(campaign.lists.first())
    response = admin_client.post(
        action_url(campaign, "schedule"),
        {**schedule_fields(time="07:45"), "fingerprint": fingerprint(shown)},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="confirm-changed"' in html
    assert figure(html, "confirm-recipients") == "4"
    assert 'value="07:45"' in html  # what was typed is kept, to submit again
    assert "errorlist" not in html
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT


def test_retry_confirms_the_failures_that_were_counted(admin_client):
    campaign = launched(Status.COMPLETED, failed=2)
    shown = admin_client.get(action_url(campaign, "retry")).content.decode()
    MessageFactory(campaign=campaign, status=Message.Status.FAILED)
    response = admin_client.post(
        action_url(campaign, "retry"), {"fingerprint": fingerprint(shown)}
    )
    assert response.status_code == 200
    assert figure(response.content.decode(), "confirm-recipients") == "3"
    assert not Message.objects.filter(campaign=campaign, status="queued").exists()


def test_pausing_a_sending_campaign_is_not_upset_by_its_progress(admin_client):
    # Messages go out between the page and the click: the page is still the same.
    campaign = launched(queued=3)
    shown = admin_client.get(action_url(campaign, "pause")).content.decode()
    Message.objects.filter(pk=Message.objects.filter(campaign=campaign)[0].pk).update(
        status=Message.Status.SENT, submitted_at=timezone.now()
    )
    response = admin_client.post(
        action_url(campaign, "pause"), {"fingerprint": fingerprint(shown)}
    )
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == Status.PAUSED


def test_a_campaign_that_started_meanwhile_cannot_be_scheduled(admin_client, campaign):
    shown = admin_client.get(action_url(campaign, "schedule")).content.decode()
    Campaign.objects.filter(pk=campaign.pk).update(
        status=Status.SENDING, started_at=timezone.now()
    )
    response = admin_client.post(
        action_url(campaign, "schedule"),
        {**schedule_fields(), "fingerprint": fingerprint(shown)},
    )
    assert response.status_code == 302
    [(level, text)] = flashed(response)
    assert level == "error"
    assert "sending: it cannot be scheduled" in text


# --- Test sends -----------------------------------------------------------------------


def test_test_page_previews_the_text_as_it_goes_out(admin_client, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(
        opt_out_footer="Reply STOP to opt out"
    )
    response = admin_client.get(action_url(campaign, "test"))
    assert response.status_code == 200
    html = response.content.decode()
    assert ">Hi Ada!\nReply STOP to opt out</textarea>" in html
    assert "29 characters, 1 segment, GSM-7" in html
    assert 'id="id_numbers"' in html


def test_test_send_texts_the_numbers(
    admin_client, campaign, sms_outbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = confirm(
            admin_client,
            campaign,
            "test",
            {"numbers": "(415) 555-0199\n+1 212 555 0198, +14155550199"},
        )
    assert response.status_code == 302
    assert response.url == change_url(campaign)
    assert sorted(sms.to for sms in sms_outbox) == ["+12125550198", "+14155550199"]
    assert {sms.text for sms in sms_outbox} == {"Hi Ada!"}
    [(level, text)] = flashed(response)
    assert level == "success"
    # The numbers the marketer typed, as they are: their own phones.
    assert "+14155550199" in text
    assert "+12125550198" in text
    for message in Message.objects.filter(kind=Message.Kind.TEST):
        assert reverse("admin:campaigns_message_change", args=[message.pk]) in text


def test_test_send_refuses_opted_out_numbers(
    admin_client, campaign, sms_outbox, django_capture_on_commit_callbacks
):
    opted_out = ContactFactory(phone="+14155550177", opted_out_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        response = confirm(
            admin_client,
            campaign,
            "test",
            {"numbers": f"+14155550100\n{opted_out.phone}"},
        )
    assert response.status_code == 200
    html = response.content.decode()
    assert "+14155550177 opted out or is on the suppression list" in html
    assert sms_outbox == []
    assert not Message.objects.exists()


def test_test_send_names_invalid_numbers(admin_client, campaign, sms_outbox):
    response = confirm(
        admin_client, campaign, "test", {"numbers": "+14155550100, 12345"}
    )
    assert response.status_code == 200
    assert "Not a valid phone number: “12345”" in response.content.decode()
    assert sms_outbox == []


# --- Schedule ------------------------------------------------------------------------


def schedule(client, campaign, **fields):
    return confirm(client, campaign, "schedule", schedule_fields(**fields))


def test_schedule_page_offers_the_fields_and_restates_the_audience(
    admin_client, campaign
):
    html = admin_client.get(action_url(campaign, "schedule")).content.decode()
    for html_id in (
        "id_date",
        "id_time",
        "id_time_zone",
        "id_window_start",
        "id_window_end",
        "id_weekdays_0",
        "id_weekdays_6",
    ):
        assert f'id="{html_id}"' in html
    assert '<option value="UTC" selected>' in html  # settings.TIME_ZONE
    assert 'data-browser-default="true"' in html
    assert "campaigns/action_schedule.js" in html
    assert figure(html, "confirm-recipients") == "3"
    assert figure(html, "confirm-cost") == "$0.15"


def test_schedule_reads_the_time_in_the_chosen_zone_and_stores_the_window(
    admin_client, campaign
):
    response = schedule(
        admin_client,
        campaign,
        window_start="09:00",
        window_end="20:00",
        weekdays=["0", "1", "2", "3", "4"],
    )
    assert response.status_code == 302, response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Status.SCHEDULED
    assert campaign.scheduled_at == datetime(NEXT_YEAR, 12, 1, 14, 0, tzinfo=UTC)
    assert campaign.send_window == {
        "start": "09:00",
        "end": "20:00",
        "weekdays": [0, 1, 2, 3, 4],
        "time_zone": "America/New_York",
    }
    [(level, text)] = flashed(response)
    assert level == "success"
    assert f"Wed 1 Dec {NEXT_YEAR}, 09:00 (America/New_York)" in text
    assert "09:00\u201320:00 Mon\u2013Fri" in text


def test_rescheduling_moves_the_time_and_clears_the_window(admin_client, campaign):
    schedule(
        admin_client, campaign, window_start="09:00", window_end="20:00", weekdays=["0"]
    )
    page = admin_client.get(action_url(campaign, "schedule")).content.decode()
    assert "is scheduled for" in page
    assert 'value="09:00"' in page  # the current window is filled in

    response = schedule(admin_client, campaign, time="18:30", time_zone="UTC")
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == Status.SCHEDULED
    assert campaign.scheduled_at == datetime(NEXT_YEAR, 12, 1, 18, 30, tzinfo=UTC)
    assert not campaign.send_window


def test_schedule_refuses_a_past_time(admin_client, campaign):
    yesterday = timezone.now() - timedelta(days=1)
    response = schedule(
        admin_client, campaign, date=f"{yesterday:%Y-%m-%d}", time_zone="UTC"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "has already passed" in html
    assert "Send now" in html
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT
    assert campaign.scheduled_at is None


def test_schedule_refuses_a_time_the_clocks_skip(admin_client, campaign):
    # Clocks in New York jump from 02:00 to 03:00 on the second Sunday of March.
    march = datetime(NEXT_YEAR, 3, 8)
    second_sunday = march + timedelta(days=(6 - march.weekday()) % 7)
    response = schedule(
        admin_client, campaign, date=f"{second_sunday:%Y-%m-%d}", time="02:30"
    )
    assert response.status_code == 200
    assert "02:30 does not exist" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT


def test_quiet_hours_need_a_start_and_an_end(admin_client, campaign):
    response = schedule(admin_client, campaign, window_start="09:00", weekdays=["0"])
    assert response.status_code == 200
    assert "Give both a start and an end time" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT
    assert not campaign.send_window


def test_schedule_is_refused_once_sending(admin_client):
    campaign = launched(queued=1)
    response = admin_client.post(action_url(campaign, "schedule"))
    assert response.status_code == 302
    [(level, text)] = flashed(response)
    assert level == "error"
    assert "sending: it cannot be scheduled" in text
    campaign.refresh_from_db()
    assert campaign.status == Status.SENDING


# --- Pause, resume, cancel -------------------------------------------------------------


def test_pause_page_restates_progress_and_remaining_cost(admin_client):
    campaign = launched(queued=4, delivered=2, failed=1)
    Message.objects.filter(campaign=campaign, status="delivered").update(
        submitted_at=timezone.now(), segments=2, price=Decimal("0.10"), currency="USD"
    )
    response = admin_client.get(action_url(campaign, "pause"))
    assert response.status_code == 200
    html = response.content.decode()
    assert figure(html, "confirm-recipients") == "7"
    # 4 waiting, 2 segments each (the average of those sent), 0.05 a segment
    assert figure(html, "confirm-cost") == "$0.40"
    assert "$0.20" in html  # cost so far


def test_pause_stops_a_sending_campaign(admin_client):
    campaign = launched(queued=2)
    response = confirm(admin_client, campaign, "pause")
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == Status.PAUSED
    [(level, text)] = flashed(response)
    assert level == "success"
    assert "is paused" in text


def test_pausing_a_draft_is_refused(admin_client, campaign):
    for method in (admin_client.get, admin_client.post):
        response = method(action_url(campaign, "pause"))
        assert response.status_code == 302
        level, text = flashed(response)[-1]
        assert level == "error"
        assert "draft: it cannot be paused" in text
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT


def test_pause_page_of_a_scheduled_campaign_uses_the_estimate(admin_client, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(
        status=Status.SCHEDULED, scheduled_at=timezone.now() + timedelta(days=1)
    )
    html = admin_client.get(action_url(campaign, "pause")).content.decode()
    assert figure(html, "confirm-recipients") == "3"
    assert figure(html, "confirm-cost") == "$0.15"


def test_resume_carries_on(admin_client):
    campaign = launched(Status.PAUSED, queued=3)
    html = admin_client.get(action_url(campaign, "resume")).content.decode()
    assert figure(html, "confirm-recipients") == "3"
    response = confirm(admin_client, campaign, "resume")
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == Status.SENDING
    [(level, text)] = flashed(response)
    assert level == "success"
    assert "sending again" in text


def test_cancel_explains_and_stops_for_good(admin_client):
    campaign = launched(queued=3, delivered=1)
    html = admin_client.get(action_url(campaign, "cancel")).content.decode()
    assert "The 3 queued messages will not be sent" in html
    assert "This cannot be undone" in html
    assert figure(html, "confirm-recipients") == "4"

    response = confirm(admin_client, campaign, "cancel")
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == Status.CANCELLED
    assert not Message.objects.filter(campaign=campaign, status="queued").exists()
    [(level, _text)] = flashed(response)
    assert level == "success"


def test_cancelling_a_completed_campaign_changes_nothing(admin_client):
    campaign = launched(Status.COMPLETED, delivered=1)
    response = admin_client.post(action_url(campaign, "cancel"))
    assert response.status_code == 302
    [(level, _text)] = flashed(response)
    assert level == "error"
    campaign.refresh_from_db()
    assert campaign.status == Status.COMPLETED


# --- Retry -------------------------------------------------------------------------------


def test_retry_page_counts_only_retryable_failures(admin_client):
    campaign = launched(
        Status.COMPLETED, delivered=2, failed=2, failed_opted_out=1, unknown=1
    )
    response = admin_client.get(action_url(campaign, "retry"))
    assert response.status_code == 200
    html = response.content.decode()
    assert figure(html, "confirm-recipients") == "2"
    assert figure(html, "confirm-cost") == "$0.10"
    assert 'id="id_include_unknown"' in html
    assert "they may have gone out once" in html


def test_retry_requeues_failed_but_not_opted_out_messages(admin_client):
    campaign = launched(
        Status.COMPLETED, delivered=2, failed=2, failed_opted_out=1, unknown=1
    )
    response = confirm(admin_client, campaign, "retry")
    assert response.status_code == 302
    [(level, text)] = flashed(response)
    assert level == "success"
    assert text.startswith("2 messages queued again.")
    messages = Message.objects.filter(campaign=campaign)
    assert messages.filter(status="queued").count() == 2
    assert (
        messages.filter(
            status="failed", error_code=Message.SkipReason.OPTED_OUT
        ).count()
        == 1
    )
    assert messages.filter(status="unknown").count() == 1
    campaign.refresh_from_db()
    assert campaign.status == Status.SENDING


def test_retry_can_include_messages_of_unknown_fate(admin_client):
    campaign = launched(Status.FAILED, failed=1, unknown=2)
    response = confirm(admin_client, campaign, "retry", {"include_unknown": "on"})
    [(_level, text)] = flashed(response)
    assert text.startswith("3 messages queued again.")
    assert not Message.objects.filter(campaign=campaign, status="unknown").exists()


def test_retry_is_refused_for_a_cancelled_campaign(admin_client):
    campaign = launched(Status.CANCELLED, failed=1)
    response = admin_client.post(action_url(campaign, "retry"))
    [(level, text)] = flashed(response)
    assert level == "error"
    assert "cancelled: it cannot be retried" in text
    assert Message.objects.get(campaign=campaign).status == Message.Status.FAILED


def test_retry_with_nothing_to_retry_is_disabled(admin_client):
    campaign = launched(Status.COMPLETED, delivered=1)
    html = admin_client.get(action_url(campaign, "retry")).content.decode()
    assert "has no failed messages to retry" in html
    assert 'value="Retry" disabled>' in html


# --- Access and speed --------------------------------------------------------------------


@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_non_staff_users_are_sent_to_the_login_page(client, campaign, action):
    client.force_login(User.objects.create_user("someone", password="x"))
    response = client.post(action_url(campaign, action))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT


@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_staff_without_change_permission_are_refused(client, campaign, action):
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client.force_login(user)
    assert client.get(action_url(campaign, action)).status_code == 403
    assert client.post(action_url(campaign, action)).status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT


@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_an_unknown_campaign_is_not_found(admin_client, action):
    response = admin_client.get(
        reverse(f"admin:campaigns_campaign_{action}", args=[999_999])
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("action", "status"),
    [
        ("test", Status.DRAFT),
        ("send", Status.DRAFT),
        ("schedule", Status.SCHEDULED),
        ("pause", Status.SENDING),
        ("resume", Status.PAUSED),
        ("cancel", Status.SENDING),
        ("cancel", Status.DRAFT),
        ("retry", Status.COMPLETED),
        ("duplicate", Status.SENDING),
    ],
)
def test_confirmation_pages_take_few_queries(
    admin_client, django_assert_max_num_queries, action, status
):
    contact_list = ContactListFactory()
    contacts = ContactFactory.create_batch(30, attributes={"city": "Oslo"})
    for contact in contacts:
        contact.lists.add(contact_list)
    campaign = CampaignFactory(
        lists=[contact_list],
        provider="locmem",
        status=status,
        body="Hi {first_name|there} from {city}",
        scheduled_at=timezone.now() + timedelta(days=1),
    )
    if status in (Status.SENDING, Status.PAUSED, Status.COMPLETED):
        Campaign.objects.filter(pk=campaign.pk).update(started_at=timezone.now())
        for index, contact in enumerate(contacts):
            MessageFactory(
                campaign=campaign,
                contact=contact,
                status=["queued", "delivered", "failed"][index % 3],
            )
    # 16: the estimate reads the campaign's text variants too (one query).
    with django_assert_max_num_queries(16):
        response = admin_client.get(action_url(campaign, action))
    assert response.status_code == 200


def test_a_refusal_by_the_service_becomes_an_error_message(
    admin_client, campaign, monkeypatch
):
    # The campaign may change between the page and the click (a worker started it).
    def started_meanwhile(*, campaign):
        raise CampaignError(
            f"Campaign {campaign.pk} is sending: it cannot be scheduled"
        )

    monkeypatch.setattr("campaigns.admin.actions.campaign_send_now", started_meanwhile)
    response = confirm(admin_client, campaign, "send")
    assert response.status_code == 302
    [(level, text)] = flashed(response)
    assert level == "error"
    assert "it cannot be scheduled" in text


def test_actions_need_the_csrf_token(admin_user, campaign):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(action_url(campaign, "send")).status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT


# --- Contact data and permissions ----------------------------------------------------


def staff_user(*codenames: str) -> User:
    user = User.objects.create_user(
        f"staff{User.objects.count()}", password="x", is_staff=True
    )
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def zed_campaign():
    contact_list = ContactListFactory()
    ContactFactory(
        phone="+14155551234", first_name="Zed", attributes={"code": "Z-42"}
    ).lists.add(contact_list)
    return CampaignFactory(
        lists=[contact_list],
        provider="locmem",
        body="Hi {first_name|there} {phone} {code|none}",
    )


@pytest.mark.parametrize("action", ["test", "send", "schedule"])
def test_staff_who_cannot_see_contacts_see_placeholder_defaults(
    client, zed_campaign, action
):
    client.force_login(staff_user("change_campaign", "view_campaign"))
    html = client.get(action_url(zed_campaign, action)).content.decode()
    assert ">Hi there  none</textarea>" in html
    assert "Zed" not in html
    assert "5551234" not in html
    assert "Z-42" not in html
    assert "you do not have permission to see contacts' details" in unescape(html)


def test_staff_who_can_see_contacts_see_the_first_contact(client, zed_campaign):
    client.force_login(staff_user("change_campaign", "view_campaign", "view_contact"))
    html = client.get(action_url(zed_campaign, "send")).content.decode()
    assert ">Hi Zed +14155551234 Z-42</textarea>" in html


def test_a_test_send_by_staff_who_cannot_see_contacts_carries_no_contact_data(
    client, zed_campaign, sms_outbox, django_capture_on_commit_callbacks
):
    client.force_login(staff_user("change_campaign", "view_campaign"))
    with django_capture_on_commit_callbacks(execute=True):
        response = confirm(client, zed_campaign, "test", {"numbers": "+14155550199"})
    assert response.status_code == 302
    assert [sms.text for sms in sms_outbox] == ["Hi there  none"]


# --- What "failed" means ---------------------------------------------------------------


def test_retry_page_explains_its_number_next_to_the_campaign_pages_failed(
    admin_client,
):
    campaign = launched(
        Status.COMPLETED, failed=3, undelivered=5, rejected=2, failed_opted_out=1
    )
    Campaign.objects.filter(pk=campaign.pk).update(completed_at=timezone.now())
    page = admin_client.get(change_url(campaign)).content.decode()
    assert 'id="dashboard-count-failed" data-count="10"' in page

    html = admin_client.get(action_url(campaign, "retry")).content.decode()
    assert figure(html, "confirm-recipients") == "3"
    assert figure(html, "retry-final") == "7"
    assert "5 undelivered, 2 rejected, 0 expired" in html
    assert "sends again only the messages whose status is “failed” (3)" in html
    assert "the carrier's final answer" in unescape(html)
    assert "the recipient had opted out (1)" in html
    assert "So of the 10 “Failed” on the campaign page, 3 are retried." in html

    response = confirm(admin_client, campaign, "retry")
    [(_level, text)] = flashed(response)
    assert text.startswith("3 messages queued again.")
    assert Message.objects.filter(campaign=campaign, status="undelivered").count() == 5


def test_progress_uses_the_campaign_pages_words(admin_client):
    campaign = launched(
        queued=4, submitted=1, sent=2, delivered=3, undelivered=1, failed=1
    )
    MessageFactory(
        campaign=campaign,
        status=Message.Status.FAILED,
        error_code=Message.SkipReason.CANCELLED,
    )
    Message.objects.filter(
        campaign=campaign, status__in=["submitted", "sent", "delivered", "undelivered"]
    ).update(submitted_at=timezone.now())
    html = admin_client.get(action_url(campaign, "pause")).content.decode()

    def row(label: str) -> str:
        match = re.search(
            rf'<th scope="row">{re.escape(label)}</th>\s*<td><strong>([^<]*)<', html
        )
        assert match, label
        return match[1]

    assert row("Queued") == "4"
    assert row("Sent") == "3"  # waiting for a receipt, as on the campaign page
    assert row("Delivered") == "3"
    assert row("Failed") == "2"  # sent but not delivered
    assert row("Cancelled") == "1"
    assert row("Handed to the provider") == "7"
    assert "Sent so far" not in html
    assert "waiting for a delivery receipt" in html


# --- Time zone of a schedule ------------------------------------------------------------


def test_scheduled_at_display_shows_the_zone_it_was_picked_in(settings):
    settings.TIME_ZONE = "UTC"
    campaign = Campaign(
        scheduled_at=datetime(2026, 12, 1, 8, 30, tzinfo=UTC),
        schedule_time_zone="Europe/Paris",
    )
    assert campaign.scheduled_at_display == "Tue 1 Dec 2026, 09:30 (Europe/Paris)"
    campaign.schedule_time_zone = ""
    assert campaign.scheduled_at_display == "Tue 1 Dec 2026, 08:30 (UTC)"
    campaign.schedule_time_zone = "Not/AZone"
    assert campaign.scheduled_at_display == "Tue 1 Dec 2026, 08:30 (UTC)"
    assert Campaign().scheduled_at_display == ""


def test_the_schedule_keeps_its_time_zone(admin_client, campaign):
    response = schedule(admin_client, campaign, time="09:30", time_zone="Europe/Paris")
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.schedule_time_zone == "Europe/Paris"
    when = campaign.scheduled_at_display
    assert when.endswith(f"1 Dec {NEXT_YEAR}, 09:30 (Europe/Paris)")
    assert f"is scheduled for {when}" in flashed(response)[0][1]

    # A reschedule starts from the time as it was picked, in its zone.
    html = admin_client.get(action_url(campaign, "schedule")).content.decode()
    assert '<option value="Europe/Paris" selected>' in html
    assert 'value="09:30"' in html
    assert f'value="{NEXT_YEAR}-12-01"' in html
    assert 'data-browser-default="true"' not in html
    assert f"is scheduled for {when}" in html
    for action in ("send", "pause", "cancel"):
        page = admin_client.get(action_url(campaign, action)).content.decode()
        assert when in page, action


def test_a_schedule_without_a_zone_shows_the_servers(admin_client, campaign):
    # The API schedules without a zone; sending now forgets an earlier one.
    campaign_schedule(
        campaign=campaign,
        at=datetime(NEXT_YEAR, 12, 1, 8, 30, tzinfo=UTC),
        time_zone="Europe/Paris",
    )
    campaign_schedule(
        campaign=campaign, at=datetime(NEXT_YEAR, 12, 2, 8, 30, tzinfo=UTC)
    )
    campaign.refresh_from_db()
    assert campaign.schedule_time_zone == ""
    html = admin_client.get(action_url(campaign, "schedule")).content.decode()
    assert '<option value="UTC" selected>' in html
    assert f"2 Dec {NEXT_YEAR}, 08:30 (UTC)" in html
    campaign_send_now(campaign=campaign)
    assert campaign.schedule_time_zone == ""


def test_scheduling_with_an_unknown_zone_is_refused():
    campaign = CampaignFactory()
    with pytest.raises(CampaignError, match="Unknown time zone"):
        campaign_schedule(
            campaign=campaign, at=timezone.now(), time_zone="Mars/Olympus"
        )
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT


# --- Sending hours ---------------------------------------------------------------------


def test_the_window_is_called_sending_hours(admin_client, campaign):
    html = admin_client.get(action_url(campaign, "schedule")).content.decode()
    assert "Sending hours (optional)" in html
    assert (
        "Messages go out only between these times, in each recipient's local time"
        in unescape(html)
    )
    assert "uiet hours" not in html
    send = admin_client.get(action_url(campaign, "send")).content.decode()
    assert "Sending hours" in send
    assert "Any time" in send


def test_the_send_page_restates_the_sending_hours(admin_client, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(
        send_window={"start": "09:00", "end": "20:00", "weekdays": [0, 1, 2, 3, 4]}
    )
    html = admin_client.get(action_url(campaign, "send")).content.decode()
    assert "09:00\u201320:00 Mon\u2013Fri, recipient's local time" in unescape(html)


# --- Clocks that jump -------------------------------------------------------------------


def first_sunday(year: int, month: int, nth: int = 1) -> datetime:
    day = datetime(year, month, 1)
    day += timedelta(days=(6 - day.weekday()) % 7)
    return day + timedelta(weeks=nth - 1)


def test_a_skipped_time_names_the_real_gap(admin_client, campaign):
    # Lord Howe Island moves its clocks 30 minutes: 02:00 becomes 02:30.
    day = first_sunday(NEXT_YEAR, 10)
    response = schedule(
        admin_client,
        campaign,
        date=f"{day:%Y-%m-%d}",
        time="02:10",
        time_zone="Australia/Lord_Howe",
    )
    html = response.content.decode()
    assert "02:10 does not exist" in html
    assert "jump forward 30 minutes that night, from 02:00 to 02:30" in html
    assert "Pick 02:30 or later." in html
    assert "an hour later" not in html

    day = first_sunday(NEXT_YEAR, 3, nth=2)
    response = schedule(admin_client, campaign, date=f"{day:%Y-%m-%d}", time="02:30")
    html = response.content.decode()
    assert "jump forward an hour that night, from 02:00 to 03:00" in html
    assert "Pick 03:00 or later." in html


# --- Duplicate ---------------------------------------------------------------------------


def test_duplicate_makes_a_draft_copy(admin_client, admin_user, settings):
    # A copy is a new campaign: its providers must be configured.
    settings.SMS_PROVIDERS = {
        **settings.SMS_PROVIDERS,
        "locmem2": settings.SMS_PROVIDERS["locmem"],
    }
    contact_list = ContactListFactory()
    ContactFactory().lists.add(contact_list)
    original = launched(queued=1)
    Campaign.objects.filter(pk=original.pk).update(
        name="Spring sale",
        body="Hi {first_name|there}, sprnig sale!",
        opt_out_footer="Reply STOP to opt out",
        sender="ACME",
        fallback_provider="locmem2",
        send_window={"start": "09:00", "end": "20:00", "weekdays": [0]},
        scheduled_at=timezone.now(),
        schedule_time_zone="Europe/Paris",
    )
    original.lists.add(contact_list)
    html = admin_client.get(action_url(original, "duplicate")).content.decode()
    assert "“Spring sale (copy)”" in html
    assert (
        "Hi {first_name|there}, sprnig sale!\nReply STOP to opt out</textarea>" in html
    )

    response = confirm(admin_client, original, "duplicate")
    copy = Campaign.objects.get(name="Spring sale (copy)")
    assert response.status_code == 302
    assert response.url == change_url(copy)
    assert copy.status == Status.DRAFT
    assert copy.body == "Hi {first_name|there}, sprnig sale!"
    assert copy.opt_out_footer == "Reply STOP to opt out"
    assert (copy.provider, copy.fallback_provider, copy.sender) == (
        "locmem",
        "locmem2",
        "ACME",
    )
    assert list(copy.lists.all()) == [contact_list]
    assert copy.scheduled_at is None
    assert not copy.send_window
    assert copy.schedule_time_zone == ""
    assert copy.created_by == admin_user
    assert not copy.messages.exists()
    [(level, text)] = flashed(response)
    assert level == "success"
    assert "“Spring sale (copy)” is a draft copy of “Spring sale”" in text
    original.refresh_from_db()
    assert original.status == Status.SENDING


def test_duplicate_keeps_the_name_within_its_length(admin_client):
    original = CampaignFactory(name="x" * 200)
    confirm(admin_client, original, "duplicate")
    copy = Campaign.objects.exclude(pk=original.pk).get()
    assert copy.name == "x" * 193 + " (copy)"


def test_duplicate_needs_the_add_permission(client, campaign):
    client.force_login(staff_user("change_campaign", "view_campaign"))
    html = client.get(change_url(campaign)).content.decode()
    assert 'id="action-send"' in html
    assert 'id="action-duplicate"' not in html
    assert client.get(action_url(campaign, "duplicate")).status_code == 403
    assert client.post(action_url(campaign, "duplicate")).status_code == 403

    client.force_login(staff_user("add_campaign", "view_campaign"))
    html = client.get(change_url(campaign)).content.decode()
    assert 'id="action-duplicate"' in html
    assert 'id="action-send"' not in html
    assert confirm(client, campaign, "duplicate").status_code == 302
    assert Campaign.objects.count() == 2
