"""The conversation page of the admin, and the inbox and index leading to it."""

import threading
from datetime import timedelta

import pytest

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Message
from campaigns.sending.direct import DirectSender
from providers.messages import InboundSms
from tests.factories import CampaignFactory, ContactFactory, MessageFactory
from webhooks.models import InboundMessage
from webhooks.services import inbound_message_record

pytestmark = pytest.mark.django_db

OUR_NUMBER = "+14155550100"
PHONE = "+14155550123"
INBOX = reverse("admin:webhooks_inboundmessage_changelist")


def receive(text: str, *, sender: str = PHONE, at=None) -> InboundMessage:
    return inbound_message_record(
        provider="locmem",
        inbound=InboundSms(
            from_number=sender, to_number=OUR_NUMBER, text=text, received_at=at
        ),
    )


def conversation_url(contact) -> str:
    return reverse("admin:webhooks_inboundmessage_conversation", args=[contact.pk])


@pytest.fixture
def ann():
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
    receive("Does it include shoes?", at=timezone.now() - timedelta(minutes=5))
    return contact


def staff(client, *perms: str):
    user = get_user_model().objects.create_user("marketer", is_staff=True)
    for name in perms:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client.force_login(user)
    return client


def test_the_conversation_shows_both_ways_newest_last_and_marks_read(admin_client, ann):
    assert InboundMessage.objects.get().read_at is None

    page = admin_client.get(conversation_url(ann)).content.decode()

    assert "Conversation with Ann Lee" in page
    assert page.index("Spring sale: 20% off") < page.index("Does it include shoes?")
    # What was new shows as new this once; the reply links to the campaign it answers.
    assert ">New</span>" in page
    assert "answers <a href=" in page
    assert "Spring sale</a>" in page
    assert f"Reply from {OUR_NUMBER}" in page
    assert InboundMessage.objects.get().read_at is not None
    assert ">New</span>" not in admin_client.get(conversation_url(ann)).content.decode()


def test_a_reply_from_the_page_is_queued_and_sent_by_the_worker(
    admin_client, ann, sms_outbox
):
    response = admin_client.post(conversation_url(ann), {"text": "Yes, shoes too!"})

    assert response.status_code == 302
    reply = Message.objects.get(kind=Message.Kind.REPLY)
    assert (reply.to, reply.sender, reply.body) == (
        PHONE,
        OUR_NUMBER,
        "Yes, shoes too!",
    )
    page = admin_client.get(response["Location"]).content.decode()
    assert "Reply queued" in page
    assert page.index("Does it include shoes?") < page.index("Yes, shoes too!")
    DirectSender(concurrency=1, stop=threading.Event()).drain()
    assert [m.text for m in sms_outbox] == ["Yes, shoes too!"]


def test_an_opted_out_contact_gets_a_clear_refusal_and_no_reply_box(admin_client, ann):
    receive("STOP")
    page = admin_client.get(conversation_url(ann)).content.decode()
    assert "opted out or is suppressed: no reply can be sent" in page
    assert 'name="text"' not in page

    response = admin_client.post(conversation_url(ann), {"text": "Please stay"})
    assert response.status_code == 200
    assert "opted out or is suppressed" in response.content.decode()
    assert not Message.objects.filter(body="Please stay").exists()


def test_an_empty_reply_is_refused_on_the_form(admin_client, ann):
    response = admin_client.post(conversation_url(ann), {"text": "   "})
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert not Message.objects.filter(kind=Message.Kind.REPLY).exists()


def test_the_inbox_links_each_reply_to_its_conversation_with_unread_state(
    admin_client, ann
):
    receive("Who is this?", sender="+14155550177")  # not a contact

    page = admin_client.get(INBOX).content.decode()

    assert f'href="{conversation_url(ann)}">Open</a>' in page
    assert "unread</span>" in page
    assert "not a contact" in page
    assert "2 unread" in page
    assert "Spring sale</a>" in page  # the campaign the reply answers

    admin_client.get(conversation_url(ann))
    assert "1 unread" in admin_client.get(INBOX).content.decode()
    unread = admin_client.get(INBOX, {"unread": "1"}).content.decode()
    assert "Who is this?" in unread
    assert "Does it include shoes?" not in unread


def test_mark_read_action(admin_client, ann):
    admin_client.post(
        INBOX,
        {
            "action": "mark_read",
            "_selected_action": list(
                InboundMessage.objects.values_list("pk", flat=True)
            ),
        },
    )
    assert not InboundMessage.objects.filter(read_at__isnull=True).exists()


def test_the_admin_index_shows_the_unread_count(admin_client, ann):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert 'id="unread-replies">1 unread</a>' in page


def test_reading_needs_view_contact_and_replying_needs_add_message(client, ann):
    staff(client, "webhooks.view_inboundmessage", "campaigns.view_message")
    assert client.get(conversation_url(ann)).status_code == 403
    assert client.post(conversation_url(ann), {"text": "Hi"}).status_code == 403

    client.logout()
    get_user_model().objects.filter(username="marketer").delete()
    staff(
        client,
        "webhooks.view_inboundmessage",
        "campaigns.view_message",
        "contacts.view_contact",
    )
    page = client.get(conversation_url(ann)).content.decode()
    assert "Does it include shoes?" in page
    assert "needs the permission to add messages" in page
    assert client.post(conversation_url(ann), {"text": "Hi"}).status_code == 403
    assert not Message.objects.filter(kind=Message.Kind.REPLY).exists()


def test_the_contact_page_links_to_the_conversation(admin_client, ann):
    page = admin_client.get(
        reverse("admin:contacts_contact_change", args=[ann.pk])
    ).content.decode()
    assert f'<a href="{conversation_url(ann)}">Conversation</a>' in page
