"""Finding 9: contact attributes had no size limit below the 1 MB request cap
(100 contacts with ~0.9 MB of attributes took a sending worker from 188 to 447 MB)."""

import io

import pytest

from django.urls import reverse

from contacts.imports import contact_import_csv
from contacts.models import Contact
from contacts.validators import MAX_ATTRIBUTE_KEYS, MAX_ATTRIBUTES_BYTES
from smscampaigns.models import Scope

pytestmark = pytest.mark.django_db

BIG = {"notes": "x" * MAX_ATTRIBUTES_BYTES}
MANY = {f"k{i}": "v" for i in range(MAX_ATTRIBUTE_KEYS + 1)}


@pytest.mark.parametrize("attributes", [BIG, MANY], ids=["bytes", "keys"])
def test_the_api_refuses_oversized_attributes(key_api, attributes):
    api = key_api(Scope.WRITE_CONTACTS)
    response = api.post(
        "/api/v1/contacts/", {"phone": "+14155550100", "attributes": attributes}
    )
    assert response.status_code == 400
    assert "attributes" in response.json()["error"]["fields"]
    assert not Contact.objects.exists()


def test_a_json_import_reports_the_row_and_keeps_the_others(key_api):
    api = key_api(Scope.WRITE_CONTACTS)
    records = [
        {"phone": "+14155550101", "attributes": {"city": "Austin"}},
        {"phone": "+14155550102", "attributes": BIG},
    ]
    response = api.post("/api/v1/contacts/import/", {"contacts": records})
    assert response.status_code == 200
    body = response.json()
    assert body["created"] == 1
    assert body["errors"][0]["row"] == 2
    assert "at most 4,096 bytes" in body["errors"][0]["error"]


def test_a_csv_import_reports_the_row():
    columns = ",".join(f"c{i}" for i in range(MAX_ATTRIBUTE_KEYS + 1))
    values = ",".join("v" for _ in range(MAX_ATTRIBUTE_KEYS + 1))
    data = f"phone,{columns}\n+14155550103,{values}\n+14155550104,{'v,' * 3}\n"
    result = contact_import_csv(file=io.StringIO(data))
    assert result.created == 1
    assert result.errors[0].row == 2
    assert "at most 50 attributes" in result.errors[0].error


def test_the_admin_form_refuses_them(admin_client):
    response = admin_client.post(
        reverse("admin:contacts_contact_add"),
        {
            "phone": "+14155550105",
            # The page edits attributes as name and value rows.
            "attributes_key": "notes",
            "attributes_value": "x" * MAX_ATTRIBUTES_BYTES,
            "attributes_json": "0",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
            "consent_events-TOTAL_FORMS": "0",
            "consent_events-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert "at most 4,096 bytes" in response.content.decode()
    assert not Contact.objects.exists()
