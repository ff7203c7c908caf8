"""SMS_WEBHOOK_APPLY = "queued" (the default outside the test suite): a webhook stores the
verified callback and answers; the worker applies it, once, in order, losing nothing."""

import io
import json
import threading
import time
import uuid
from decimal import Decimal

import pytest
import responses

from django.core.management import call_command
from django.db import OperationalError
from django.test import Client

from campaigns.models import DeliveryEvent, Message
from contacts.models import Contact
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    ContactListFactory,
    MessageFactory,
)
from tests.webhooks.test_views import (
    plivo_post,
    vendors,  # noqa: F401 (fixture)
    vonage_post,
    vonage_status,
)
from webhooks import queue
from webhooks.models import InboundMessage, QueuedCallback, RejectedCallback
from webhooks.queue import CallbackApplier, queued_callbacks_apply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def queued(settings):
    settings.SMS_WEBHOOK_APPLY = "queued"


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)


def vonage_text(phone: str, text: str) -> dict:
    return {
        "channel": "sms",
        "message_uuid": str(uuid.uuid4()),
        "to": "14155550100",
        "from": phone.lstrip("+"),
        "timestamp": "2025-01-01T12:00:00.000Z",
        "message_type": "text",
        "text": text,
        "sms": {"num_messages": "1", "keyword": text.split()[0].upper()},
    }


def test_a_stop_is_answered_at_once_and_honoured_when_the_worker_applies_it(client):
    contact = ContactFactory(phone="+14155550123")
    response = vonage_post(
        client, "/webhooks/vonage/inbound/", vonage_text("+14155550123", "STOP")
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "queued": 1}
    # Answered, stored, not yet applied.
    assert QueuedCallback.objects.count() == 1
    assert not InboundMessage.objects.exists()
    contact.refresh_from_db()
    assert not contact.opted_out

    with responses.RequestsMock() as vonage_api:
        vonage_api.post(
            "https://api.nexmo.com/v1/messages",
            json={"message_uuid": str(uuid.uuid4())},
            status=202,
        )
        call_command("run_worker", "--once", stdout=io.StringIO())
        assert len(vonage_api.calls) == 1  # the confirmation, once

    contact.refresh_from_db()
    assert contact.opted_out
    assert InboundMessage.objects.get().keyword == "opt_out"
    assert Message.objects.get(kind="reply").status == "submitted"
    assert not QueuedCallback.objects.exists()


def test_a_queued_receipt_applies_exactly_as_an_inline_one(client, settings):
    queued_message = MessageFactory(
        provider="vonage", provider_message_id=str(uuid.uuid4()), status="submitted"
    )
    inline_message = MessageFactory(
        provider="vonage", provider_message_id=str(uuid.uuid4()), status="submitted"
    )
    vonage_post(client, "/webhooks/vonage/status/", vonage_status(queued_message))
    assert queued_callbacks_apply() == 1
    settings.SMS_WEBHOOK_APPLY = "inline"
    vonage_post(client, "/webhooks/vonage/status/", vonage_status(inline_message))

    for message in (queued_message, inline_message):
        message.refresh_from_db()
        assert message.status == "delivered"
        assert message.price == Decimal("0.0333")
    queued_event, inline_event = DeliveryEvent.objects.order_by("id")
    # Every field survives the queue: times to the microsecond, prices, payloads.
    for field in ("status", "raw_status", "price", "occurred_at", "segments"):
        assert getattr(queued_event, field) == getattr(inline_event, field), field
    assert queued_event.payload["client_ref"] == str(queued_message.client_reference)


def test_a_replayed_callback_is_queued_once(client):
    ContactFactory(phone="+14155550123")
    payload = vonage_text("+14155550123", "STOP")
    body = json.dumps(payload, separators=(",", ":")).encode()
    first = vonage_post(client, "/webhooks/vonage/inbound/", payload, body=body)
    again = vonage_post(client, "/webhooks/vonage/inbound/", payload, body=body)
    assert (first.status_code, again.status_code) == (200, 200)
    assert QueuedCallback.objects.count() == 1


def test_a_forged_or_malformed_callback_is_refused_before_the_queue(client):
    forged = vonage_post(
        client,
        "/webhooks/vonage/inbound/",
        vonage_text("+14155550123", "STOP"),
        secret="not-the-secret",
    )
    malformed = vonage_post(
        client, "/webhooks/vonage/inbound/", {}, body=b'{"channel": "sms"}'
    )
    assert forged.status_code == 401
    assert malformed.status_code == 400
    assert not QueuedCallback.objects.exists()


def test_stop_then_start_are_applied_in_the_order_they_came(client):
    contact = ContactFactory(phone="+14155550123")
    for text in ("STOP", "START", "STOP", "START"):
        vonage_post(
            client, "/webhooks/vonage/inbound/", vonage_text(contact.phone, text)
        )
    assert queued_callbacks_apply() == 4
    contact.refresh_from_db()
    assert not contact.opted_out
    assert list(
        InboundMessage.objects.order_by("id").values_list("keyword", flat=True)
    ) == ["opt_out", "opt_in", "opt_out", "opt_in"]


def test_plivo_form_callbacks_go_through_the_queue_too(client):
    contact = ContactFactory(phone="+14155550123")
    response = plivo_post(
        client,
        "/webhooks/plivo/inbound/",
        {
            "From": "14155550123",
            "To": "14155550100",
            "Text": "STOP",
            "Type": "sms",
            "MessageUUID": str(uuid.uuid4()),
        },
    )
    assert response.status_code == 200, response.content
    assert queued_callbacks_apply() == 1
    contact.refresh_from_db()
    assert contact.opted_out


def test_a_database_error_keeps_the_callback_queued_then_sets_it_aside(
    client, monkeypatch
):
    vonage_post(
        client, "/webhooks/vonage/inbound/", vonage_text("+14155550123", "HELP")
    )

    def failing(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(queue, "callback_items_apply", failing)
    for attempt in range(1, queue.MAX_ATTEMPTS):
        assert queued_callbacks_apply() == 0
        assert QueuedCallback.objects.get().attempts == attempt
    # The last attempt: kept for an operator, out of the way of the rest.
    assert queued_callbacks_apply() == 0
    assert not QueuedCallback.objects.exists()
    rejected = RejectedCallback.objects.get()
    assert "after 5 attempts" in rejected.reason
    assert "14155550123" in rejected.body


def test_a_callback_that_cannot_be_applied_does_not_hold_up_the_others(
    client, monkeypatch
):
    contact = ContactFactory(phone="+14155550123")
    vonage_post(
        client, "/webhooks/vonage/inbound/", vonage_text("+14155550199", "HELP")
    )
    vonage_post(client, "/webhooks/vonage/inbound/", vonage_text(contact.phone, "STOP"))
    real = queue.callback_items_apply

    def broken_for_help(**kwargs):
        if kwargs["items"][0].text == "HELP":
            raise ValueError("a bug")
        return real(**kwargs)

    monkeypatch.setattr(queue, "callback_items_apply", broken_for_help)
    assert queued_callbacks_apply() == 2
    contact.refresh_from_db()
    assert contact.opted_out
    assert "a bug" in RejectedCallback.objects.get().reason
    assert not QueuedCallback.objects.exists()


def test_run_workers_thread_applies_a_stop_within_a_second(client):
    contact = ContactFactory(phone="+14155550123")
    vonage_post(client, "/webhooks/vonage/inbound/", vonage_text(contact.phone, "STOP"))
    stop = threading.Event()
    started = time.monotonic()
    applier = CallbackApplier(stop=stop).start()
    try:
        # Nothing else touches the database meanwhile: SQLite's in-memory test
        # database locks whole tables between threads.
        while not applier.applied and time.monotonic() - started < 5:
            time.sleep(0.02)
        honoured = time.monotonic() - started
    finally:
        stop.set()
        applier.join()
    contact.refresh_from_db()
    assert contact.opted_out
    assert honoured < 1.0


def test_send_campaign_honours_stops_answered_before_it_sends(client, sms_outbox):
    contact_list = ContactListFactory()
    ada = ContactFactory(phone="+14155550123", first_name="Ada")
    alan = ContactFactory(phone="+14155550124", first_name="Alan")
    for contact in (ada, alan):
        contact.lists.add(contact_list)
    campaign = CampaignFactory(
        lists=[contact_list], provider="locmem", body="Hi {first_name}"
    )
    vonage_post(client, "/webhooks/vonage/inbound/", vonage_text(ada.phone, "STOP"))

    call_command("send_campaign", str(campaign.pk), stdout=io.StringIO())

    assert [sms.to for sms in sms_outbox] == [alan.phone]
    assert Contact.objects.get(pk=ada.pk).opted_out
    assert not QueuedCallback.objects.exists()


def test_metrics_show_the_callbacks_waiting(client, settings):
    settings.METRICS_TOKEN = "metrics-token"
    vonage_post(
        client, "/webhooks/vonage/inbound/", vonage_text("+14155550123", "HELP")
    )
    text = client.get(
        "/metrics", HTTP_AUTHORIZATION="Bearer metrics-token"
    ).content.decode()
    assert "sms_callbacks_queued 1.0" in text
    assert "sms_callbacks_oldest_age_seconds" in text


def test_a_numbers_callbacks_share_a_lane_and_lanes_apply_apart(client):
    phones = [f"+1415555{n:04d}" for n in range(40)]
    for phone in phones:
        ContactFactory(phone=phone)
        vonage_post(client, "/webhooks/vonage/inbound/", vonage_text(phone, "STOP"))
        vonage_post(client, "/webhooks/vonage/inbound/", vonage_text(phone, "START"))
    lanes = {}
    for row in QueuedCallback.objects.order_by("id"):
        lanes.setdefault(row.items[0]["from_number"], set()).add(row.lane)
    assert all(len(used) == 1 for used in lanes.values())
    assert {lane for used in lanes.values() for lane in used} == set(range(queue.LANES))
    # One lane applied alone: its numbers, in order, and nobody else's.
    first = next(iter(lanes[phones[0]]))
    applied = queued_callbacks_apply(lane=first)
    mine = [phone for phone, used in lanes.items() if first in used]
    assert applied == 2 * len(mine)
    assert set(
        InboundMessage.objects.values_list("from_number", flat=True).distinct()
    ) == set(mine)
    assert queued_callbacks_apply() == 2 * (len(phones) - len(mine))
    assert not Contact.objects.filter(opted_out_at__isnull=False).exists()
