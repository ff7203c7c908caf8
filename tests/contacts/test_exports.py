"""Contacts as CSV: attributes, lists and opt-out state, from the admin and the API."""

import csv
import io
from datetime import UTC, datetime

import pytest
from rest_framework.test import APIClient

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.urls import reverse

from contacts.exports import BASE_COLUMNS
from contacts.models import Source, Suppression
from smscampaigns.models import ApiKey, Scope
from tests.factories import ContactFactory, ContactListFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("smscampaigns.urls")]

CHANGELIST = reverse("admin:contacts_contact_changelist")
EXPORT = reverse("admin:contacts_contact_export")
OPTED_OUT_AT = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


@pytest.fixture
def people():
    """Ann (Austin, in VIP and Spring), Bob (opted out, formula in his city), and
    Cid, whose number is suppressed."""
    vip = ContactListFactory(name="VIP")
    spring = ContactListFactory(name="Spring")
    ann = ContactFactory(
        phone="+14155550101",
        first_name="Ann",
        last_name="Lee",
        attributes={"city": "Austin", "tier": 2},
    )
    ann.lists.add(vip, spring)
    bob = ContactFactory(
        phone="+14155550102",
        first_name="Bob",
        last_name="",
        attributes={"city": "=1+2", "phone": "old"},
        opted_out_at=OPTED_OUT_AT,
        opt_out_source=Source.KEYWORD,
    )
    bob.lists.add(spring)
    cid = ContactFactory(phone="+14155550103", first_name="Cid", last_name="Roe")
    Suppression.objects.create(phone=cid.phone)
    return {"ann": ann, "bob": bob, "cid": cid, "vip": vip}


def read(response) -> list[dict[str, str]]:
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(body)))


def test_the_changelist_exports_every_contact_with_lists_and_opt_out_state(
    admin_client, people
):
    page = admin_client.get(CHANGELIST)
    assert 'id="export-contacts"' in page.text

    response = admin_client.get(EXPORT)
    assert response["Content-Disposition"].startswith('attachment; filename="contacts-')
    rows = read(response)

    assert list(rows[0]) == [*BASE_COLUMNS, "city", "attribute:phone", "tier"]
    ann, bob, cid = rows
    assert (ann["phone"], ann["first_name"], ann["last_name"]) == (
        "+14155550101",
        "Ann",
        "Lee",
    )
    assert ann["lists"] == "Spring; VIP"
    assert (ann["city"], ann["tier"], ann["attribute:phone"]) == ("Austin", "2", "")
    assert (ann["opted_out"], ann["opted_out_at"], ann["suppressed"]) == (
        "no",
        "",
        "no",
    )
    assert (bob["opted_out"], bob["opted_out_at"], bob["opt_out_source"]) == (
        "yes",
        "2026-11-30T09:15:00Z",
        "keyword",
    )
    assert bob["city"] == "'=1+2"
    assert bob["attribute:phone"] == "old"
    assert (cid["suppressed"], cid["lists"]) == ("yes", "")
    assert ann["country"] == "US"
    assert ann["id"] == str(people["ann"].pk)


def test_the_export_follows_the_changelist_filters(admin_client, people):
    vip = people["vip"].pk
    page = admin_client.get(CHANGELIST, {"memberships__contact_list__id__exact": vip})
    assert f"{EXPORT}?memberships__contact_list__id__exact={vip}" in page.text

    rows = read(admin_client.get(EXPORT, {"memberships__contact_list__id__exact": vip}))
    assert [row["first_name"] for row in rows] == ["Ann"]
    # Only the attributes of the contacts exported get a column.
    assert "attribute:phone" not in rows[0]

    rows = read(admin_client.get(EXPORT, {"subscription": "opted_out"}))
    assert [row["first_name"] for row in rows] == ["Bob"]


def test_a_filter_the_changelist_cannot_apply_goes_back_to_it(admin_client, people):
    response = admin_client.get(EXPORT, {"no_such_field": "1"})
    assert response.status_code == 302
    assert response["Location"] == f"{CHANGELIST}?e=1"


def test_the_action_exports_the_selected_contacts(admin_client, people):
    response = admin_client.post(
        CHANGELIST,
        {
            "action": "export_csv",
            ACTION_CHECKBOX_NAME: [people["ann"].pk, people["cid"].pk],
        },
    )
    assert [row["first_name"] for row in read(response)] == ["Ann", "Cid"]


def test_staff_without_contact_data_permission_cannot_export(client, people):
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client.force_login(user)
    assert client.get(EXPORT).status_code == 403


# --- API ---------------------------------------------------------------------------


def api_client(*scopes: str) -> APIClient:
    _, raw = ApiKey.generate(name="crm", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def test_the_api_exports_contacts_with_the_list_filters(people):
    client = api_client(Scope.READ)
    rows = read(client.get("/api/v1/contacts/export/"))
    assert [row["first_name"] for row in rows] == ["Ann", "Bob", "Cid"]

    rows = read(client.get("/api/v1/contacts/export/", {"opted_out": "true"}))
    assert [row["first_name"] for row in rows] == ["Bob"]
    rows = read(client.get("/api/v1/contacts/export/", {"list": people["vip"].pk}))
    assert [row["lists"] for row in rows] == ["Spring; VIP"]


def test_the_api_refuses_a_bad_filter_and_a_key_without_read(people):
    bad = api_client(Scope.READ).get("/api/v1/contacts/export/", {"opted_out": "ture"})
    assert bad.status_code == 400
    refused = api_client(Scope.SEND).get("/api/v1/contacts/export/")
    assert refused.status_code == 403


def test_an_empty_export_is_the_header_alone(admin_client):
    response = admin_client.get(EXPORT)
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    assert body == ",".join(BASE_COLUMNS) + "\r\n"
