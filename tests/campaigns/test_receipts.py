from decimal import Decimal

import pytest

from campaigns.models import DeliveryEvent, Message
from campaigns.sending.receipts import (
    delivery_events_apply_pending,
    delivery_events_record,
)
from contacts.models import ConsentEvent, Contact, Source, Suppression
from contacts.services import contact_opt_in, contact_opt_out
from providers.messages import DeliveryStatus, StatusEvent
from tests.factories import ContactFactory, MessageFactory

pytestmark = pytest.mark.django_db


def receipt(status: DeliveryStatus, raw: str = "", **fields) -> StatusEvent:
    return StatusEvent(status=status, raw_status=raw or status.value, **fields)


def test_receipt_found_by_provider_id_moves_the_message_forward_and_is_kept():
    message = MessageFactory(
        provider="vonage", provider_message_id="uuid-1", status=Message.Status.SUBMITTED
    )
    [event] = delivery_events_record(
        provider="vonage",
        events=[
            receipt(
                DeliveryStatus.DELIVERED,
                provider_message_id="uuid-1",
                price=Decimal("0.0333"),
                currency="EUR",
                segments=2,
            )
        ],
    )
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert (message.price, message.currency, message.segments) == (
        Decimal("0.0333"),
        "EUR",
        2,
    )
    assert event.message == message
    assert event.applied_at is not None


def test_a_late_sent_never_overwrites_delivered_and_duplicates_change_nothing():
    message = MessageFactory(
        provider="plivo", provider_message_id="p-1", status=Message.Status.SUBMITTED
    )
    for status in [
        DeliveryStatus.DELIVERED,
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.UNDELIVERED,
    ]:
        delivery_events_record(
            provider="plivo", events=[receipt(status, provider_message_id="p-1")]
        )
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert DeliveryEvent.objects.filter(message=message).count() == 4


def test_failure_receipt_records_code_and_reason():
    message = MessageFactory(
        provider="plivo", provider_message_id="p-2", status=Message.Status.SENT
    )
    delivery_events_record(
        provider="plivo",
        events=[
            receipt(
                DeliveryStatus.UNDELIVERED,
                provider_message_id="p-2",
                error_code="50",
                error_reason="Invalid destination",
            )
        ],
    )
    message.refresh_from_db()
    assert (message.status, message.error_code, message.error_reason) == (
        "undelivered",
        "50",
        "Invalid destination",
    )


def test_unknown_status_is_kept_but_changes_nothing():
    message = MessageFactory(
        provider="vonage", provider_message_id="u-1", status=Message.Status.SUBMITTED
    )
    [event] = delivery_events_record(
        provider="vonage",
        events=[
            receipt(DeliveryStatus.UNKNOWN, raw="mystery", provider_message_id="u-1")
        ],
    )
    message.refresh_from_db()
    assert message.status == Message.Status.SUBMITTED
    assert event.raw_status == "mystery"
    assert event.message == message


def test_batch_reference_and_recipient_find_the_message_and_fill_in_the_vendor_id():
    # Plivo bulk: the callback URL carries the batch's first reference; To picks the message.
    first = MessageFactory(provider="plivo", status=Message.Status.SUBMITTED)
    second = MessageFactory(
        campaign=first.campaign, provider="plivo", status=Message.Status.SUBMITTED
    )
    delivery_events_record(
        provider="plivo",
        events=[
            receipt(
                DeliveryStatus.SENT,
                provider_message_id="plivo-uuid-2",
                reference=str(first.client_reference),
                recipient=second.to,
            )
        ],
    )
    second.refresh_from_db()
    first.refresh_from_db()
    assert (second.status, second.provider_message_id) == ("sent", "plivo-uuid-2")
    assert (first.status, first.provider_message_id) == ("submitted", "")


def test_sinch_batch_id_and_recipient_pick_one_message_of_the_batch():
    first = MessageFactory(
        provider="sinch", provider_message_id="batch-1", status=Message.Status.SUBMITTED
    )
    second = MessageFactory(
        campaign=first.campaign,
        provider="sinch",
        provider_message_id="batch-1",
        status=Message.Status.SUBMITTED,
    )
    delivery_events_record(
        provider="sinch",
        events=[
            receipt(
                DeliveryStatus.DELIVERED,
                provider_message_id="batch-1",
                recipient=second.to,
            )
        ],
    )
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("submitted", "delivered")


def test_receipt_before_send_result_is_kept_and_applied_later():
    message = MessageFactory(provider="vonage", status=Message.Status.SENDING)
    [event] = delivery_events_record(
        provider="vonage",
        events=[receipt(DeliveryStatus.DELIVERED, provider_message_id="early-1")],
    )
    assert event.message is None
    assert event.applied_at is None

    Message.objects.filter(pk=message.pk).update(
        provider_message_id="early-1", status=Message.Status.SUBMITTED
    )
    message.refresh_from_db()
    assert delivery_events_apply_pending(messages=[message]) == 1
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    event.refresh_from_db()
    assert event.message == message
    assert delivery_events_apply_pending(messages=[message]) == 0


def test_provider_opt_out_signal_opts_the_recipient_out():
    contact = ContactFactory()
    message = MessageFactory(
        contact=contact,
        provider="sinch",
        provider_message_id="b-9",
        status=Message.Status.SENT,
    )
    delivery_events_record(
        provider="sinch",
        events=[
            receipt(
                DeliveryStatus.UNDELIVERED,
                raw="Deleted",
                provider_message_id="b-9",
                recipient=message.to,
                opt_out_signal=True,
            )
        ],
    )
    contact.refresh_from_db()
    assert contact.opted_out
    assert ConsentEvent.objects.get().source == Source.PROVIDER


def test_opt_out_of_an_unknown_number_suppresses_it_and_opt_in_reverses_it():
    event, changed = contact_opt_out(
        phone="+14155550123", source=Source.KEYWORD, text="STOP", provider="plivo"
    )
    assert changed
    assert event.contact is None
    assert Suppression.objects.filter(
        phone="+14155550123", reason=Suppression.Reason.OPT_OUT
    ).exists()
    _, changed_again = contact_opt_out(
        phone="14155550123", source=Source.KEYWORD, text="stop"
    )
    assert not changed_again
    contact = ContactFactory(phone="+14155550123")
    assert not Contact.objects.reachable().filter(pk=contact.pk).exists()

    _, changed = contact_opt_in(
        phone="+14155550123", source=Source.KEYWORD, text="START"
    )
    assert changed
    assert Contact.objects.reachable().filter(pk=contact.pk).exists()
    assert list(ConsentEvent.objects.order_by("id").values_list("kind", flat=True)) == [
        "opt_out",
        "opt_out",
        "opt_in",
    ]


def test_opt_in_keeps_a_manual_suppression():
    Suppression.objects.create(phone="+14155550124", reason=Suppression.Reason.MANUAL)
    contact_opt_in(phone="+14155550124", source=Source.KEYWORD)
    assert Suppression.objects.filter(phone="+14155550124").exists()


def test_the_scheduler_sweep_applies_a_receipt_that_missed_its_message():
    from campaigns.sending.receipts import delivery_events_sweep

    message = MessageFactory(provider="vonage", status=Message.Status.SENDING)
    delivery_events_record(
        provider="vonage",
        events=[receipt(DeliveryStatus.DELIVERED, provider_message_id="late-1")],
    )
    Message.objects.filter(pk=message.pk).update(
        provider_message_id="late-1", status=Message.Status.SUBMITTED
    )
    assert delivery_events_sweep() == 1
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
