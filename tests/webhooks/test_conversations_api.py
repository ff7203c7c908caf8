"""/api/v1/conversations/: the list, a thread, replies and read state."""

import threading
from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.utils import timezone

from campaigns.models import Message
from campaigns.sending.direct import DirectSender
from providers.messages import InboundSms
from smscampaigns.models import ApiKey, Scope
from tests.factories import CampaignFactory, ContactFactory, MessageFactory
from webhooks.models import InboundMessage
from webhooks.services import inbound_message_record

pytestmark = [pytest.mark.django_db, pytest.mark.urls("smscampaigns.urls")]

OUR_NUMBER = "+14155550100"
PHONE = "+14155550123"
READ_PERMS = (
    "webhooks.view_inboundmessage",
    "campaigns.view_message",
    "contacts.view_contact",
)


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


def key_client(*scopes: str) -> APIClient:
    _, raw = ApiKey.generate(name="helpdesk", scopes=scopes or Scope.values)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def staff_client(*perms: str) -> APIClient:
    user = get_user_model().objects.create_user(
        f"staff{get_user_model().objects.count()}", is_staff=True
    )
    for name in perms:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def api() -> APIClient:
    return key_client()


def receive(text: str, *, sender: str = PHONE, at=None) -> InboundMessage:
    return inbound_message_record(
        provider="locmem",
        inbound=InboundSms(
            from_number=sender, to_number=OUR_NUMBER, text=text, received_at=at
        ),
    )


@pytest.fixture
def ann():
    """Ann got a campaign message an hour ago and answered it twice."""
    contact = ContactFactory(phone=PHONE, first_name="Ann", last_name="Lee")
    at = timezone.now() - timedelta(hours=1)
    MessageFactory(
        campaign=CampaignFactory(name="Spring sale", provider="locmem"),
        contact=contact,
        sender=OUR_NUMBER,
        body="Spring sale: 20% off",
        status=Message.Status.DELIVERED,
        submitted_at=at,
        queued_at=at,
    )
    receive("Does it include shoes?", at=timezone.now() - timedelta(minutes=30))
    receive("Hello?", at=timezone.now() - timedelta(minutes=10))
    return contact


def error(response) -> dict:
    return response.json()["error"]


def test_list_one_row_per_contact_with_the_last_message_and_unread_count(api, ann):
    bob = ContactFactory(phone="+14155550124", first_name="Bob")
    receive("Hi", sender=bob.phone, at=timezone.now() - timedelta(hours=2))

    response = api.get("/api/v1/conversations/")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    first, second = body["results"]
    assert first["contact"] == {
        "id": ann.pk,
        "phone": PHONE,
        "first_name": "Ann",
        "last_name": "Lee",
        "opted_out": False,
    }
    assert first["unread"] == 2
    assert first["last_message"]["text"] == "Hello?"
    assert first["last_message"]["direction"] == "inbound"
    assert second["contact"]["id"] == bob.pk

    api.post(f"/api/v1/conversations/{bob.pk}/read/")
    unread = api.get("/api/v1/conversations/?unread=true").json()
    assert [row["contact"]["id"] for row in unread["results"]] == [ann.pk]


def test_a_thread_is_both_ways_oldest_first_and_paginated(api, ann):
    response = api.get(f"/api/v1/conversations/{ann.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body["contact"]["id"] == ann.pk
    assert body["unread"] == 2
    assert body["count"] == 3
    texts = [(r["direction"], r["text"]) for r in body["results"]]
    assert texts == [
        ("outbound", "Spring sale: 20% off"),
        ("inbound", "Does it include shoes?"),
        ("inbound", "Hello?"),
    ]
    sale, question, _ = body["results"]
    assert question["in_reply_to"] == sale["id"]
    assert question["campaign"] == sale["campaign"]
    assert question["unread"] is True
    assert sale["status"] == "delivered"
    # Reading is not opening: nothing was marked read.
    assert InboundMessage.objects.filter(read_at__isnull=True).count() == 2

    newest = api.get(f"/api/v1/conversations/{ann.pk}/?page=last&page_size=2").json()
    assert [r["text"] for r in newest["results"]] == ["Hello?"]
    assert newest["previous"] is not None


def test_reply_queues_a_message_and_answers_202(api, ann, sms_outbox):
    response = api.post(
        f"/api/v1/conversations/{ann.pk}/reply/", {"text": "Yes, shoes too!"}
    )

    assert response.status_code == 202
    body = response.json()
    message = Message.objects.get(pk=body["id"])
    assert (message.kind, message.to, message.sender, message.body) == (
        "reply",
        PHONE,
        OUR_NUMBER,
        "Yes, shoes too!",
    )
    assert body["status"] == "queued"
    assert body["contact"] == ann.pk
    DirectSender(concurrency=1, stop=threading.Event()).drain()
    assert [m.text for m in sms_outbox] == ["Yes, shoes too!"]
    thread = api.get(f"/api/v1/conversations/{ann.pk}/").json()
    assert thread["unread"] == 0
    assert thread["results"][-1]["text"] == "Yes, shoes too!"


def test_reply_to_an_opted_out_contact_is_a_400_in_the_api_format(api, ann):
    receive("STOP")
    response = api.post(f"/api/v1/conversations/{ann.pk}/reply/", {"text": "Bye?"})

    assert response.status_code == 400
    assert error(response)["code"] == "opted_out"
    assert "opted out" in error(response)["message"]
    assert not Message.objects.filter(body="Bye?").exists()


@pytest.mark.parametrize("payload", [{}, {"text": ""}, {"text": "x" * 1601}])
def test_reply_with_invalid_text_is_a_400_on_the_field(api, ann, payload):
    response = api.post(f"/api/v1/conversations/{ann.pk}/reply/", payload)
    assert response.status_code == 400
    assert "text" in error(response)["fields"]
    assert not Message.objects.filter(kind=Message.Kind.REPLY).exists()


def test_reply_to_someone_who_never_wrote_is_a_400(api):
    contact = ContactFactory()
    response = api.post(f"/api/v1/conversations/{contact.pk}/reply/", {"text": "Hi"})
    assert response.status_code == 400
    assert error(response)["code"] == "no_conversation"


def test_an_unknown_conversation_is_a_404(api):
    assert api.get("/api/v1/conversations/999999/").status_code == 404
    assert api.get("/api/v1/conversations/abc/").status_code == 404
    assert staff_client().get("/api/v1/conversations/abc/").status_code == 403
    assert (
        api.post("/api/v1/conversations/999999/reply/", {"text": "Hi"}).status_code
        == 404
    )


def test_keys_need_read_to_read_and_send_to_reply(ann):
    reader = key_client(Scope.READ)
    assert reader.get("/api/v1/conversations/").status_code == 200
    refused = reader.post(f"/api/v1/conversations/{ann.pk}/reply/", {"text": "Hi"})
    assert refused.status_code == 403
    assert error(refused)["code"] == "missing_scope"
    assert reader.post(f"/api/v1/conversations/{ann.pk}/read/").status_code == 403

    sender = key_client(Scope.SEND)
    assert sender.get("/api/v1/conversations/").status_code == 403
    accepted = sender.post(f"/api/v1/conversations/{ann.pk}/reply/", {"text": "Hi"})
    assert accepted.status_code == 202


def test_staff_without_view_contact_see_no_numbers_or_texts(ann):
    for client in (
        staff_client(),
        staff_client("webhooks.view_inboundmessage", "campaigns.view_message"),
    ):
        for response in (
            client.get("/api/v1/conversations/"),
            client.get(f"/api/v1/conversations/{ann.pk}/"),
            client.post(f"/api/v1/conversations/{ann.pk}/reply/", {"text": "Hi"}),
        ):
            assert response.status_code == 403
            content = response.content.decode()
            assert PHONE not in content
            assert "shoes" not in content
    assert not Message.objects.filter(kind=Message.Kind.REPLY).exists()


def test_staff_need_add_message_to_reply(ann):
    reader = staff_client(*READ_PERMS)
    assert reader.get(f"/api/v1/conversations/{ann.pk}/").status_code == 200
    refused = reader.post(f"/api/v1/conversations/{ann.pk}/reply/", {"text": "Hi"})
    assert refused.status_code == 403

    replier = staff_client(*READ_PERMS, "campaigns.add_message")
    accepted = replier.post(f"/api/v1/conversations/{ann.pk}/reply/", {"text": "Hi"})
    assert accepted.status_code == 202
