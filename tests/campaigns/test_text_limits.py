"""Texts too long for the chosen provider (issue 13, rows 6 and 14, Vonage's 1,000):
refused when the campaign is composed (admin form, API) or sent (CLI), naming the
vendor's limit; the backends refuse them per message before any request."""

from io import StringIO

import pytest
import responses

from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from campaigns.models import Campaign
from providers import get_provider
from providers.messages import OutboundSms, SendErrorKind
from tests.campaigns.test_api import api  # noqa: F401
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory
from tests.webhooks.test_views import vendors  # noqa: F401

pytestmark = pytest.mark.django_db

ADD = reverse("admin:campaigns_campaign_add")
FOOTER = "Reply STOP to opt out"


@pytest.fixture(autouse=True)
def _vendors(vendors):  # noqa: F811
    """Vonage, Plivo and Sinch configured with (fake) credentials."""


@pytest.fixture
def audience():
    contact_list = ContactListFactory()
    ContactFactory(first_name="Ann").lists.add(contact_list)
    return contact_list


def test_backend_limits_name_the_vendor_and_the_number():
    assert get_provider("vonage").text_problem("x" * 1001) == (
        "The text is 1001 characters; Vonage accepts at most 1000."
    )
    assert get_provider("vonage").text_problem("x" * 1000) == ""
    plivo = get_provider("plivo")
    assert "at most 737" in plivo.text_problem("é" * 600 + "ł" * 200)
    assert plivo.text_problem("ł" * 737) == ""
    assert plivo.text_problem("x" * 1600) == ""
    assert "at most 1600" in plivo.text_problem("x" * 1601)
    assert "at most 2000" in get_provider("sinch").text_problem("x" * 2001)


def test_plivo_refuses_an_800_character_unicode_text_without_a_request():
    plivo = get_provider("plivo")
    with responses.RequestsMock():  # any request would fail the test
        [result] = plivo.send_messages(
            [OutboundSms(to="+14155550123", text="ł" * 800, reference="r1")]
        )
    assert result.error.kind == SendErrorKind.PERMANENT
    assert result.error.code == "text_too_long"
    assert "Plivo accepts at most 737" in result.error.reason


def test_admin_form_refuses_a_body_too_long_for_the_provider(admin_client, audience):
    response = admin_client.post(
        ADD,
        {
            "name": "Long",
            "body": "Hi {first_name}! " + "x" * 990,
            "opt_out_footer": FOOTER,
            "provider": "vonage",
            "sender": "",
            "fallback_provider": "",
            "lists": [audience.pk],
        },
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert (
        "Too long for provider &#x27;vonage&#x27; (without the personal details)"
        in html
    )
    assert "Vonage accepts at most 1000" in html
    assert not Campaign.objects.exists()


def test_api_refuses_a_body_too_long_for_the_provider(api, audience):  # noqa: F811
    response = api.post(
        "/api/v1/campaigns/",
        {
            "name": "Long",
            "body": "ł" * 730,
            "provider": "plivo",
            "lists": [audience.pk],
        },
        format="json",
    )

    assert response.status_code == 400
    assert "Plivo accepts at most 737" in str(response.json())
    assert not Campaign.objects.exists()


def test_api_accepts_the_same_body_for_a_provider_that_takes_it(api, audience):  # noqa: F811
    response = api.post(
        "/api/v1/campaigns/",
        {
            "name": "Long",
            "body": "ł" * 730,
            "provider": "sinch",
            "lists": [audience.pk],
        },
        format="json",
    )

    assert response.status_code == 201, response.json()


def test_switching_to_a_provider_with_a_lower_limit_is_refused(api, audience):  # noqa: F811
    campaign = CampaignFactory(lists=[audience], provider="sinch", body="x" * 1500)

    response = api.patch(
        f"/api/v1/campaigns/{campaign.pk}/", {"provider": "vonage"}, format="json"
    )

    assert response.status_code == 400
    assert "Vonage accepts at most 1000" in str(response.json())


def test_send_campaign_refuses_a_text_too_long_for_its_provider(audience):
    # Stored before the limit was checked (or by another path): the CLI still stops.
    campaign = CampaignFactory(lists=[audience], provider="vonage", body="x" * 1200)

    with pytest.raises(CommandError, match="Vonage accepts at most 1000"):
        call_command("send_campaign", str(campaign.pk), stdout=StringIO())
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
