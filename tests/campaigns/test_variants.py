"""Message variants: two to four texts, recipients split at random in set shares."""

import json
import re
from collections import Counter
from datetime import timedelta
from io import StringIO

import pytest
from rest_framework.test import APIClient

from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from campaigns.clicks import link_click_record
from campaigns.models import Campaign, CampaignSnapshot, CampaignVariant, Message
from campaigns.sending.launch import campaign_launch
from campaigns.stats import campaign_stats
from campaigns.writes import BodyError, campaign_create, campaign_update
from contacts.models import ConsentEvent, Source
from smscampaigns.models import ApiKey, Scope
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("smscampaigns.urls")]

BROWSER = (
    "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36"
)


@pytest.fixture(autouse=True)
def _setup(settings):
    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    cache.clear()


@pytest.fixture
def audience():
    contact_list = ContactListFactory()
    for number in range(200):
        ContactFactory(first_name=f"P{number}").lists.add(contact_list)
    return contact_list


def with_variants(audience, *variants, body="A text"):
    return campaign_create(
        name="Test",
        lists=[audience],
        provider="locmem",
        body=body,
        opt_out_footer="",
        variants=[{"body": text, "share": share} for text, share in variants],
    )


@pytest.fixture
def api() -> APIClient:
    _, raw = ApiKey.generate(name="shop", scopes=Scope.values)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


# --- Rules ------------------------------------------------------------------------------


def test_variants_are_stored_in_order_and_a_gets_the_rest(audience):
    campaign = with_variants(audience, ("B text", 30), ("C text", 20))
    assert campaign.variant_shares() == [(0, 50), (1, 30), (2, 20)]
    assert [str(v) for v in campaign.variants.all()] == ["Variant B", "Variant C"]


@pytest.mark.parametrize(
    ("variants", "problem"),
    [
        ([("B", 60), ("C", 40)], "variant A (the main text) needs at least 1 %"),
        ([("B", 0)], "whole percent from 1 to 98"),
        ([("", 10)], "Variant B has no text"),
        ([("Hi {nickname}", 10)], "Variant B: Unknown placeholder {nickname}"),
        ([("B", 10)] * 4, "at most 4 texts"),
    ],
)
def test_invalid_variants_are_refused(audience, variants, problem):
    with pytest.raises(BodyError) as refused:
        with_variants(audience, *variants)
    assert refused.value.field == "variants"
    assert problem in " ".join(refused.value.problems)
    assert not Campaign.objects.exists()


def test_variants_are_locked_once_sending_started(audience):
    campaign = with_variants(audience, ("B text", 50))
    campaign_launch(campaign=campaign)
    with pytest.raises(Exception, match="can no longer change"):
        campaign_update(campaign=campaign, variants=[{"body": "Other", "share": 50}])


# --- Launch and sending -----------------------------------------------------------------


def test_recipients_are_split_at_random_in_the_set_shares(audience):
    campaign = with_variants(audience, ("B text", 30), ("C text", 20))
    assert campaign_launch(campaign=campaign) == 200
    counts = Counter(
        Message.objects.filter(campaign=campaign).values_list("variant", flat=True)
    )
    # Exact to a recipient: 100, 60 and 40 of 200.
    assert counts == {0: 100, 1: 60, 2: 40}


def test_the_split_is_random_not_by_contact_order(audience):
    first = with_variants(audience, ("B text", 50))
    campaign_launch(campaign=first)
    ids = list(
        Message.objects.filter(campaign=first, variant=1)
        .order_by("contact_id")
        .values_list("contact_id", flat=True)
    )
    everyone = sorted(audience.contacts.values_list("pk", flat=True))
    assert ids != everyone[:100]
    assert ids != everyone[100:]


def test_each_recipient_gets_the_text_of_their_variant(audience, sms_outbox):
    campaign = with_variants(
        audience,
        ("B {first_name} https://b.example", 25),
        body="A {first_name} https://a.example",
    )
    call_command("send_campaign", str(campaign.pk), stdout=StringIO())
    assert len(sms_outbox) == 200
    for message in Message.objects.filter(campaign=campaign).select_related("contact"):
        letter = "AB"[message.variant]
        assert message.body.startswith(f"{letter} {message.contact.first_name} ")
        # Both texts' links are tracked, each leading to its own page.
        code = re.search(r"/l/(\w{8})", message.body).group(1)
        assert link_click_record(code=code, user_agent=BROWSER) == (
            f"https://{letter.lower()}.example"
        )


def test_a_campaign_with_one_text_has_no_variant(audience):
    campaign = CampaignFactory(lists=[audience], provider="locmem")
    campaign_launch(campaign=campaign)
    assert set(
        Message.objects.filter(campaign=campaign).values_list("variant", flat=True)
    ) == {None}


# --- Figures ----------------------------------------------------------------------------


@pytest.fixture
def sent(audience):
    campaign = with_variants(
        audience, ("B https://b.example", 50), body="A https://a.example"
    )
    call_command("send_campaign", str(campaign.pk), stdout=StringIO())
    Message.objects.filter(campaign=campaign).update(status=Message.Status.DELIVERED)
    for variant, clicks in ((0, 10), (1, 20)):
        for message in Message.objects.filter(campaign=campaign, variant=variant)[
            :clicks
        ]:
            code = re.search(r"/l/(\w{8})", message.body).group(1)
            link_click_record(code=code, user_agent=BROWSER)
    stopped = Message.objects.filter(campaign=campaign, variant=1).first()
    ConsentEvent.objects.create(
        phone=stopped.to,
        kind=ConsentEvent.Kind.OPT_OUT,
        source=Source.KEYWORD,
        created_at=timezone.now(),
    )
    # The page reads snapshots up to 30 s old: age them, so it counts again.
    CampaignSnapshot.objects.filter(campaign=campaign).update(
        taken_at=timezone.now() - timedelta(minutes=5)
    )
    return campaign


def test_stats_have_delivery_clicks_and_opt_outs_per_variant(sent):
    stats = campaign_stats(campaign=sent)
    assert stats.variants == {
        "A": {
            "messages": 100,
            "delivered": 100,
            "unique_clicks": 10,
            "clicks": 10,
            "opt_outs": 0,
        },
        "B": {
            "messages": 100,
            "delivered": 100,
            "unique_clicks": 20,
            "clicks": 20,
            "opt_outs": 1,
        },
    }
    assert stats.opt_outs == 1


def test_the_campaign_page_shows_each_variant(admin_client, sent):
    html = admin_client.get(
        reverse("admin:campaigns_campaign_change", args=[sent.pk])
    ).content.decode()
    row = re.search(r'<tr data-variant="B">(.*?)</tr>', html, re.S).group(1)
    assert "50 %" in row
    assert "20.0%" in row


def test_the_api_stats_have_each_variant(api, sent):
    data = api.get(f"/api/v1/campaigns/{sent.pk}/stats/").json()
    assert [row["variant"] for row in data["variants"]] == ["A", "B"]
    b = data["variants"][1]
    assert (b["share"], b["delivered"], b["unique_clicks"], b["opt_outs"]) == (
        50,
        100,
        20,
        1,
    )
    assert b["click_rate"] == 0.2
    message = api.get("/api/v1/messages/", {"campaign": sent.pk}).json()["results"][0]
    assert message["variant"] in ("A", "B")


# --- API and admin ----------------------------------------------------------------------


def test_the_api_takes_variants(api, audience):
    response = api.post(
        "/api/v1/campaigns/",
        {
            "name": "AB",
            "body": "Text A",
            "lists": [audience.pk],
            "variants": [{"body": "Text B", "share": 40}],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["variants"] == [
        {"label": "B", "body": "Text B", "share": 40}
    ]
    campaign = Campaign.objects.get(name="AB")
    patched = api.patch(
        f"/api/v1/campaigns/{campaign.pk}/",
        {"variants": [{"body": "B2", "share": 10}, {"body": "C2", "share": 10}]},
        format="json",
    )
    assert patched.status_code == 200
    assert [v["label"] for v in patched.json()["variants"]] == ["B", "C"]
    assert campaign.variant_shares() == [(0, 80), (1, 10), (2, 10)]


def test_the_api_refuses_shares_that_leave_nothing_for_a(api, audience):
    response = api.post(
        "/api/v1/campaigns/",
        {
            "name": "AB",
            "body": "Text A",
            "lists": [audience.pk],
            "variants": [{"body": "B", "share": 60}, {"body": "C", "share": 40}],
        },
        format="json",
    )
    assert response.status_code == 400
    assert "variants" in response.json()["error"]["fields"]


def test_the_composer_previews_and_counts_each_variant(admin_client, audience):
    answer = admin_client.post(
        reverse("admin:campaigns_campaign_compose"),
        {
            "body": "Short",
            "opt_out_footer": "",
            "provider": "locmem",
            "lists": [audience.pk],
            "variants": json.dumps([{"body": "x" * 200, "share": 50}]),
        },
    ).json()
    a, b = answer["variants"]
    assert (a["label"], a["share"], a["segments"], a["text"]) == ("A", 50, 1, "Short")
    assert (b["label"], b["share"], b["segments"]) == ("B", 50, 2)
    # Half the recipients get one segment, half two.
    assert answer["cost"]["segments_per_message"] == 1.5
    assert answer["cost"]["segments"] == 300


def test_the_admin_saves_variants_from_its_inline(admin_client, audience):
    response = admin_client.post(
        reverse("admin:campaigns_campaign_add"),
        {
            "name": "Inline",
            "body": "Text A",
            "opt_out_footer": "",
            "provider": "locmem",
            "sender": "",
            "fallback_provider": "",
            "lists": [audience.pk],
            "track_links": "on",
            "variants-TOTAL_FORMS": "2",
            "variants-INITIAL_FORMS": "0",
            "variants-MIN_NUM_FORMS": "0",
            "variants-MAX_NUM_FORMS": "3",
            "variants-0-body": "Text B",
            "variants-0-share": "25",
            "variants-1-body": "Text C",
            "variants-1-share": "25",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    campaign = Campaign.objects.get(name="Inline")
    assert list(campaign.variants.values_list("position", "body", "share")) == [
        (1, "Text B", 25),
        (2, "Text C", 25),
    ]
    page = admin_client.get(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    ).content.decode()
    assert 'id="composer-variants"' in page
    assert '<tr data-variant="C">' in page


def test_the_admin_refuses_shares_that_leave_nothing_for_a(admin_client, audience):
    response = admin_client.post(
        reverse("admin:campaigns_campaign_add"),
        {
            "name": "Too much",
            "body": "Text A",
            "opt_out_footer": "",
            "provider": "locmem",
            "sender": "",
            "fallback_provider": "",
            "lists": [audience.pk],
            "variants-TOTAL_FORMS": "2",
            "variants-INITIAL_FORMS": "0",
            "variants-MIN_NUM_FORMS": "0",
            "variants-MAX_NUM_FORMS": "3",
            "variants-0-body": "Text B",
            "variants-0-share": "60",
            "variants-1-body": "Text C",
            "variants-1-share": "40",
        },
    )
    assert response.status_code == 200
    assert "needs at least 1 %" in response.content.decode()
    assert not CampaignVariant.objects.exists()


def test_a_sending_campaign_shows_its_variants_read_only(admin_client, audience):
    campaign = with_variants(audience, ("B text", 50))
    campaign_launch(campaign=campaign)
    page = admin_client.get(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    ).content.decode()
    assert "B text" in page
    assert 'name="variants-0-body"' not in page
