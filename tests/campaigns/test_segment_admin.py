"""The segment builder in the admin, and segments in the campaign composer."""

import json

import pytest

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.urls import reverse

from campaigns.models import Campaign
from campaigns.segments import Segment
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db

ADD = reverse("admin:campaigns_segment_add")
COUNT = reverse("admin:campaigns_segment_count")
AUSTIN = [{"type": "attribute", "key": "city", "op": "equals", "value": "Austin"}]


@pytest.fixture(autouse=True)
def _no_cached_audiences():
    cache.clear()


@pytest.fixture
def contacts():
    return [
        ContactFactory(phone="+14155550101", first_name="Ann", last_name="Lee",
                       attributes={"city": "Austin"}),
        ContactFactory(phone="+14155550102", first_name="Bob", last_name="Ray",
                       attributes={"city": "austin"}),
        ContactFactory(phone="+447400123456", first_name="Cid", last_name="Poe",
                       attributes={"city": "London"}),
    ]  # fmt: skip


def test_the_builder_page_offers_lists_campaigns_and_the_script(admin_client):
    ContactListFactory(name="VIP")
    CampaignFactory(name="Spring sale")
    response = admin_client.get(ADD)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="segment-builder"' in html
    assert 'src="/static/campaigns/segment_builder.js"' in html
    options = response.context["builder_options"]
    assert [item["name"] for item in options["lists"]] == ["VIP"]
    assert [item["name"] for item in options["campaigns"]] == ["Spring sale"]
    assert f'data-count-url="{COUNT}"' in html


def test_saving_a_segment_from_the_builder(admin_client, contacts):
    response = admin_client.post(
        ADD,
        {
            "name": "Austin",
            "description": "",
            "match": "all",
            "conditions": json.dumps(
                [*AUSTIN, {"type": "country", "countries": ["us"]}]
            ),
        },
    )
    assert response.status_code == 302
    segment = Segment.objects.get()
    assert segment.conditions == [*AUSTIN, {"type": "country", "countries": ["US"]}]
    changelist = admin_client.get(
        reverse("admin:campaigns_segment_changelist")
    ).content.decode()
    assert "Attribute “city” is “Austin”" in changelist
    assert "Country is US" in changelist


def test_the_builder_refuses_bad_conditions_with_their_reason(admin_client):
    response = admin_client.post(
        ADD,
        {
            "name": "Bad",
            "match": "all",
            "conditions": json.dumps([{"type": "quiet", "days": -1}]),
        },
    )
    assert response.status_code == 200
    assert "Condition 1: “days” must be a whole number" in response.content.decode()
    assert not Segment.objects.exists()


def test_the_live_count_and_sample(admin_client, contacts):
    response = admin_client.post(
        COUNT, {"match": "all", "conditions": json.dumps(AUSTIN)}
    )
    body = response.json()
    assert (body["contacts"], body["reachable"]) == (2, 2)
    assert [row["name"] for row in body["sample"]] == ["Ann Lee", "Bob Ray"]
    assert body["conditions"] == ["Attribute “city” is “Austin”"]

    any_ = admin_client.post(
        COUNT,
        {
            "match": "any",
            "conditions": json.dumps(
                [*AUSTIN, {"type": "country", "countries": ["GB"]}]
            ),
        },
    ).json()
    assert any_["contacts"] == 3


def test_the_live_count_explains_bad_conditions(admin_client):
    response = admin_client.post(
        COUNT, {"conditions": json.dumps([{"type": "country", "countries": []}])}
    )
    assert response.status_code == 400
    assert "Condition 1:" in response.json()["problems"][0]


def test_without_contact_permission_the_count_shows_no_contacts(client, contacts):
    user = get_user_model().objects.create_user("marketer", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(
            codename="view_segment", content_type__app_label="campaigns"
        )
    )
    client.force_login(user)
    us = [{"type": "country", "countries": ["US"]}]
    body = client.post(COUNT, {"conditions": json.dumps(us)}).json()
    assert body["contacts"] == 2
    assert body["sample"] == []
    assert body["contacts_hidden"] is True
    # Counting by details would spell them out, a character at a time.
    probe = [{"type": "field", "field": "phone", "op": "contains", "value": "+1415"}]
    response = client.post(COUNT, {"conditions": json.dumps(probe)})
    assert response.status_code == 403
    assert "may see contacts" in response.json()["problems"][0]


def test_a_segment_in_use_is_not_deleted_from_the_admin(admin_client):
    segment = Segment.objects.create(name="Austin", conditions=AUSTIN)
    CampaignFactory(name="Spring").segments.add(segment)
    response = admin_client.post(
        reverse("admin:campaigns_segment_delete", args=[segment.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert Segment.objects.exists()


# --- In the composer ----------------------------------------------------------------


def test_the_composer_counts_lists_and_segments(admin_client, contacts):
    vip = ContactListFactory()
    contacts[2].lists.add(vip)
    contacts[0].lists.add(vip)
    segment = Segment.objects.create(name="Austin", conditions=AUSTIN)
    response = admin_client.post(
        reverse("admin:campaigns_campaign_compose"),
        {
            "body": "Hi",
            "provider": "locmem",
            "lists": [vip.pk],
            "segments": [segment.pk],
        },
    )
    audience = response.json()["audience"]
    assert (
        audience["in_lists"],
        audience["in_segments"],
        audience["duplicates"],
        audience["recipients"],
    ) == (2, 2, 1, 3)


def test_a_campaign_is_composed_with_segments(admin_client, contacts):
    segment = Segment.objects.create(name="Austin", conditions=AUSTIN)
    response = admin_client.post(
        reverse("admin:campaigns_campaign_add"),
        {
            "name": "Austin sale",
            "body": "Hi {first_name}",
            "opt_out_footer": "",
            "provider": "locmem",
            "sender": "",
            "fallback_provider": "",
            "segments": [segment.pk],
            "frequency_cap": "off",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign = Campaign.objects.get()
    assert list(campaign.segments.all()) == [segment]
    assert campaign.frequency_cap == "off"
    page = admin_client.get(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    ).content.decode()
    assert 'id="composer-in-segments"' in page
