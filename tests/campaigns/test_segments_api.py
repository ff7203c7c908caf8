"""/api/v1/segments/ (CRUD, count, preview) and campaigns with segments."""

import pytest
from rest_framework.test import APIClient

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache

from campaigns.models import Campaign
from campaigns.segments import Segment
from smscampaigns.models import ApiKey, Scope
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

URLCONF = "smscampaigns.urls"
pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLCONF)]

AUSTIN = [{"type": "attribute", "key": "city", "op": "equals", "value": "Austin"}]


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


def key_client(*scopes: str) -> APIClient:
    _, raw = ApiKey.generate(name="integration", scopes=scopes or Scope.values)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


@pytest.fixture
def api() -> APIClient:
    return key_client()


@pytest.fixture
def contacts():
    return [
        ContactFactory(phone="+14155550101", first_name="Ann",
                       attributes={"city": "Austin"}),
        ContactFactory(phone="+14155550102", first_name="Bob",
                       attributes={"city": "austin"}),
        ContactFactory(phone="+14155550103", first_name="Cid",
                       attributes={"city": "Boston"}),
    ]  # fmt: skip


@pytest.fixture
def segment(contacts):
    return Segment.objects.create(name="Austin", conditions=AUSTIN)


def test_create_a_segment(api):
    response = api.post(
        "/api/v1/segments/",
        {"name": "Austin", "match": "any", "conditions": AUSTIN},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["name"], body["match"], body["conditions"]) == (
        "Austin",
        "any",
        AUSTIN,
    )
    assert Segment.objects.get().conditions == AUSTIN


def test_bad_conditions_are_a_400_naming_the_condition(api):
    response = api.post(
        "/api/v1/segments/",
        {"name": "Bad", "conditions": [{"type": "country", "countries": ["USA"]}]},
        format="json",
    )
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert "Condition 1:" in fields["conditions"][0]
    assert not Segment.objects.exists()


def test_a_segment_name_is_unique(api, segment):
    response = api.post(
        "/api/v1/segments/", {"name": "Austin", "conditions": AUSTIN}, format="json"
    )
    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]


def test_list_update_and_delete(api, segment):
    assert [s["name"] for s in api.get("/api/v1/segments/").json()["results"]] == [
        "Austin"
    ]
    response = api.patch(
        f"/api/v1/segments/{segment.pk}/", {"match": "any"}, format="json"
    )
    assert response.status_code == 200
    segment.refresh_from_db()
    assert segment.match == "any"
    assert api.delete(f"/api/v1/segments/{segment.pk}/").status_code == 204
    assert not Segment.objects.exists()


def test_a_segment_in_use_is_not_deleted(api, segment):
    campaign = CampaignFactory(name="Spring")
    campaign.segments.add(segment)
    response = api.delete(f"/api/v1/segments/{segment.pk}/")
    assert response.status_code == 409
    assert "Spring" in response.json()["error"]["message"]


def test_count_and_preview(api, segment, contacts):
    contacts[1].opted_out_at = contacts[1].created_at
    contacts[1].save()

    count = api.get(f"/api/v1/segments/{segment.pk}/count/").json()
    assert count == {"contacts": 2, "reachable": 1}

    preview = api.get(f"/api/v1/segments/{segment.pk}/preview/").json()
    assert (preview["contacts"], preview["reachable"]) == (2, 1)
    assert [(c["first_name"], c["opted_out"]) for c in preview["sample"]] == [
        ("Ann", False),
        ("Bob", True),
    ]


def test_reads_need_the_read_scope_and_writes_write_contacts(segment):
    reader = key_client(Scope.READ)
    assert reader.get(f"/api/v1/segments/{segment.pk}/count/").status_code == 200
    response = reader.post(
        "/api/v1/segments/", {"name": "X", "conditions": AUSTIN}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_scope"
    writer = key_client(Scope.READ, Scope.WRITE_CONTACTS)
    response = writer.post(
        "/api/v1/segments/", {"name": "X", "conditions": AUSTIN}, format="json"
    )
    assert response.status_code == 201


def test_preview_shows_numbers_only_to_who_may_see_contacts(segment):
    user = get_user_model().objects.create_user("staff", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(
            codename="view_segment", content_type__app_label="campaigns"
        )
    )
    client = APIClient()
    client.force_login(user)
    response = client.get(f"/api/v1/segments/{segment.pk}/preview/")
    assert response.status_code == 403
    assert "+1" not in response.content.decode()
    # Its condition is on an attribute: not counted for them either.
    assert client.get(f"/api/v1/segments/{segment.pk}/count/").status_code == 403
    by_country = Segment.objects.create(
        name="US", conditions=[{"type": "country", "countries": ["US"]}]
    )
    response = client.get(f"/api/v1/segments/{by_country.pk}/count/")
    assert response.json() == {"contacts": 3, "reachable": 3}


def test_campaigns_accept_segments_beside_lists(api, segment):
    vip = ContactListFactory()
    response = api.post(
        "/api/v1/campaigns/",
        {
            "name": "Austin sale",
            "body": "Hi {first_name}",
            "provider": "locmem",
            "lists": [vip.pk],
            "segments": [segment.pk],
            "frequency_cap": "1 per day",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["lists"], body["segments"], body["frequency_cap"]) == (
        [vip.pk],
        [segment.pk],
        "1 per day",
    )
    campaign = Campaign.objects.get()
    assert list(campaign.segments.all()) == [segment]

    preview = api.get(f"/api/v1/campaigns/{campaign.pk}/preview/").json()
    assert preview["recipients"] == 2


def test_unknown_segments_and_bad_caps_are_400(api):
    response = api.post(
        "/api/v1/campaigns/",
        {
            "name": "X",
            "body": "Hi",
            "provider": "locmem",
            "segments": [99999],
            "frequency_cap": "lots",
        },
        format="json",
    )
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert fields["segments"] == ["No segment with id 99999."]
    assert "2 per 7 days" in fields["frequency_cap"][0]


def test_segments_are_content_locked_once_sending(api, segment):
    campaign = CampaignFactory(status=Campaign.Status.SENDING)
    campaign.started_at = campaign.created_at
    campaign.save()
    response = api.patch(
        f"/api/v1/campaigns/{campaign.pk}/", {"segments": [segment.pk]}, format="json"
    )
    assert response.status_code == 409
    assert "segments" in response.json()["error"]["message"]


def test_sending_a_campaign_with_only_a_segment_is_allowed(api, segment):
    campaign = CampaignFactory(provider="locmem")
    campaign.segments.add(segment)
    response = api.post(f"/api/v1/campaigns/{campaign.pk}/send/")
    assert response.status_code == 202, response.json()


def test_stats_report_frequency_cap_skips(api):
    campaign = CampaignFactory(provider="locmem")
    body = api.get(f"/api/v1/campaigns/{campaign.pk}/stats/").json()
    assert body["skipped_frequency_cap"] == 0
