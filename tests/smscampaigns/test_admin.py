import pytest

from django.urls import reverse

from campaigns.models import Campaign
from tests.factories import CampaignFactory, ContactFactory, MessageFactory

pytestmark = pytest.mark.django_db

MODELS = [
    "contacts_contact",
    "contacts_contactlist",
    "contacts_consentevent",
    "contacts_suppression",
    "campaigns_campaign",
    "campaigns_message",
    "campaigns_deliveryevent",
    "webhooks_inboundmessage",
]


@pytest.mark.parametrize("model", MODELS)
def test_every_model_has_a_searchable_changelist(admin_client, model):
    MessageFactory()
    response = admin_client.get(reverse(f"admin:{model}_changelist"), {"q": "415"})
    assert response.status_code == 200


def test_contact_admin_normalizes_the_number(admin_client):
    response = admin_client.post(
        reverse("admin:contacts_contact_add"),
        {
            "phone": "(415) 555-0188",
            "first_name": "Grace",
            "last_name": "Hopper",
            "attributes": "{}",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
            "consent_events-TOTAL_FORMS": "0",
            "consent_events-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ContactFactory._meta.model.objects.get().phone == "+14155550188"


def test_contact_admin_shows_a_clear_error_for_a_bad_number(admin_client):
    response = admin_client.post(
        reverse("admin:contacts_contact_add"),
        {
            "phone": "12345",
            "attributes": "{}",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
            "consent_events-TOTAL_FORMS": "0",
            "consent_events-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert "12345 is not a valid phone number" in response.content.decode()


def test_campaign_admin_records_who_created_it(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:campaigns_campaign_add"),
        {
            "name": "Spring",
            "body": "Hi {first_name}",
            "provider": "simulator",
            "sender": "",
        },
    )
    assert response.status_code == 302
    assert Campaign.objects.get().created_by == admin_user


def test_campaign_page_opens(admin_client):
    campaign = CampaignFactory()
    response = admin_client.get(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    )
    assert response.status_code == 200


def test_the_index_puts_the_marketers_work_first(admin_client):
    response = admin_client.get(reverse("admin:index"))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="start-here"' in html
    assert reverse("admin:campaigns_campaign_add") in html
    # Campaigns and contacts come before the plumbing (API keys, users).
    assert html.index("app-campaigns") < html.index("app-contacts")
    assert html.index("app-contacts") < html.index("app-smscampaigns")
    assert html.index("app-smscampaigns") < html.index("app-auth")
