"""The campaigns part of the REST API: /api/v1/campaigns/, /messages/, /messages/bulk/."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from campaigns.models import Campaign, Message
from contacts.models import ConsentEvent, Contact, Source, Suppression
from smscampaigns.models import ApiKey, Scope
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    MessageFactory,
)

URLCONF = "smscampaigns.urls"
pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLCONF)]

# New campaigns end every message with the opt-out footer on its own line.
FOOTER = "\nReply STOP to opt out"

CAMPAIGN_FIELDS = {
    "schedule_time_zone",
    "id",
    "name",
    "body",
    "opt_out_footer",
    "lists",
    "segments",
    "frequency_cap",
    "provider",
    "sender",
    "status",
    "status_display",
    "allowed_actions",
    "scheduled_at",
    "send_window",
    "send_by",
    "created_at",
    "waiting_reason",
    "fallback_provider",
    "track_links",
    "variants",
}
MESSAGE_FIELDS = {
    "id",
    "campaign",
    "contact",
    "to",
    "provider",
    "provider_message_id",
    "client_reference",
    "status",
    "error_code",
    "error_reason",
    "segments",
    "encoding",
    "price",
    "currency",
    "submitted_at",
    "updated_at",
    "clicks",
    "first_clicked_at",
    "variant",
}
NOT_EDITABLE = ["sending", "paused", "completed", "cancelled", "failed"]


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
def audience():
    """A list of three: Ann (city Austin), Bob, and Cid who opted out."""
    contact_list = ContactListFactory()
    ann = ContactFactory(first_name="Ann", attributes={"city": "Austin"})
    bob = ContactFactory(first_name="Bob")
    cid = ContactFactory(first_name="Cid", opted_out_at=timezone.now())
    for contact in (ann, bob, cid):
        contact.lists.add(contact_list)
    return contact_list


@pytest.fixture
def campaign(audience):
    return CampaignFactory(
        lists=[audience], provider="locmem", body="Hi {first_name|there}!"
    )


def error(response) -> dict:
    return response.json()["error"]


def url(campaign: Campaign, action: str = "") -> str:
    return f"/api/v1/campaigns/{campaign.pk}/" + (f"{action}/" if action else "")


# --- Authentication ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/campaigns/"),
        ("post", "/api/v1/campaigns/"),
        ("get", "/api/v1/campaigns/{id}/"),
        ("patch", "/api/v1/campaigns/{id}/"),
        ("delete", "/api/v1/campaigns/{id}/"),
        ("get", "/api/v1/campaigns/{id}/preview/"),
        ("post", "/api/v1/campaigns/{id}/test/"),
        ("post", "/api/v1/campaigns/{id}/send/"),
        ("post", "/api/v1/campaigns/{id}/schedule/"),
        ("post", "/api/v1/campaigns/{id}/pause/"),
        ("post", "/api/v1/campaigns/{id}/resume/"),
        ("post", "/api/v1/campaigns/{id}/cancel/"),
        ("post", "/api/v1/campaigns/{id}/retry-failed/"),
        ("get", "/api/v1/campaigns/{id}/stats/"),
        ("get", "/api/v1/messages/"),
        ("get", "/api/v1/messages/{message}/"),
        ("post", "/api/v1/messages/bulk/"),
    ],
)
def test_every_endpoint_needs_an_api_key(campaign, method, path):
    message = MessageFactory(campaign=campaign)
    response = getattr(APIClient(), method)(
        path.format(id=campaign.pk, message=message.pk), {}, format="json"
    )
    assert response.status_code == 401
    assert error(response)["status"] == 401
    assert Campaign.objects.filter(pk=campaign.pk, status="draft").exists()


# --- Campaign CRUD -----------------------------------------------------------------


def test_create_campaign_answers_with_exactly_the_contract_fields(api, audience):
    response = api.post(
        "/api/v1/campaigns/",
        {"name": "Spring sale", "body": "Hi {first_name}!", "lists": [audience.pk]},
    )
    assert response.status_code == 201, response.json()
    data = response.json()
    assert set(data) == CAMPAIGN_FIELDS
    assert data["lists"] == [audience.pk]
    assert data["status"] == "draft"
    assert data["status_display"] == "Draft"
    assert data["allowed_actions"] == ["send", "schedule", "cancel"]
    assert data["provider"] == "locmem"  # the test settings' default
    assert data["send_window"] is None
    assert data["scheduled_at"] is None
    campaign = Campaign.objects.get(pk=data["id"])
    assert campaign.created_by is None  # an API key is not a person


def test_create_by_a_logged_in_user_records_who(audience):
    user = get_user_model().objects.create_user("maria", password="x")
    user.user_permissions.add(Permission.objects.get(codename="add_campaign"))
    client = APIClient()
    client.force_authenticate(user)
    response = client.post("/api/v1/campaigns/", {"name": "A", "body": "Hello"})
    assert response.status_code == 201
    assert Campaign.objects.get(pk=response.json()["id"]).created_by == user


def test_status_and_schedule_cannot_be_written_directly(api):
    response = api.post(
        "/api/v1/campaigns/",
        {
            "name": "A",
            "body": "Hello",
            "status": "completed",
            "scheduled_at": "2030-01-01T00:00:00Z",
        },
    )
    assert response.status_code == 201
    assert response.json()["status"] == "draft"
    assert response.json()["scheduled_at"] is None


def test_placeholder_known_in_the_audience_is_accepted(api, audience):
    response = api.post(
        "/api/v1/campaigns/",
        {"name": "A", "body": "Hi from {city}", "lists": [audience.pk]},
    )
    assert response.status_code == 201, response.json()


def test_unknown_placeholder_is_a_400_under_body(api, audience):
    response = api.post(
        "/api/v1/campaigns/",
        {"name": "A", "body": "Hi {First_name}", "lists": [audience.pk]},
    )
    assert response.status_code == 400
    [problem] = error(response)["fields"]["body"]
    assert "{First_name}" in problem
    assert "Did you mean {first_name}?" in problem
    assert not Campaign.objects.exists()


def test_malformed_body_is_a_400_under_body(api):
    response = api.post("/api/v1/campaigns/", {"name": "A", "body": "Hi {name"})
    assert response.status_code == 400
    assert 'Unclosed "{"' in error(response)["fields"]["body"][0]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("provider", "nosuch", "'nosuch' is not a configured provider"),
        ("fallback_provider", "nosuch", "'nosuch' is not a configured provider"),
        ("fallback_provider", "locmem", "must differ from the provider"),
        ("lists", [999999], "No contact list with id 999999"),
        ("lists", ["x"], "valid integer"),
        ("lists", "1", 'Expected a list of items but got type "str"'),
        ("name", "", "may not be blank"),
        ("body", "x" * 1601, "no more than 1600 characters"),
        ("sender", "x" * 33, "no more than 32 characters"),
    ],
)
def test_invalid_campaign_fields_are_400_naming_the_field(api, field, value, expected):
    payload = {"name": "A", "body": "Hello", field: value}
    response = api.post("/api/v1/campaigns/", payload)
    assert response.status_code == 400
    assert expected in str(error(response)["fields"][field])


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (
            {"start": "9am", "end": "20:00", "weekdays": [0]},
            "Give a time of day as HH:MM",
        ),
        (
            {"start": "09:00", "end": "24:00", "weekdays": [0]},
            "from 00:00 to 23:59",
        ),
        ({"start": "09:00", "end": "20:00", "weekdays": []}, "at least 1 elements"),
        (
            {"start": "09:00", "end": "20:00", "weekdays": [7]},
            "less than or equal to 6",
        ),
        (
            {
                "start": "09:00",
                "end": "20:00",
                "weekdays": [0],
                "time_zone": "Mars/Base",
            },
            "Unknown time zone 'Mars/Base'",
        ),
        (
            {"start": "09:00", "end": "20:00", "weekdays": [0], "days": [1]},
            "Unknown send window field(s): days",
        ),
        ("09:00-20:00", "Expected a dictionary"),
    ],
)
def test_invalid_send_window_is_a_400_saying_what_to_fix(api, window, expected):
    response = api.post(
        "/api/v1/campaigns/", {"name": "A", "body": "Hello", "send_window": window}
    )
    assert response.status_code == 400
    assert expected in str(error(response)["fields"]["send_window"])


def test_send_window_is_stored_in_its_normal_form(api, settings):
    response = api.post(
        "/api/v1/campaigns/",
        {
            "name": "A",
            "body": "Hello",
            "send_window": {"start": "9:00", "end": "20:00", "weekdays": [4, 0, 0]},
        },
    )
    assert response.status_code == 201, response.json()
    expected = {
        "start": "09:00",
        "end": "20:00",
        "weekdays": [0, 4],
        "time_zone": settings.TIME_ZONE,
    }
    assert response.json()["send_window"] == expected
    assert Campaign.objects.get().send_window == expected


def test_list_and_detail_show_the_same_fields_without_n_plus_1(
    api, audience, django_assert_max_num_queries
):
    for _ in range(5):
        CampaignFactory(lists=[audience, ContactListFactory()])
    with django_assert_max_num_queries(8):
        response = api.get("/api/v1/campaigns/")
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 5
    assert all(set(row) == CAMPAIGN_FIELDS for row in results)
    assert all(len(row["lists"]) == 2 for row in results)
    detail = api.get(f"/api/v1/campaigns/{results[0]['id']}/").json()
    assert detail == results[0]


def test_provider_cannot_become_the_fallback(api, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(fallback_provider="console")
    response = api.patch(url(campaign), {"provider": "console"})
    assert response.status_code == 400
    assert "must differ" in error(response)["fields"]["fallback_provider"][0]


def test_draft_can_change_body_and_lists(api, campaign):
    other = ContactListFactory()
    response = api.patch(url(campaign), {"body": "New text", "lists": [other.pk]})
    assert response.status_code == 200, response.json()
    assert response.json()["body"] == "New text"
    assert response.json()["lists"] == [other.pk]
    campaign.refresh_from_db()
    assert list(campaign.lists.all()) == [other]


def test_update_checks_the_body_against_the_new_lists(api, campaign, audience):
    response = api.patch(url(campaign), {"body": "From {city}"})
    assert response.status_code == 200
    response = api.patch(url(campaign), {"lists": [ContactListFactory().pk]})
    assert response.status_code == 400
    assert "{city}" in error(response)["fields"]["body"][0]


@pytest.mark.parametrize("status", NOT_EDITABLE)
@pytest.mark.parametrize(
    "change", [{"body": "Other text"}, {"provider": "console"}, {"lists": []}]
)
def test_content_of_a_started_campaign_cannot_change(api, campaign, status, change):
    Campaign.objects.filter(pk=campaign.pk).update(
        status=status, started_at=timezone.now()
    )
    response = api.patch(url(campaign), change)
    assert response.status_code == 409
    assert error(response)["code"] == "conflict"
    assert "can no longer change" in error(response)["message"]
    campaign.refresh_from_db()
    assert campaign.body == "Hi {first_name|there}!"
    assert campaign.provider == "locmem"
    assert campaign.lists.count() == 1


@pytest.mark.parametrize("status", NOT_EDITABLE)
def test_name_of_any_campaign_can_change(api, campaign, status):
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    response = api.patch(url(campaign), {"name": "Renamed"})
    assert response.status_code == 200
    assert response.json()["name"] == "Renamed"


def test_put_with_unchanged_content_of_a_sending_campaign_is_allowed(api, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(status="sending")
    current = api.get(url(campaign)).json()
    response = api.put(url(campaign), {**current, "name": "Renamed"})
    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "Renamed"


@pytest.mark.parametrize("status", ["draft", "scheduled"])
def test_drafts_and_scheduled_campaigns_can_be_deleted(api, campaign, status):
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    assert api.delete(url(campaign)).status_code == 204
    assert not Campaign.objects.exists()


@pytest.mark.parametrize("status", NOT_EDITABLE)
def test_started_campaigns_cannot_be_deleted(api, campaign, status):
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    response = api.delete(url(campaign))
    assert response.status_code == 409
    assert (
        "only drafts and scheduled campaigns can be deleted"
        in error(response)["message"]
    )
    assert Campaign.objects.filter(pk=campaign.pk).exists()


@pytest.mark.parametrize("path", ["/api/v1/campaigns/999999/", "/api/v1/campaigns/x/"])
def test_unknown_campaign_is_404(api, path):
    assert api.get(path).status_code == 404
    assert api.post(path + "send/").status_code == 404


# --- Actions -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_preview_shows_audience_cost_and_samples(api, campaign, settings, method):
    settings.SMS_PRICE_PER_SEGMENT = {"locmem": Decimal("0.01")}
    response = getattr(api, method)(url(campaign, "preview"))
    assert response.status_code == 200
    data = response.json()
    assert data["recipients"] == 2  # Cid opted out
    assert data["excluded"] == 1
    assert data["encodings"] == {"gsm7": 2}
    assert data["segments"] == 2
    assert data["estimated_cost"] == "0.02000"
    assert data["currency"] == settings.SMS_PRICE_CURRENCY
    assert sorted(s["text"] for s in data["samples"]) == ["Hi Ann!", "Hi Bob!"]
    assert data["problems"] == []
    assert Message.objects.count() == 0


def test_preview_shows_at_most_five_samples(api, audience):
    for _ in range(7):
        ContactFactory().lists.add(audience)
    campaign = CampaignFactory(lists=[audience])
    data = api.get(url(campaign, "preview")).json()
    assert data["recipients"] == 9
    assert len(data["samples"]) == 5


def test_test_send_goes_out_now_with_the_first_contacts_data(
    api, campaign, sms_outbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            url(campaign, "test"), {"to": ["(206) 555-0100", "+12065550101"]}
        )
    assert response.status_code == 202, response.json()
    ids = response.json()["messages"]
    assert len(ids) == 2
    assert [(sms.to, sms.text) for sms in sms_outbox] == [
        ("+12065550100", "Hi Ann!"),
        ("+12065550101", "Hi Ann!"),
    ]
    messages = Message.objects.filter(pk__in=ids)
    assert {m.kind for m in messages} == {"test"}
    assert {m.status for m in messages} == {"submitted"}
    # A test is not part of the campaign's delivery record.
    assert not Message.objects.filter(campaign=campaign).exists()


def test_test_send_without_audience_uses_the_defaults(
    api, sms_outbox, django_capture_on_commit_callbacks
):
    campaign = CampaignFactory(provider="locmem", body="Hi {first_name|there}!")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(url(campaign, "test"), {"to": ["+12065550100"]})
    assert response.status_code == 202
    assert [sms.text for sms in sms_outbox] == ["Hi there!"]


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        (["+12065550100", "12345"], "'12345' is not a valid phone number"),
        ([], "at least 1 elements"),
        ([f"+1206555{n:04d}" for n in range(11)], "no more than 10 elements"),
        ("+12065550100", 'Expected a list of items but got type "str"'),
    ],
)
def test_test_send_refuses_bad_numbers(api, campaign, sms_outbox, to, expected):
    response = api.post(url(campaign, "test"), {"to": to})
    assert response.status_code == 400
    assert expected in str(error(response)["fields"]["to"])
    assert sms_outbox == []
    assert not Message.objects.exists()


def test_test_send_respects_opt_outs(api, campaign, sms_outbox):
    Suppression.objects.create(phone="+12065550100")
    response = api.post(url(campaign, "test"), {"to": ["+12065550100"]})
    assert response.status_code == 400
    assert "+12065550100 opted out" in error(response)["fields"]["to"][0]
    assert sms_outbox == []


def test_send_answers_202_and_the_worker_sends(api, campaign, sms_outbox):
    response = api.post(url(campaign, "send"))
    assert response.status_code == 202
    assert response.json()["status"] == "scheduled"
    assert sms_outbox == []  # the request only asked for it
    call_command("run_worker", "--once", stdout=StringIO())
    assert sorted(sms.text for sms in sms_outbox) == ["Hi Ann!", "Hi Bob!"]


@pytest.mark.parametrize("status", NOT_EDITABLE)
def test_send_of_a_started_campaign_is_409(api, campaign, status):
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    response = api.post(url(campaign, "send"))
    assert response.status_code == 409
    assert f"is {status}: it cannot be sent" in error(response)["message"]


def test_schedule_sets_time_and_window(api, campaign):
    at = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    window = {"start": "09:00", "end": "20:00", "weekdays": [0, 1, 2, 3, 4]}
    response = api.post(
        url(campaign, "schedule"),
        {"scheduled_at": at.astimezone(UTC).isoformat(), "send_window": window},
    )
    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["status"] == "scheduled"
    assert datetime.fromisoformat(data["scheduled_at"]) == at
    assert data["send_window"]["weekdays"] == [0, 1, 2, 3, 4]


def test_schedule_accepts_any_utc_offset(api, campaign):
    response = api.post(
        url(campaign, "schedule"), {"scheduled_at": "2099-06-01T09:00:00-07:00"}
    )
    assert response.status_code == 200
    campaign.refresh_from_db()
    assert campaign.scheduled_at == datetime(2099, 6, 1, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "field", "expected"),
    [
        ({"scheduled_at": "2099-06-01T09:00:00"}, "scheduled_at", "UTC offset"),
        ({"scheduled_at": "2020-01-01T00:00:00Z"}, "scheduled_at", "in the past"),
        ({"scheduled_at": "tomorrow"}, "scheduled_at", "wrong format"),
        ({}, "scheduled_at", "required"),
        (
            {
                "scheduled_at": "2099-06-01T09:00:00Z",
                "send_window": {"start": "09:00", "end": "20:00"},
            },
            "send_window",
            "required",
        ),
    ],
)
def test_schedule_refuses_bad_times(api, campaign, payload, field, expected):
    response = api.post(url(campaign, "schedule"), payload)
    assert response.status_code == 400
    assert expected in str(error(response)["fields"][field])
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_schedule_a_minute_late_is_still_accepted(api, campaign):
    at = timezone.now() - timedelta(seconds=30)
    response = api.post(url(campaign, "schedule"), {"scheduled_at": at.isoformat()})
    assert response.status_code == 200


def test_schedule_of_a_sending_campaign_is_409_and_keeps_its_window(api, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(status="sending")
    response = api.post(
        url(campaign, "schedule"),
        {
            "scheduled_at": "2099-06-01T09:00:00Z",
            "send_window": {"start": "09:00", "end": "20:00", "weekdays": [0]},
        },
    )
    assert response.status_code == 409
    campaign.refresh_from_db()
    assert campaign.send_window is None


def test_pause_resume_and_cancel(api, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(
        status="sending", started_at=timezone.now()
    )
    response = api.post(url(campaign, "pause"))
    assert response.status_code == 200
    assert response.json()["status"] == "paused"
    response = api.post(url(campaign, "resume"))
    assert response.status_code == 200
    assert response.json()["status"] == "sending"
    response = api.post(url(campaign, "cancel"))
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


@pytest.mark.parametrize(
    ("action", "status", "message"),
    [
        ("pause", "draft", "is draft: it cannot be paused"),
        ("resume", "sending", "is sending: it cannot be resumed"),
        ("cancel", "completed", "is completed: it cannot be cancelled"),
    ],
)
def test_actions_the_state_does_not_allow_are_409(
    api, campaign, action, status, message
):
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    response = api.post(url(campaign, action))
    assert response.status_code == 409
    assert message in error(response)["message"]


def test_retry_failed_queues_failed_messages(api, campaign):
    MessageFactory(campaign=campaign, status="failed", error_code="timeout")
    MessageFactory(campaign=campaign, status="failed", error_code="opted_out")
    MessageFactory(campaign=campaign, status="unknown")
    Campaign.objects.filter(pk=campaign.pk).update(status="completed")
    response = api.post(url(campaign, "retry-failed"))
    assert response.status_code == 200
    assert response.json() == {"queued": 1}
    response = api.post(url(campaign, "retry-failed"), {"include_unknown": True})
    assert response.json() == {"queued": 1}
    assert Message.objects.filter(status="queued").count() == 2


def test_retry_failed_refuses_a_bad_flag(api, campaign):
    response = api.post(url(campaign, "retry-failed"), {"include_unknown": "maybe"})
    assert response.status_code == 400
    assert "include_unknown" in error(response)["fields"]


def test_stats_count_every_status_rate_cost_and_skips(api, campaign, settings):
    for status, price in [
        ("delivered", "0.0075"),
        ("delivered", "0.0075"),
        ("delivered", "0.0150"),
        ("undelivered", "0.0075"),
        ("sent", None),
    ]:
        MessageFactory(
            campaign=campaign,
            status=status,
            price=Decimal(price) if price else None,
            currency="EUR" if price else "",
        )
    MessageFactory(campaign=campaign, status="failed", error_code="opted_out")
    response = api.get(url(campaign, "stats"))
    assert response.status_code == 200
    data = response.json()
    assert data["counts"] == {
        "queued": 0,
        "sending": 0,
        "submitted": 0,
        "sent": 1,
        "delivered": 3,
        "undelivered": 1,
        "failed": 1,
        "rejected": 0,
        "expired": 0,
        "unconfirmed": 0,
        "unknown": 0,
    }
    # The opted-out skip never reached a carrier: 3 of 4 outcomes, not 3 of 5.
    assert data["delivery_rate"] == 0.75
    assert data["cost"] == "0.03750"
    assert data["currency"] == "EUR"
    assert data["skipped_opted_out"] == 1
    assert data["opt_outs"] == 0


def test_stats_of_a_campaign_without_outcomes(api, campaign, settings):
    data = api.get(url(campaign, "stats")).json()
    assert data["delivery_rate"] is None
    assert data["cost"] == "0.00000"
    assert data["currency"] == settings.SMS_PRICE_CURRENCY
    assert set(data["counts"]) == set(Message.Status.values)


def test_stats_attribute_opt_outs_within_seven_days_of_the_message(api, campaign):
    submitted = timezone.now() - timedelta(days=10)
    numbers = {}
    for label in ["day 1", "day 8", "before", "other campaign", "never"]:
        numbers[label] = MessageFactory(
            campaign=campaign, status="delivered", submitted_at=submitted
        ).to
    MessageFactory(campaign=campaign, status="queued")  # not submitted: no blame
    for label, at in [
        ("day 1", submitted + timedelta(days=1)),
        ("day 8", submitted + timedelta(days=8)),
        ("before", submitted - timedelta(hours=1)),
    ]:
        ConsentEvent.objects.create(
            phone=numbers[label], kind="opt_out", source=Source.KEYWORD, created_at=at
        )
    ConsentEvent.objects.create(  # opt-in, not opt-out
        phone=numbers["never"],
        kind="opt_in",
        source=Source.KEYWORD,
        created_at=submitted + timedelta(hours=1),
    )
    ConsentEvent.objects.create(  # someone who got no message from this campaign
        phone="+12065550199",
        kind="opt_out",
        source=Source.KEYWORD,
        created_at=submitted + timedelta(hours=1),
    )
    data = api.get(url(campaign, "stats")).json()
    assert data["opt_outs"] == 1


def test_stats_take_a_fixed_number_of_queries(
    api, campaign, django_assert_max_num_queries
):
    for _ in range(20):
        MessageFactory(
            campaign=campaign, status="delivered", submitted_at=timezone.now()
        )
    # 9: the campaign comes with its lists, segments and text variants prefetched.
    with django_assert_max_num_queries(9):
        assert api.get(url(campaign, "stats")).status_code == 200


# --- Messages ----------------------------------------------------------------------


def test_messages_list_newest_first_with_the_contract_fields(
    api, campaign, django_assert_max_num_queries
):
    made = [MessageFactory(campaign=campaign) for _ in range(10)]
    with django_assert_max_num_queries(5):
        response = api.get("/api/v1/messages/")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [row["id"] for row in results] == [m.pk for m in reversed(made)]
    assert set(results[0]) == MESSAGE_FIELDS
    first = made[-1]
    assert results[0]["campaign"] == campaign.pk
    assert results[0]["contact"] == first.contact_id
    assert results[0]["to"] == first.to
    assert results[0]["client_reference"] == str(first.client_reference)
    assert datetime.fromisoformat(results[0]["updated_at"]) == first.status_changed_at


def test_message_detail(api, campaign):
    message = MessageFactory(campaign=campaign, status="delivered", segments=2)
    response = api.get(f"/api/v1/messages/{message.pk}/")
    assert response.status_code == 200
    assert set(response.json()) == MESSAGE_FIELDS
    assert response.json()["status"] == "delivered"
    assert api.get("/api/v1/messages/999999/").status_code == 404


def test_messages_are_read_only(api, campaign):
    message = MessageFactory(campaign=campaign)
    assert api.post("/api/v1/messages/", {}).status_code == 405
    assert api.delete(f"/api/v1/messages/{message.pk}/").status_code == 405


def test_messages_filter_by_campaign_status_and_number(api, campaign):
    wanted = MessageFactory(
        campaign=campaign, status="delivered", contact__phone="+12065550100"
    )
    MessageFactory(campaign=campaign, status="failed")
    MessageFactory(status="delivered")

    def ids(query: str) -> list[int]:
        response = api.get(f"/api/v1/messages/?{query}")
        assert response.status_code == 200, response.json()
        return [row["id"] for row in response.json()["results"]]

    assert len(ids(f"campaign={campaign.pk}")) == 2
    assert len(ids("status=delivered")) == 2
    assert ids(f"campaign={campaign.pk}&status=delivered") == [wanted.pk]
    assert ids("to=(206) 555-0100") == [wanted.pk]
    assert ids("to=%2B12065550100") == [wanted.pk]


def test_messages_filter_by_status_change_time(api, campaign):
    now = timezone.now()
    old = MessageFactory(campaign=campaign, status_changed_at=now - timedelta(days=2))
    new = MessageFactory(campaign=campaign, status_changed_at=now)
    since = (now - timedelta(days=1)).isoformat()
    response = api.get("/api/v1/messages/", {"since": since})
    assert [row["id"] for row in response.json()["results"]] == [new.pk]
    response = api.get("/api/v1/messages/", {"until": since})
    assert [row["id"] for row in response.json()["results"]] == [old.pk]


@pytest.mark.parametrize(
    ("query", "field", "expected"),
    [
        ({"status": "lost"}, "status", "Select a valid choice"),
        ({"to": "12345"}, "to", "12345 is not a valid phone number"),
        ({"since": "yesterday"}, "since", "Enter a valid date/time"),
        ({"campaign": "x"}, "campaign", "Enter a whole number"),
        ({"campaign": str(2**70)}, "campaign", "less than or equal to"),
    ],
)
def test_messages_bad_filters_are_400(api, query, field, expected):
    response = api.get("/api/v1/messages/", query)
    assert response.status_code == 400
    assert expected in str(error(response)["fields"][field])


# --- Bulk --------------------------------------------------------------------------


def test_bulk_queues_one_message_per_unique_valid_number(api, monkeypatch):
    existing = ContactFactory(phone="+12065550100", first_name="Ann")
    ContactFactory(phone="+12065550101", opted_out_at=timezone.now())
    Suppression.objects.create(phone="+12065550102")
    response = api.post(
        "/api/v1/messages/bulk/",
        {
            "recipients": [
                "+12065550100",
                "(206) 555-0100",  # the same number again
                "+12065550101",
                "+12065550102",
                "+33612345678",
                "not a number",
                "+1206",
            ],
            "message": "Hi {first_name|there}, 20% off today",
        },
    )
    assert response.status_code == 202, response.json()
    data = response.json()
    assert set(data) == {"campaign", "accepted", "invalid", "skipped"}
    assert data["accepted"] == 2
    assert data["invalid"] == ["not a number", "+1206"]
    assert data["skipped"] == ["+12065550101", "+12065550102"]

    campaign = Campaign.objects.get(pk=data["campaign"])
    assert campaign.status == "sending"
    assert re.fullmatch(r"Bulk \d{4}-\d\d-\d\d \d\d:\d\d UTC", campaign.name)
    assert campaign.provider == "locmem"
    assert not campaign.lists.exists()
    messages = {m.to: m for m in campaign.messages.all()}
    assert set(messages) == {"+12065550100", "+33612345678"}
    assert messages["+12065550100"].contact == existing
    assert messages["+33612345678"].time_zone == "Europe/Paris"
    assert {(m.kind, m.body, m.status) for m in messages.values()} == {
        ("campaign", "", "queued")
    }
    created = Contact.objects.get(phone="+33612345678")
    assert (created.country, created.time_zone) == ("FR", "Europe/Paris")


@pytest.mark.django_db(transaction=True)
def test_bulk_messages_are_dispatched_and_rendered(api, sms_outbox, monkeypatch):
    dispatched = []
    monkeypatch.setattr(
        "campaigns.writes.enqueue_dispatch", lambda pk: dispatched.append(pk)
    )
    ContactFactory(phone="+12065550100", first_name="Ann")
    response = api.post(
        "/api/v1/messages/bulk/",
        {
            "recipients": ["+12065550100", "+12065550101"],
            "message": "Hi {first_name|you}",
        },
    )
    assert response.status_code == 202
    assert dispatched == [response.json()["campaign"]]
    call_command("run_worker", "--once", stdout=StringIO())
    assert sorted((sms.to, sms.text) for sms in sms_outbox) == [
        ("+12065550100", "Hi Ann" + FOOTER),
        ("+12065550101", "Hi you" + FOOTER),
    ]


def test_bulk_with_everyone_opted_out_completes_at_once(api):
    Suppression.objects.create(phone="+12065550100")
    response = api.post(
        "/api/v1/messages/bulk/", {"recipients": ["+12065550100"], "message": "Hi"}
    )
    assert response.status_code == 202
    assert response.json()["accepted"] == 0
    assert Campaign.objects.get().status == "completed"


def test_bulk_uses_the_requested_provider(api):
    response = api.post(
        "/api/v1/messages/bulk/",
        {"recipients": ["+12065550100"], "message": "Hi", "provider": "console"},
    )
    assert response.status_code == 202
    assert Campaign.objects.get().provider == "console"
    assert Message.objects.get().provider == "console"


@pytest.mark.parametrize(
    ("payload", "field", "expected"),
    [
        (
            {"recipients": ["+12065550100"], "message": "Hi {coupon}"},
            "message",
            "{coupon}",
        ),
        (
            {"recipients": ["+12065550100"], "message": "Hi {"},
            "message",
            'Unclosed "{"',
        ),
        (
            {"recipients": ["+12065550100"], "message": ""},
            "message",
            "may not be blank",
        ),
        ({"recipients": ["nope", "123"], "message": "Hi"}, "recipients", "None of the"),
        ({"recipients": [], "message": "Hi"}, "recipients", "at least 1 elements"),
        (
            {"recipients": ["+12065550100"] * 10_001, "message": "Hi"},
            "recipients",
            "no more than 10000 elements",
        ),
        (
            {"recipients": ["+12065550100"], "message": "Hi", "provider": "nosuch"},
            "provider",
            "not a configured provider",
        ),
        ({"message": "Hi"}, "recipients", "required"),
    ],
)
def test_bulk_refuses_bad_input(api, payload, field, expected):
    response = api.post("/api/v1/messages/bulk/", payload)
    assert response.status_code == 400
    assert expected in str(error(response)["fields"][field])
    assert not Campaign.objects.exists()
    assert not Contact.objects.exists()


def test_bulk_accepts_attributes_its_recipients_have(api):
    ContactFactory(phone="+12065550100", attributes={"coupon": "X1"})
    response = api.post(
        "/api/v1/messages/bulk/",
        {"recipients": ["+12065550100", "+12065550101"], "message": "Use {coupon}"},
    )
    assert response.status_code == 202


# --- Schema ------------------------------------------------------------------------


def test_schema_documents_bodies_and_status_codes():
    schema = SchemaGenerator(urlconf=URLCONF).get_schema(request=None, public=True)
    paths = schema["paths"]
    assert set(paths["/api/v1/campaigns/{id}/send/"]["post"]["responses"]) >= {
        "202",
        "401",
        "404",
        "409",
    }
    schedule = paths["/api/v1/campaigns/{id}/schedule/"]["post"]
    assert "requestBody" in schedule
    assert "409" in schedule["responses"]
    assert "202" in paths["/api/v1/messages/bulk/"]["post"]["responses"]
    assert "202" in paths["/api/v1/campaigns/{id}/test/"]["post"]["responses"]
    assert {p["name"] for p in paths["/api/v1/messages/"]["get"]["parameters"]} >= {
        "campaign",
        "status",
        "to",
        "since",
        "until",
        "page",
        "page_size",
    }
    message = schema["components"]["schemas"]["Message"]
    assert set(message["properties"]) == MESSAGE_FIELDS


def test_message_filter_refuses_impossible_utc_offsets(api):
    response = api.get(
        "/api/v1/messages/",
        {"since": "0755-08-22T13:45:18Z", "until": "0867-05-16T03:53:00.8+18:26"},
    )
    assert response.status_code == 400
    assert "until" in response.json()["error"]["fields"]
