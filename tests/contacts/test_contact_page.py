"""A contact's page as a marketer edits it: attributes as rows, list names, and where
each membership came from kept as recorded."""

import re

import pytest

from django.urls import reverse

from contacts.models import ListMembership, Source
from tests.factories import ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db


def change_url(contact) -> str:
    return reverse("admin:contacts_contact_change", args=[contact.pk])


def form_data(contact, **fields) -> dict:
    """What the page posts back unchanged: the contact's fields and its inlines."""
    memberships = list(contact.memberships.order_by("pk"))
    data = {
        "phone": contact.phone,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "time_zone_set": contact.time_zone_set,
        "memberships-TOTAL_FORMS": str(len(memberships)),
        "memberships-INITIAL_FORMS": str(len(memberships)),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        "consent_events-TOTAL_FORMS": "0",
        "consent_events-INITIAL_FORMS": "0",
        "consent_events-MIN_NUM_FORMS": "0",
        "consent_events-MAX_NUM_FORMS": "1000",
    }
    for index, membership in enumerate(memberships):
        data[f"memberships-{index}-id"] = str(membership.pk)
        data[f"memberships-{index}-contact"] = str(contact.pk)
        data[f"memberships-{index}-contact_list"] = str(membership.contact_list_id)
    data.update(fields)
    return data


def test_attributes_are_edited_as_name_and_value_rows(admin_client):
    contact = ContactFactory(attributes={"city": "Paris", "shoe": 38, "vip": True})
    page = admin_client.get(change_url(contact)).content.decode()
    assert 'class="attributes-widget"' in page
    assert 'name="attributes_key" value="city"' in page
    assert 'name="attributes_value" value="Paris"' in page
    assert '{"city"' not in page  # no raw JSON to edit

    data = form_data(contact)
    rows = {
        "attributes_key": ["city", "shoe", "vip", "tier", ""],
        "attributes_value": ["Lyon", "38", "true", "gold", ""],
        "attributes_json": ["0", "1", "1", "0", "0"],
    }
    response = admin_client.post(change_url(contact), {**data, **rows})
    assert response.status_code == 302, response.content.decode()[:2000]
    contact.refresh_from_db()
    # Unchanged values keep their type; new ones are text.
    assert contact.attributes == {
        "city": "Lyon",
        "shoe": 38,
        "vip": True,
        "tier": "gold",
    }


def test_an_emptied_value_removes_the_attribute_and_a_nameless_one_is_refused(
    admin_client,
):
    contact = ContactFactory(attributes={"city": "Paris", "tier": "gold"})
    rows = {
        "attributes_key": ["city", "tier"],
        "attributes_value": ["Paris", ""],
        "attributes_json": ["0", "0"],
    }
    admin_client.post(change_url(contact), {**form_data(contact), **rows})
    contact.refresh_from_db()
    assert contact.attributes == {"city": "Paris"}

    rows = {
        "attributes_key": ["city", ""],
        "attributes_value": ["Paris", "orphan"],
        "attributes_json": ["0", "0"],
    }
    response = admin_client.post(change_url(contact), {**form_data(contact), **rows})
    assert response.status_code == 200
    assert "Give each value a name." in response.content.decode()


def test_list_rows_name_the_list_and_the_source_is_read_only(admin_client):
    contact = ContactFactory()
    vip = ContactListFactory(name="VIP customers")
    ListMembership.objects.create(contact=contact, contact_list=vip, source=Source.API)
    page = admin_client.get(change_url(contact)).content.decode()
    assert "VIP customers" in page
    assert not re.search(rf"\b{contact.pk} in {vip.pk}\b", page)
    assert 'name="memberships-0-source"' not in page  # shown, not a choice
    assert ">API<" in page
