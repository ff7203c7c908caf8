"""Finding 11: the documented 10,000-record JSON import failed above 1 MB of body."""

import json

import pytest

from django.conf import settings

from contacts.models import Contact
from contacts.serializers import MAX_IMPORT_RECORDS
from smscampaigns.models import Scope

pytestmark = pytest.mark.django_db


def test_ten_thousand_records_over_one_megabyte_import(key_api):
    records = [
        {
            "phone": f"+1415555{n:04d}",
            "first_name": "Alexandria-Maximiliana",
            "last_name": "Featherstonehaugh",
            "attributes": {"city": "San Francisco", "plan": "gold", "n": n},
        }
        for n in range(MAX_IMPORT_RECORDS)
    ]
    body = json.dumps({"contacts": records})
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = key_api(Scope.WRITE_CONTACTS).generic(
        "POST", "/api/v1/contacts/import/", body, content_type="application/json"
    )
    assert response.status_code == 200, response.content[:300]
    assert response.json()["created"] == MAX_IMPORT_RECORDS
    assert Contact.objects.count() == MAX_IMPORT_RECORDS


def test_other_endpoints_keep_the_global_cap(key_api):
    body = json.dumps({"phone": "+14155550100", "first_name": "x" * 1_100_000})
    response = key_api(Scope.WRITE_CONTACTS).generic(
        "POST", "/api/v1/contacts/", body, content_type="application/json"
    )
    assert response.status_code in (400, 413)
    assert not Contact.objects.exists()


def test_the_import_has_its_own_cap(key_api, settings):
    settings.CONTACT_IMPORT_MAX_JSON_BYTES = 1000
    body = json.dumps({"contacts": [{"phone": f"+1415555{n:04d}"} for n in range(60)]})
    response = key_api(Scope.WRITE_CONTACTS).generic(
        "POST", "/api/v1/contacts/import/", body, content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not Contact.objects.exists()
