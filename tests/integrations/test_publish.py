"""Events are written to the outbox in the transaction of the change they report, by
the one owner of each change."""

import json
from decimal import Decimal

import pytest

from django.db import transaction

from campaigns.models import Message
from campaigns.sending.receipts import delivery_events_record
from contacts.models import Contact, Source
from contacts.services import (
    contact_opt_in,
    contact_opt_out,
    contacts_opt_in,
    contacts_opt_out,
)
from integrations.models import Delivery, Event
from integrations.services import publish
from providers.messages import DeliveryStatus, InboundSms, StatusEvent
from tests.factories import ContactFactory, MessageFactory
from webhooks import services as webhook_services
from webhooks.services import inbound_message_record

from .conftest import endpoint_for

pytestmark = pytest.mark.django_db


def bodies(event_type: str | None = None) -> list[dict]:
    events = Event.objects.order_by("pk")
    if event_type:
        events = events.filter(type=event_type)
    return [json.loads(event.body) for event in events]


def test_nothing_is_written_when_nobody_subscribes():
    assert publish("contact.opted_out", {"phone": "+1"}) is None
    endpoint_for("http://127.0.0.1:9/a", "message.inbound")
    assert publish("contact.opted_out", {"phone": "+1"}) is None
    assert not Event.objects.exists()


def test_without_subscribers_an_event_costs_no_query(django_assert_num_queries):
    """Most installations have no endpoint: a receipt, reply or opt-out then pays
    nothing for its events (the endpoints are read once every few seconds)."""
    publish("contact.opted_out", {"phone": "+1"})  # reads the endpoints once
    with django_assert_num_queries(0):
        assert publish("contact.opted_out", {"phone": "+1"}) is None
        assert publish("message.inbound", {"text": "hi"}) is None


def test_an_endpoint_saved_or_deleted_in_this_process_is_seen_at_once():
    assert publish("contact.opted_out", {"phone": "+1"}) is None
    endpoint = endpoint_for("http://127.0.0.1:9/a", "contact.opted_out")
    assert publish("contact.opted_out", {"phone": "+1"}) is not None
    endpoint.is_active = False
    endpoint.save()
    assert publish("contact.opted_out", {"phone": "+1"}) is None
    endpoint.is_active = True
    endpoint.save()
    endpoint.delete()
    assert publish("contact.opted_out", {"phone": "+1"}) is None
    assert Event.objects.count() == 1


def test_one_event_fans_out_to_every_active_subscriber():
    a = endpoint_for("http://127.0.0.1:9/a", "contact.opted_out")
    b = endpoint_for("http://127.0.0.1:9/b", "contact.opted_out", "message.inbound")
    endpoint_for("http://127.0.0.1:9/c", "contact.opted_out", is_active=False)

    event = publish("contact.opted_out", {"phone": "+14155550101"})

    assert sorted(d.endpoint_id for d in event.deliveries.all()) == [a.pk, b.pk]
    body = json.loads(event.body)
    assert body["id"] == event.public_id
    assert body["id"].startswith("evt_")
    assert body["type"] == "contact.opted_out"
    assert body["data"] == {"phone": "+14155550101"}
    assert body["created"].endswith("Z") or "+00:00" in body["created"]


def test_an_unknown_event_type_is_a_bug():
    with pytest.raises(ValueError, match=r"contact\.deleted"):
        publish("contact.deleted", {})


def test_a_rolled_back_change_leaves_no_event():
    endpoint_for("http://127.0.0.1:9/a")
    contact = ContactFactory()
    seen_inside = []

    def change_then_fail() -> None:
        with transaction.atomic():
            contact_opt_out(phone=contact.phone, source=Source.API)
            seen_inside.append(Event.objects.count())
            raise RuntimeError

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert seen_inside == [1]  # written inside the transaction…
    assert not Event.objects.exists()  # …and gone with it
    assert not Delivery.objects.exists()
    contact.refresh_from_db()
    assert not contact.opted_out


def test_a_receipt_that_moves_a_message_publishes_its_status_change_once():
    endpoint_for("http://127.0.0.1:9/a", "message.status_changed")
    message = MessageFactory(
        provider="vonage", provider_message_id="v-1", status=Message.Status.SUBMITTED
    )
    delivered = StatusEvent(
        status=DeliveryStatus.DELIVERED,
        raw_status="delivered",
        provider_message_id="v-1",
        price=Decimal("0.0333"),
        currency="EUR",
    )
    late_sent = StatusEvent(
        status=DeliveryStatus.SENT, raw_status="accepted", provider_message_id="v-1"
    )
    delivery_events_record(provider="vonage", events=[delivered, late_sent, delivered])

    [body] = bodies()
    assert body["type"] == "message.status_changed"
    data = body["data"]["message"]
    assert (data["id"], data["status"], data["previous_status"]) == (
        message.pk,
        "delivered",
        "submitted",
    )
    assert (data["to"], data["campaign"], data["contact"]) == (
        message.to,
        message.campaign_id,
        message.contact_id,
    )
    assert (data["price"], data["currency"], data["provider_message_id"]) == (
        "0.0333",
        "EUR",
        "v-1",
    )


def test_a_failure_receipt_carries_its_error():
    endpoint_for("http://127.0.0.1:9/a", "message.status_changed")
    MessageFactory(provider="plivo", provider_message_id="p-1", status="sent")
    delivery_events_record(
        provider="plivo",
        events=[
            StatusEvent(
                status=DeliveryStatus.UNDELIVERED,
                raw_status="undelivered",
                provider_message_id="p-1",
                error_code="50",
                error_reason="Invalid destination",
            )
        ],
    )
    [body] = bodies()
    data = body["data"]["message"]
    assert (data["status"], data["previous_status"]) == ("undelivered", "sent")
    assert (data["error_code"], data["error_reason"]) == ("50", "Invalid destination")


def inbound(text: str, message_id: str) -> InboundSms:
    return InboundSms(
        from_number="+14155550123",
        to_number="+14155550100",
        text=text,
        provider_message_id=message_id,
    )


def test_a_stop_publishes_the_inbound_text_then_the_opt_out():
    endpoint_for("http://127.0.0.1:9/a")
    contact = ContactFactory(phone="+14155550123")
    stored = inbound_message_record(provider="locmem", inbound=inbound("STOP", "mo-1"))
    # The vendor's retry of the same message changes nothing, publishes nothing.
    inbound_message_record(provider="locmem", inbound=inbound("STOP", "mo-1"))

    inbound_body, opt_out_body = bodies()
    assert inbound_body["type"] == "message.inbound"
    assert inbound_body["data"]["inbound_message"] | {"received_at": None} == {
        "id": stored.pk,
        "from": "+14155550123",
        "to": "+14155550100",
        "text": "STOP",
        "keyword": "opt_out",
        "contact": contact.pk,
        "provider": "locmem",
        "received_at": None,
        "in_reply_to": None,
        "campaign": None,
    }
    assert opt_out_body["type"] == "contact.opted_out"
    assert opt_out_body["data"] | {"at": None} == {
        "phone": "+14155550123",
        "contact": contact.pk,
        "source": "keyword",
        "text": "STOP",
        "at": None,
    }


def test_an_inbound_text_whose_handling_fails_publishes_nothing(monkeypatch):
    endpoint_for("http://127.0.0.1:9/a")
    ContactFactory(phone="+14155550123")

    def broken(*args, **kwargs):
        raise RuntimeError("reply failed")

    monkeypatch.setattr(webhook_services, "_reply", broken)
    with pytest.raises(RuntimeError):
        inbound_message_record(provider="locmem", inbound=inbound("STOP", "mo-2"))
    assert not Event.objects.exists()


def test_opt_out_and_opt_in_publish_only_changes():
    endpoint_for("http://127.0.0.1:9/a", "contact.opted_out", "contact.opted_in")
    contact = ContactFactory(phone="+14155550123")
    contact_opt_out(phone=contact.phone, source=Source.API)
    contact_opt_out(phone=contact.phone, source=Source.API)  # already out
    contact_opt_in(phone=contact.phone, source=Source.ADMIN, text="said yes")
    contact_opt_in(phone=contact.phone, source=Source.ADMIN)  # already in
    # An unknown number opting out is suppressed, and published without a contact.
    contact_opt_out(phone="+14155550199", source=Source.KEYWORD)

    assert [
        (b["type"], b["data"]["phone"], b["data"]["contact"]) for b in bodies()
    ] == [
        ("contact.opted_out", "+14155550123", contact.pk),
        ("contact.opted_in", "+14155550123", contact.pk),
        ("contact.opted_out", "+14155550199", None),
    ]
    assert bodies("contact.opted_in")[0]["data"]["text"] == "said yes"


def test_bulk_opt_outs_publish_one_event_per_contact_changed():
    endpoint_for("http://127.0.0.1:9/a", "contact.opted_out", "contact.opted_in")
    ann, bob = ContactFactory.create_batch(2)
    ContactFactory()  # not selected
    contact_opt_out(phone=bob.phone, source=Source.API)
    Event.objects.all().delete()

    contacts_opt_out(
        contacts=Contact.objects.filter(pk__in=[ann.pk, bob.pk]), source=Source.ADMIN
    )
    assert [(b["type"], b["data"]["contact"]) for b in bodies()] == [
        ("contact.opted_out", ann.pk)
    ]
    Event.objects.all().delete()

    contacts_opt_in(
        contacts=Contact.objects.filter(pk__in=[ann.pk, bob.pk]), source=Source.ADMIN
    )
    assert sorted(b["data"]["contact"] for b in bodies("contact.opted_in")) == [
        ann.pk,
        bob.pk,
    ]


def test_a_click_on_a_tracked_link_publishes_link_clicked_and_a_preview_does_not(
    settings,
):
    from io import StringIO

    from django.core.management import call_command

    from campaigns.clicks import link_click_record
    from campaigns.links import link_code
    from tests.factories import CampaignFactory, ContactListFactory

    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    endpoint_for("http://127.0.0.1:9/a", "link.clicked")
    audience = ContactListFactory()
    ada = ContactFactory(first_name="Ada")
    ada.lists.add(audience)
    campaign = CampaignFactory(
        lists=[audience], provider="locmem", body="Sale at https://shop.example.com/x"
    )
    call_command("send_campaign", str(campaign.pk), stdout=StringIO())
    message = Message.objects.get(campaign=campaign)
    code = link_code(message.pk, 0)

    assert link_click_record(code=code, user_agent="WhatsApp/2.23") is not None
    assert not Event.objects.exists()  # a link preview is no click
    phone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile Safari"
    assert link_click_record(code=code, user_agent=phone) is not None

    [body] = bodies()
    assert body["type"] == "link.clicked"
    click = body["data"]["click"]
    assert (click["message"], click["campaign"], click["contact"], click["to"]) == (
        message.pk,
        campaign.pk,
        ada.pk,
        ada.phone,
    )
    assert click["url"] == "https://shop.example.com/x"
    assert click["agent"] == "mobile"


def test_a_keyword_sign_up_publishes_contact_opted_in_on_its_yes():
    from tests.factories import SignupKeywordFactory

    endpoint_for("http://127.0.0.1:9/a", "contact.opted_in")
    SignupKeywordFactory(keyword="JOIN", contact_list__name="Deals")
    inbound_message_record(provider="locmem", inbound=inbound("JOIN", "mo-10"))
    assert not Event.objects.exists()  # asked, not yet in
    inbound_message_record(provider="locmem", inbound=inbound("YES", "mo-11"))

    [body] = bodies()
    assert body["type"] == "contact.opted_in"
    contact = Contact.objects.get(phone="+14155550123")
    assert (body["data"]["phone"], body["data"]["contact"]) == (
        contact.phone,
        contact.pk,
    )
    assert body["data"]["source"] == "keyword"
