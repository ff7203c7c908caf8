"""Tracked links in the composer, the campaign page and the API's figures."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from rest_framework.test import APIClient

from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from campaigns.clicks import link_click_record
from campaigns.links import sample_short_url
from campaigns.models import Campaign, CampaignSnapshot, Message
from campaigns.stats import campaign_can_change, campaign_snapshot_take, campaign_stats
from smscampaigns.models import ApiKey, Scope
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("smscampaigns.urls")]

BASE = "https://sms.example.com"
PHONE = (
    "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36"
)
COMPOSE = reverse("admin:campaigns_campaign_compose")


@pytest.fixture(autouse=True)
def _setup(settings):
    settings.PUBLIC_BASE_URL = BASE
    cache.clear()


@pytest.fixture
def audience():
    contact_list = ContactListFactory()
    for name in ["Ada", "Alan", "Grace", "Edsger"]:
        ContactFactory(first_name=name).lists.add(contact_list)
    return contact_list


@pytest.fixture
def campaign(audience):
    campaign = CampaignFactory(
        lists=[audience], provider="locmem", body="Hi {first_name}: https://a.example/x"
    )
    call_command("send_campaign", str(campaign.pk), stdout=StringIO())
    # locmem accepts; receipts say delivered.
    Message.objects.filter(campaign=campaign).update(status=Message.Status.DELIVERED)
    campaign.refresh_from_db()
    return campaign


def click(campaign: Campaign, first_name: str, agent: str = PHONE) -> None:
    body = Message.objects.get(campaign=campaign, contact__first_name=first_name).body
    code = re.search(r"/l/(\w{8})", body).group(1)
    assert link_click_record(code=code, user_agent=agent)


@pytest.fixture
def api() -> APIClient:
    _, raw = ApiKey.generate(name="shop", scopes=Scope.values)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


# --- Composer ---------------------------------------------------------------------------


def test_the_composer_counts_and_shows_the_short_link(admin_client):
    body = "Deals: https://shop.example.com/a/long/path/with/many/parts?utm_source=sms"
    answer = admin_client.post(
        COMPOSE, {"body": body, "opt_out_footer": "", "provider": "locmem"}
    ).json()
    assert answer["message"]["text"] == f"Deals: {sample_short_url()}"
    assert answer["message"]["characters"] == len(f"Deals: {sample_short_url()}")
    assert answer["links"]["tracked"] is True
    assert "1 link tracked" in answer["links"]["text"]


def test_the_composer_counts_links_as_written_when_tracking_is_off(admin_client):
    body = "Deals: https://shop.example.com/spring"
    answer = admin_client.post(
        COMPOSE,
        {
            "body": body,
            "opt_out_footer": "",
            "provider": "locmem",
            "track_links": "false",
        },
    ).json()
    assert answer["message"]["text"] == body
    assert answer["links"]["tracked"] is False
    assert "sent as written" in answer["links"]["text"]


def test_the_campaign_form_offers_to_turn_tracking_off(admin_client):
    html = admin_client.get(reverse("admin:campaigns_campaign_add")).content.decode()
    assert 'id="id_track_links"' in html
    assert (
        "checked" in re.search(r"<input[^>]*id=\"id_track_links\"[^>]*>", html).group()
    )
    created = admin_client.post(
        reverse("admin:campaigns_campaign_add"),
        {
            "name": "No tracking",
            "body": "See https://a.example",
            "opt_out_footer": "",
            "provider": "locmem",
            "sender": "",
            "fallback_provider": "",
        },
    )
    assert created.status_code == 302
    assert Campaign.objects.get(name="No tracking").track_links is False


# --- Figures ----------------------------------------------------------------------------


def test_stats_count_unique_clicks_and_the_click_through_rate(campaign):
    click(campaign, "Ada")
    click(campaign, "Ada")
    click(campaign, "Alan")
    click(campaign, "Grace", agent="WhatsApp/2.23.20.0")  # a preview, not a click
    stats = campaign_stats(campaign=campaign)
    assert (stats.unique_clicks, stats.clicks) == (2, 3)
    assert stats.click_rate == 0.5


def age_snapshots(campaign: Campaign) -> None:
    """Figures are snapshots up to 30 s old: make them older, so the page counts."""
    CampaignSnapshot.objects.filter(campaign=campaign).update(
        taken_at=timezone.now() - timedelta(minutes=5)
    )


def test_the_campaign_page_shows_clicks_and_the_chart_line(admin_client, campaign):
    click(campaign, "Ada")
    age_snapshots(campaign)
    html = admin_client.get(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    ).content.decode()
    count = re.search(r'id="dashboard-count-clicked" data-count="(\d+)"', html)
    assert count.group(1) == "1"
    assert "25.0% of delivered (click-through rate), 1 click in all" in html
    assert "dashboard-line-clicked" in html
    assert "1 clicked" in html


def test_the_clicked_count_links_to_the_messages_clicked(admin_client, campaign):
    click(campaign, "Alan")
    url = reverse("admin:campaigns_message_changelist")
    html = admin_client.get(
        url, {"campaign__id__exact": campaign.pk, "outcome": "clicked"}
    ).content.decode()
    assert "1 message" in html or "1 result" in html


def test_a_campaign_without_links_shows_no_click_figures(admin_client, audience):
    campaign = CampaignFactory(lists=[audience], provider="locmem", body="No links")
    call_command("send_campaign", str(campaign.pk), stdout=StringIO())
    html = admin_client.get(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    ).content.decode()
    assert "dashboard-count-clicked" not in html


def test_a_click_long_after_the_end_refreshes_the_figures(campaign):
    snapshot = campaign_snapshot_take(campaign=campaign)
    Campaign.objects.filter(pk=campaign.pk).update(
        completed_at=timezone.now() - timedelta(days=30)
    )
    CampaignSnapshot.objects.filter(pk=snapshot.pk).update(
        taken_at=timezone.now() - timedelta(days=29)
    )
    campaign.refresh_from_db()
    snapshot.refresh_from_db()
    assert campaign_can_change(campaign=campaign, snapshot=snapshot) is False
    click(campaign, "Edsger")
    assert campaign_can_change(campaign=campaign, snapshot=snapshot) is True


def test_the_api_stats_have_clicks_rate_and_clicks_per_hour(api, campaign):
    click(campaign, "Ada")
    click(campaign, "Ada")
    data = api.get(f"/api/v1/campaigns/{campaign.pk}/stats/").json()
    assert data["unique_clicks"] == 1
    assert data["clicks"] == 2
    assert data["click_rate"] == 0.25
    [hour] = data["clicks_over_time"]
    assert (hour["clicks"], hour["recipients"]) == (2, 1)


def test_the_api_messages_show_each_recipients_first_click(api, campaign):
    click(campaign, "Grace")
    rows = api.get("/api/v1/messages/", {"campaign": campaign.pk}).json()["results"]
    clicked = [row for row in rows if row["first_clicked_at"]]
    assert len(clicked) == 1
    assert clicked[0]["clicks"] == 1


def test_the_api_creates_a_campaign_without_tracking(api, audience):
    response = api.post(
        "/api/v1/campaigns/",
        {
            "name": "Plain",
            "body": "https://a.example",
            "lists": [audience.pk],
            "track_links": False,
        },
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["track_links"] is False
    assert Campaign.objects.get(name="Plain").track_links is False
