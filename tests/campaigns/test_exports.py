"""A campaign's per-recipient results as CSV, from the campaign page and the API."""

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.urls import reverse

from campaigns.exports import RESULT_COLUMNS
from campaigns.models import Message
from smscampaigns import csv_export
from smscampaigns.models import ApiKey, Scope
from tests.factories import CampaignFactory, ContactFactory, MessageFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("smscampaigns.urls")]

SENT = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)
RECEIPT = datetime(2026, 12, 5, 6, 0, 4, tzinfo=UTC)
CLICK = datetime(2026, 12, 5, 6, 12, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


@pytest.fixture
def campaign():
    """Ann's message was delivered (and she clicked), Bob's failed, Cid's is still
    queued."""
    campaign = CampaignFactory(name="Spring sale", provider="locmem")
    ann = ContactFactory(first_name="Ann", last_name="Lee", phone="+14155550101")
    bob = ContactFactory(
        first_name="=cmd|' /C calc'!A0", last_name="", phone="+14155550102"
    )
    cid = ContactFactory(first_name="Cid", last_name="Roe", phone="+14155550103")
    MessageFactory(
        campaign=campaign,
        contact=ann,
        status=Message.Status.DELIVERED,
        segments=2,
        price=Decimal("0.01500"),
        currency="EUR",
        submitted_at=SENT,
        status_changed_at=RECEIPT,
        first_clicked_at=CLICK,
    )
    MessageFactory(
        campaign=campaign,
        contact=bob,
        status=Message.Status.UNDELIVERED,
        error_code="27",
        error_reason="Absent subscriber",
        submitted_at=SENT,
        status_changed_at=RECEIPT,
    )
    MessageFactory(campaign=campaign, contact=cid)
    # Another campaign's message is not in this one's results.
    MessageFactory(campaign=CampaignFactory(provider="locmem"), contact=ann)
    return campaign


def read(response) -> list[dict[str, str]]:
    assert response.streaming
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(body)))


def staff_with(*permissions: str) -> User:
    user = User.objects.create_user(
        f"staff{User.objects.count()}", password="x", is_staff=True
    )
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def export_url(campaign) -> str:
    return reverse("admin:campaigns_campaign_export", args=[campaign.pk])


def test_the_campaign_page_downloads_one_row_per_recipient(admin_client, campaign):
    page = admin_client.get(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    )
    assert f'href="{export_url(campaign)}" id="export-results"' in page.text

    response = admin_client.get(export_url(campaign))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith(
        f'attachment; filename="campaign-{campaign.pk}-spring-sale-results-'
    )
    rows = read(response)
    assert [row["phone"] for row in rows] == [
        "+14155550101",
        "+14155550102",
        "+14155550103",
    ]
    ann, bob, cid = rows
    assert list(ann) == list(RESULT_COLUMNS)
    assert ann | {"message_id": ""} == {
        "message_id": "",
        "phone": "+14155550101",
        "first_name": "Ann",
        "last_name": "Lee",
        "status": "delivered",
        "error_code": "",
        "error_reason": "",
        "segments": "2",
        "price": "0.015",
        "currency": "EUR",
        "sent_at": "2026-12-05T06:00:00Z",
        "delivered_at": "2026-12-05T06:00:04Z",
        "first_clicked_at": "2026-12-05T06:12:30Z",
    }
    # A failure has no delivery time; its error is there.
    assert (bob["status"], bob["error_code"], bob["error_reason"]) == (
        "undelivered",
        "27",
        "Absent subscriber",
    )
    assert bob["delivered_at"] == ""
    assert bob["first_clicked_at"] == ""
    # A name a spreadsheet would run as a formula is text.
    assert bob["first_name"] == "'=cmd|' /C calc'!A0"
    assert (cid["status"], cid["sent_at"], cid["price"]) == ("queued", "", "")


def test_the_admin_download_starts_with_a_byte_order_mark(admin_client, campaign):
    response = admin_client.get(export_url(campaign))
    assert b"".join(response.streaming_content).startswith(b"\xef\xbb\xbfmessage_id,")


def test_a_deleted_contact_leaves_its_row_with_the_number(admin_client, campaign):
    Message.objects.filter(campaign=campaign, to="+14155550103").update(contact=None)
    rows = {row["phone"]: row for row in read(admin_client.get(export_url(campaign)))}
    assert len(rows) == 3
    assert rows["+14155550103"]["first_name"] == ""
    assert rows["+14155550103"]["status"] == "queued"


def test_staff_who_may_not_see_contact_data_get_no_export(client, campaign):
    user = staff_with("campaigns.view_campaign", "campaigns.view_message")
    client.force_login(user)
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert page.status_code == 200
    assert "export-results" not in page.text
    assert client.get(export_url(campaign)).status_code == 403

    user.user_permissions.add(Permission.objects.get(codename="view_contact"))
    client.force_login(User.objects.get(pk=user.pk))
    assert client.get(export_url(campaign)).status_code == 200


def test_an_unknown_campaign_is_a_404(admin_client):
    response = admin_client.get(reverse("admin:campaigns_campaign_export", args=[999]))
    assert response.status_code == 404


def test_the_export_is_written_while_it_is_read(admin_client, campaign, monkeypatch):
    monkeypatch.setattr(csv_export, "ROWS_PER_WRITE", 1)
    pieces = iter(admin_client.get(export_url(campaign)).streaming_content)
    first = next(pieces).decode("utf-8-sig")
    assert first.startswith("message_id,")
    assert first.count("\n") == 2
    assert len(list(pieces)) == 2


# --- API ---------------------------------------------------------------------------


def api_client(*scopes: str) -> APIClient:
    _, raw = ApiKey.generate(name="crm", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def test_the_api_downloads_the_same_rows_without_a_byte_order_mark(campaign):
    response = api_client(Scope.READ).get(f"/api/v1/campaigns/{campaign.pk}/export/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    body = b"".join(response.streaming_content)
    assert body.startswith(b"message_id,phone,first_name")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [row["status"] for row in rows] == ["delivered", "undelivered", "queued"]


def test_the_api_answers_accept_text_csv_and_its_errors_in_json(campaign):
    client = api_client(Scope.READ)
    ok = client.get(f"/api/v1/campaigns/{campaign.pk}/export/", HTTP_ACCEPT="text/csv")
    assert ok.status_code == 200
    for asked in ({"HTTP_ACCEPT": "text/csv"}, {"data": {"format": "csv"}}, {}):
        missing = client.get("/api/v1/campaigns/999/export/", **asked)
        assert missing.status_code == 404
        # An error is JSON, whatever was asked for.
        assert missing["Content-Type"] == "application/json"
        assert missing.json()["error"]["status"] == 404


def test_the_api_export_needs_a_read_key_or_contact_permissions(client, campaign):
    url = f"/api/v1/campaigns/{campaign.pk}/export/"
    refused = api_client(Scope.SEND).get(url)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "missing_scope"

    user = staff_with("campaigns.view_campaign", "campaigns.view_message")
    client.force_login(user)
    assert client.get(url).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_contact"))
    client.force_login(User.objects.get(pk=user.pk))
    assert client.get(url).status_code == 200
