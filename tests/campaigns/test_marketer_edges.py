"""What stood in a marketer's way on the campaign pages: a false "no worker" alarm,
commands to run, figures that contradicted each other, buttons that looked alike,
masked own numbers, lists wider than the screen."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest

from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from campaigns.admin.actions import _encodings_text
from campaigns.models import Campaign, DispatchSession
from campaigns.preview import format_money, round_cost
from campaigns.stats import campaign_snapshot_take
from contacts.models import ConsentEvent, Source
from tests.campaigns.test_admin_dashboard import count, element
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    MessageFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_heartbeats_from_other_tests():
    cache.clear()


def change_url(campaign) -> str:
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def sending(**fields) -> Campaign:
    campaign = CampaignFactory(
        status=Campaign.Status.SENDING,
        started_at=timezone.now() - timedelta(minutes=5),
        **fields,
    )
    MessageFactory(campaign=campaign, status="queued")
    return campaign


def age(campaign: Campaign, seconds: float) -> None:
    """Make the campaign's last change ``seconds`` old."""
    Campaign.objects.filter(pk=campaign.pk).update(
        updated_at=timezone.now() - timedelta(seconds=seconds)
    )


def marketer() -> User:
    user = User.objects.create_user("marketer", password="x", is_staff=True)
    for codename in ("view_campaign", "change_campaign", "view_message"):
        user.user_permissions.add(
            Permission.objects.get(
                content_type__app_label="campaigns", codename=codename
            )
        )
    return user


# --- 7: no false alarm, no commands for marketers -----------------------------------


def test_no_worker_warning_waits_for_a_grace_period(admin_client):
    campaign = sending()  # just sent: updated_at is now
    response = admin_client.get(change_url(campaign))
    assert element(response, "dashboard-worker-missing") is None

    age(campaign, 60)
    response = admin_client.get(change_url(campaign))
    assert element(response, "dashboard-worker-missing") is not None


def test_no_worker_warning_while_a_dispatcher_is_alive(admin_client):
    campaign = sending()
    age(campaign, 60)
    # A worker busy with another campaign comes round to this one.
    DispatchSession.objects.create(host="worker-1", pid=1)
    response = admin_client.get(change_url(campaign))
    assert element(response, "dashboard-worker-missing") is None


def test_marketers_are_told_to_ask_not_to_run_commands(client, admin_client):
    campaign = sending()
    age(campaign, 60)
    client.force_login(marketer())
    _, text = element(client.get(change_url(campaign)), "dashboard-worker-missing")
    assert "ask your administrator" in text.lower()
    assert "manage.py" not in text

    # Superusers run the server: they get the command.
    _, text = element(
        admin_client.get(change_url(campaign)), "dashboard-worker-missing"
    )
    assert "python manage.py run_worker" in text


def test_the_send_confirmation_names_no_command(admin_client):
    campaign = CampaignFactory(lists=[ContactListFactory()])
    page = admin_client.get(
        reverse("admin:campaigns_campaign_send", args=[campaign.pk])
    ).content.decode()
    assert "manage.py" not in page
    assert "A worker starts sending within seconds." in page


# --- 8: figures that agree ----------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "unit_price", "text"),
    [
        (Decimal("2.415"), False, "$2.42"),
        (Decimal("2.4149"), False, "$2.41"),
        (Decimal("0.0075"), False, "$0.0075"),  # under a cent: not shown as zero
        (Decimal("0.0125"), False, "$0.01"),
        (Decimal("0.0125"), True, "$0.0125"),  # a price per segment keeps its digits
    ],
)
def test_one_rounding_for_every_cost(amount, unit_price, text):
    assert format_money(amount, "USD", unit_price=unit_price) == text


def test_a_cost_rounds_half_up_to_the_cent():
    assert round_cost(Decimal("2.425")) == Decimal("2.43")


def test_the_audience_encoding_agrees_with_a_mixed_sample(admin_client, settings):
    settings.SMS_PRICE_PER_SEGMENT = {"locmem": Decimal("0.05")}
    audience = ContactListFactory()
    # The first contact (the sample's) needs UCS-2; the other two do not.
    ContactFactory(first_name="Łukasz").lists.add(audience)
    ContactFactory(first_name="Ada").lists.add(audience)
    ContactFactory(first_name="Bob").lists.add(audience)
    campaign = CampaignFactory(
        lists=[audience], provider="locmem", body="Hi {first_name}!"
    )
    page = admin_client.get(
        reverse("admin:campaigns_campaign_send", args=[campaign.pk])
    ).content.decode()
    assert "GSM-7 for 2, UCS-2 for 1 of 3 sampled" in page
    assert "UCS-2" in page.split('id="confirm-message"')[1]
    assert _encodings_text({"gsm7": 5}) == "GSM-7"


def test_replied_stop_counts_stop_replies_only(admin_client):
    campaign = CampaignFactory(
        status=Campaign.Status.SENDING, started_at=timezone.now()
    )
    sent = timezone.now() - timedelta(hours=1)
    stop, signal = (
        MessageFactory(campaign=campaign, status="delivered", submitted_at=sent)
        for _ in range(2)
    )
    ConsentEvent.objects.create(
        phone=stop.to, kind=ConsentEvent.Kind.OPT_OUT, source=Source.KEYWORD
    )
    ConsentEvent.objects.create(
        phone=signal.to, kind=ConsentEvent.Kind.OPT_OUT, source=Source.PROVIDER
    )
    campaign_snapshot_take(campaign=campaign)
    response = admin_client.get(change_url(campaign))
    assert count(response, "replied-stop") == 1
    assert count(response, "opted-out-later") == 1
    _, _label = element(response, "dashboard-count-opted-out-later")
    page = response.content.decode()
    assert "Opted out otherwise" in page
    assert "provider&#x27;s opt-out signal" in page or "provider's opt-out" in page


def test_a_vendor_opt_out_intent_is_recorded_as_its_signal():
    from providers.messages import InboundSms
    from webhooks.services import inbound_message_record

    inbound_message_record(
        provider="locmem",
        inbound=InboundSms(
            from_number="+14155550123",
            to_number="+12025550100",
            text="please no more",
            keyword_hint="optout",
        ),
    )
    inbound_message_record(
        provider="locmem",
        inbound=InboundSms(
            from_number="+14155550124", to_number="+12025550100", text="STOP"
        ),
    )
    sources = dict(ConsentEvent.objects.values_list("phone", "source"))
    assert sources == {"+14155550123": Source.PROVIDER, "+14155550124": Source.KEYWORD}


@pytest.mark.parametrize(
    "changelist",
    [
        "campaigns_campaign",
        "campaigns_message",
        "campaigns_segment",
        "contacts_contact",
        "contacts_contactlist",
        "contacts_pendingsignup",
        "webhooks_inboundmessage",
        "smscampaigns_apikey",
    ],
)
def test_list_pages_are_titled_by_what_they_list(admin_client, changelist):
    page = admin_client.get(reverse(f"admin:{changelist}_changelist"))
    assert page.status_code == 200
    assert not re.search(r"<h1>Select ", page.content.decode())


def test_counts_and_titles_read_well(admin_client):
    page = admin_client.get(reverse("admin:campaigns_campaign_changelist"))
    assert "<h1>Campaigns</h1>" in page.content.decode()
    assert "Select campaign to change" not in page.content.decode()
    page = admin_client.get(reverse("admin:webhooks_inboundmessage_changelist"))
    assert "inbox" not in re.findall(r"\d+ (\w+)", page.content.decode())
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert ">Inbox</a>" in index


# --- 9: the primary action, own numbers --------------------------------------------


def test_send_now_is_the_primary_button(admin_client):
    campaign = CampaignFactory()
    page = admin_client.get(change_url(campaign)).content.decode()
    assert re.search(r'id="action-send" class="primary"', page)
    assert not re.search(r'id="action-test" class="primary"', page)


def test_the_test_send_shows_the_numbers_typed(
    admin_client, settings, django_capture_on_commit_callbacks
):
    settings.SMS_PRICE_PER_SEGMENT = {"locmem": Decimal("0.05")}
    campaign = CampaignFactory(provider="locmem", body="Hi!")
    url = reverse("admin:campaigns_campaign_test", args=[campaign.pk])
    page = admin_client.get(url).content.decode()
    fingerprint = re.search(r'id="confirm-fingerprint" value="(\w+)"', page)[1]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            url, {"fingerprint": fingerprint, "numbers": "+14155550199"}
        )
    [text] = [str(m) for m in get_messages(response.wsgi_request)]
    assert "+14155550199" in text


# --- 10: lists that fit -------------------------------------------------------------


def test_the_message_list_shows_name_and_text_cut_short(admin_client):
    ada = ContactFactory(first_name="Ada", last_name="Lovelace")
    MessageFactory(contact=ada, to=ada.phone, body="Spring sale! " * 20)
    page = admin_client.get(
        reverse("admin:campaigns_message_changelist")
    ).content.decode()
    assert "Ada Lovelace" in page
    assert "Spring sale! Spring sale!" in page
    assert "…" in page
    headers = re.findall(r'<th scope="col" class="[^"]*(column-[\w-]+)', page)
    assert headers == [
        "column-id",
        "column-campaign_name",
        "column-recipient",
        "column-text",
        "column-status",
        "column-error_code",
        "column-changed",
        "column-clicked",
    ]


def test_the_campaign_list_has_five_columns_and_cuts_long_names(admin_client):
    CampaignFactory(name="A very long campaign name " * 4)
    page = admin_client.get(
        reverse("admin:campaigns_campaign_changelist")
    ).content.decode()
    headers = re.findall(r'<th scope="col" class="[^"]*(column-[\w-]+)', page)
    assert headers == [
        "column-short_name",
        "column-status_badge",
        "column-progress",
        "column-provider",
        "column-when",
    ]
    assert "Created " in page
    assert "…" in page
