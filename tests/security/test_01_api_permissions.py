"""Finding 1: a staff user with no permissions got the whole REST API through the
admin session (every number, sending, opting STOP-ers back in)."""

import pytest

from django.urls import URLPattern, URLResolver, reverse

from campaigns.models import Campaign, Message
from contacts.models import Contact
from contacts.services import contact_opt_out
from smscampaigns import api_urls
from smscampaigns.models import ApiKey, Scope
from tests.factories import ContactFactory, ContactListFactory, MessageFactory

pytestmark = pytest.mark.django_db


def assert_refused(response, code: str = "permission_denied") -> None:
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["status"] == 403
    assert error["code"] == code
    assert "+1" not in response.content.decode()


def test_staff_without_permissions_gets_nothing_from_the_api(staff_api, sms_outbox):
    contact = ContactFactory(phone="+14155550101")
    contact_opt_out(phone=contact.phone, source="keyword")
    MessageFactory(contact=contact)
    api = staff_api()

    for url in (
        "/api/v1/contacts/",
        f"/api/v1/contacts/{contact.pk}/",
        "/api/v1/messages/",
    ):
        assert_refused(api.get(url))
    assert_refused(
        api.post(
            "/api/v1/messages/bulk/",
            {"recipients": ["+14155550199"], "message": "Hello"},
            format="json",
        )
    )
    assert_refused(api.post(f"/api/v1/contacts/{contact.pk}/opt-in/"))

    contact.refresh_from_db()
    assert contact.opted_out
    assert sms_outbox == []
    assert not Campaign.objects.filter(name__startswith="Bulk").exists()


def test_reads_need_the_view_permission_and_contact_data_needs_view_contact(
    staff_api,
):
    ContactListFactory(name="VIP")
    MessageFactory()
    lists_only = staff_api("contacts.view_contactlist")
    assert lists_only.get("/api/v1/lists/").json()["results"][0]["name"] == "VIP"
    assert_refused(lists_only.get("/api/v1/contacts/"))

    # Messages hold numbers and texts: their own permission is not enough.
    assert_refused(staff_api("campaigns.view_message").get("/api/v1/messages/"))
    both = staff_api("campaigns.view_message", "contacts.view_contact")
    assert both.get("/api/v1/messages/").status_code == 200


def test_writes_need_their_model_permission(staff_api):
    contact = ContactFactory()
    viewer = staff_api("contacts.view_contact")
    assert_refused(viewer.patch(f"/api/v1/contacts/{contact.pk}/", {"first_name": "X"}))
    assert_refused(viewer.delete(f"/api/v1/contacts/{contact.pk}/"))
    editor = staff_api("contacts.view_contact", "contacts.change_contact")
    response = editor.patch(f"/api/v1/contacts/{contact.pk}/", {"first_name": "X"})
    assert response.status_code == 200
    assert Contact.objects.get(pk=contact.pk).first_name == "X"


def test_a_key_does_only_what_its_scopes_allow(key_api, sms_outbox):
    ContactFactory()
    reader = key_api(Scope.READ)
    assert reader.get("/api/v1/contacts/").status_code == 200
    assert_refused(
        reader.post("/api/v1/contacts/", {"phone": "+14155550150"}), "missing_scope"
    )
    bulk = {"recipients": ["+14155550151"], "message": "Hi"}
    assert_refused(reader.post("/api/v1/messages/bulk/", bulk), "missing_scope")

    writer = key_api(Scope.WRITE_CONTACTS)
    assert (
        writer.post("/api/v1/contacts/", {"phone": "+14155550150"}).status_code == 201
    )
    assert_refused(writer.get("/api/v1/contacts/"), "missing_scope")
    assert_refused(writer.post("/api/v1/messages/bulk/", bulk), "missing_scope")

    sender = key_api(Scope.SEND)
    assert sender.post("/api/v1/messages/bulk/", bulk).status_code == 202
    assert Message.objects.filter(to="+14155550151").exists()


def test_a_key_is_created_with_the_scopes_chosen(admin_client):
    response = admin_client.post(
        reverse("admin:smscampaigns_apikey_add"),
        {"name": "crm", "scopes": [Scope.READ, Scope.WRITE_CONTACTS]},
    )
    assert response.status_code == 302
    assert ApiKey.objects.get(name="crm").scopes == ["read", "write_contacts"]

    response = admin_client.post(
        reverse("admin:smscampaigns_apikey_add"), {"name": "nothing"}
    )
    assert response.status_code == 200  # the form again, with its error
    assert not ApiKey.objects.filter(name="nothing").exists()
    with pytest.raises(ValueError, match="at least one scope"):
        ApiKey.generate(name="x", scopes=[])


def _api_views(patterns):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _api_views(entry.url_patterns)
        elif isinstance(entry, URLPattern) and hasattr(entry.callback, "cls"):
            yield entry.callback


def test_every_api_operation_says_what_it_needs():
    """A new endpoint without a rule is refused, so every one must have one."""
    missing = []
    for callback in _api_views(api_urls.urlpatterns):
        view = callback.cls
        rules = getattr(view, "api_rules", {})
        actions = getattr(callback, "actions", None)
        if actions:  # a viewset route: {"get": "list", "post": "create"}
            for method, action in actions.items():
                if action not in rules and f"{action}:{method}" not in rules:
                    missing.append(f"{view.__name__}.{action}")
        else:
            for method in ("get", "post", "put", "patch", "delete"):
                if hasattr(view, method) and method not in rules:
                    missing.append(f"{view.__name__}.{method}")
    assert missing == []


@pytest.mark.parametrize(
    ("url_name", "model_perm"),
    [
        ("admin:webhooks_inboundmessage_changelist", "webhooks.view_inboundmessage"),
        ("admin:contacts_consentevent_changelist", "contacts.view_consentevent"),
        ("admin:contacts_suppression_changelist", "contacts.view_suppression"),
        ("admin:contacts_contact_changelist", "contacts.change_contact"),
    ],
)
def test_admin_pages_of_contact_data_need_view_contact(
    client, staff_user, url_name, model_perm
):
    """The admin's rule is the API's: the model's own permission is not enough."""
    ContactFactory(phone="+14155550188")
    contact_opt_out(phone="+14155550188", source="keyword", text="STOP please")
    client.force_login(staff_user(model_perm))
    assert client.get(reverse(url_name)).status_code == 403
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse(url_name) not in index

    client.force_login(staff_user(model_perm, "contacts.view_contact"))
    assert client.get(reverse(url_name)).status_code == 200
