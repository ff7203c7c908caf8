"""What a vendor's receipt does to a message (issue 13, rows 4, 5, 7, 8, 9, 10):
the vendor's own answer, parsed by its backend, applied by the receipts service."""

import json
from datetime import timedelta

import pytest

from django.utils import timezone

from campaigns.actions import campaign_retry_failed
from campaigns.models import Campaign, DeliveryEvent, Message
from campaigns.sending.receipts import (
    delivery_events_apply_pending,
    delivery_events_record,
)
from contacts.models import ConsentEvent
from providers.backends.sinch import SmsBackend as SinchBackend
from providers.backends.vonage import SmsBackend as VonageBackend
from providers.messages import Callback
from tests.factories import CampaignFactory, MessageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sinch() -> SinchBackend:
    return SinchBackend(
        alias="sinch", service_plan_id="plan", api_token="t", number="+14155550100"
    )


@pytest.fixture
def vonage(tmp_path) -> VonageBackend:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "k.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return VonageBackend(
        alias="vonage",
        application_id="app",
        private_key_path=str(path),
        number="+14155550100",
        signature_secret="s",
    )


def posted(data: dict) -> Callback:
    return Callback(
        method="POST",
        url="https://sms.example.com/webhooks/x/status/",
        headers={},
        body=json.dumps(data).encode(),
        content_type="application/json",
    )


def sinch_report(message: Message, status: str, code: int = 0) -> dict:
    return {
        "type": "recipient_delivery_report_sms",
        "batch_id": message.provider_message_id,
        "recipient": message.to.lstrip("+"),
        "code": code,
        "status": status,
        "at": "2024-06-06T08:17:19.210Z",
        "client_reference": str(message.client_reference),
    }


def vonage_status(message: Message, status: str, **extra) -> dict:
    return {
        "message_uuid": message.provider_message_id,
        "to": message.to.lstrip("+"),
        "from": "14155550100",
        "timestamp": "2025-01-01T12:00:00.000Z",
        "status": status,
        "channel": "sms",
        "client_ref": str(message.client_reference),
        **extra,
    }


def record(backend, data: dict) -> list[DeliveryEvent]:
    return delivery_events_record(
        provider=backend.alias, events=backend.parse_status_callback(posted(data))
    )


def sent_message(provider: str, **fields) -> Message:
    campaign = CampaignFactory(provider=provider, status=Campaign.Status.SENDING)
    values = {
        "provider_message_id": "PID-1",
        "status": Message.Status.SUBMITTED,
        "attempts": 1,
        **fields,
    }
    return MessageFactory(campaign=campaign, **values)


# --- Row 4: "never left" is sent again, like a send error ----------------------------


def test_sinch_aborted_404_queues_the_message_again_with_a_new_reference(sinch):
    message = sent_message("sinch")
    old_reference = message.client_reference
    before = timezone.now()

    [event] = record(sinch, sinch_report(message, "Aborted", 404))

    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.client_reference != old_reference
    assert message.provider_message_id == ""
    assert message.next_attempt_at > before
    assert (message.error_code, message.error_reason) == (
        "404",
        "Aborted: Temporary delivery failure",
    )
    assert event.message == message
    assert event.resend


@pytest.mark.parametrize(
    "payload",
    [
        {"status": "undeliverable"},
        {
            "status": "rejected",
            "error": {
                "type": "https://developer.vonage.com/api-errors/messages#1000",
                "title": "Throttled",
            },
        },
    ],
    ids=["undeliverable", "rejected-1000-throttled"],
)
def test_vonage_never_left_is_queued_again(vonage, payload):
    message = sent_message("vonage")

    record(vonage, vonage_status(message, **payload))

    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.provider_message_id == ""


def test_spent_attempts_leave_it_failed_and_retry_failed_counts_it(sinch, settings):
    settings.SMS_SEND_MAX_ATTEMPTS = 3
    message = sent_message("sinch", attempts=3)

    record(sinch, sinch_report(message, "Aborted", 404))

    message.refresh_from_db()
    assert (message.status, message.error_code) == (Message.Status.FAILED, "404")
    assert campaign_retry_failed(campaign=message.campaign) == 1
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED


def test_an_abort_that_would_repeat_is_failed_not_retried(sinch):
    # 411: more parts than allowed; the same batch would be aborted again.
    message = sent_message("sinch")

    record(sinch, sinch_report(message, "Aborted", 411))

    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.error_reason == "Exceeded parts limit"


def test_a_completed_campaign_sends_again(sinch):
    message = sent_message("sinch")
    Campaign.objects.filter(pk=message.campaign_id).update(
        status=Campaign.Status.COMPLETED,
        started_at=timezone.now(),
        completed_at=timezone.now(),
    )

    record(sinch, sinch_report(message, "Aborted", 403))

    campaign = Campaign.objects.get(pk=message.campaign_id)
    assert campaign.status == Campaign.Status.SENDING
    assert campaign.completed_at is None


def test_a_cancelled_campaign_is_not_sent_again(sinch):
    message = sent_message("sinch")
    Campaign.objects.filter(pk=message.campaign_id).update(
        status=Campaign.Status.CANCELLED
    )

    record(sinch, sinch_report(message, "Aborted", 404))

    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert Campaign.objects.get(pk=message.campaign_id).status == "cancelled"


def test_receipts_of_the_abandoned_attempt_never_touch_the_new_one(sinch, vonage):
    message = sent_message("sinch")
    report = sinch_report(message, "Aborted", 404)
    record(sinch, report)
    # Again (a duplicate), and a late "Delivered" for the old batch.
    record(sinch, report)
    record(sinch, {**report, "status": "Delivered", "code": 0})

    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.attempts == 1
    # Sent again: the new batch's receipt applies.
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.SUBMITTED, provider_message_id="PID-2", attempts=2
    )
    message.refresh_from_db()
    record(sinch, sinch_report(message, "Delivered"))
    message.refresh_from_db()
    assert (message.status, message.error_code, message.error_reason) == (
        Message.Status.DELIVERED,
        "",
        "",
    )


def test_a_resend_receipt_arriving_before_the_send_result_applies_later(sinch):
    message = sent_message("sinch", provider_message_id="")
    report = sinch_report(message, "Aborted", 404)
    stored = record(sinch, {**report, "batch_id": "B9", "client_reference": ""})
    assert stored[0].message is None
    Message.objects.filter(pk=message.pk).update(provider_message_id="B9")
    message.refresh_from_db()

    assert delivery_events_apply_pending(messages=[message]) == 1

    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED


# --- Row 5: Sinch "Unknown" is final ---------------------------------------------------


def test_sinch_unknown_is_final_unconfirmed(sinch):
    message = sent_message("sinch")
    record(sinch, sinch_report(message, "Dispatched", 401))

    record(sinch, sinch_report(message, "Unknown"))
    record(sinch, sinch_report(message, "Dispatched", 401))

    message.refresh_from_db()
    assert message.status == Message.Status.UNCONFIRMED
    assert message.status in Message.FINAL
    assert message.status not in Message.FAILURES


# --- Row 7: Sinch progress codes are not errors ----------------------------------------


def test_sinch_queued_and_dispatched_codes_are_progress_not_errors(sinch):
    message = sent_message("sinch")

    record(sinch, sinch_report(message, "Queued", 400))
    message.refresh_from_db()
    assert (message.status, message.error_code) == (Message.Status.SUBMITTED, "")
    record(sinch, sinch_report(message, "Dispatched", 401))
    message.refresh_from_db()
    assert (message.status, message.error_code) == (Message.Status.SENT, "")
    record(sinch, sinch_report(message, "Delivered", 0))

    message.refresh_from_db()
    assert (message.status, message.error_code, message.error_reason) == (
        Message.Status.DELIVERED,
        "",
        "",
    )


def test_an_earlier_error_does_not_stay_on_a_delivered_message(sinch):
    message = sent_message(
        "sinch", error_code="503", error_reason="Service unavailable (retried)"
    )

    record(sinch, sinch_report(message, "Delivered"))

    message.refresh_from_db()
    assert (message.error_code, message.error_reason) == ("", "")


# --- Row 8: Vonage's part count, whenever it comes -------------------------------------


def test_vonage_count_total_reaches_the_message_even_after_delivered(vonage):
    message = sent_message("vonage", segments=1)
    record(vonage, vonage_status(message, "delivered"))

    record(vonage, vonage_status(message, "submitted", sms={"count_total": "3"}))

    message.refresh_from_db()
    assert (message.status, message.segments) == (Message.Status.DELIVERED, 3)


# --- Row 9: Vonage "rejected" 1360 is an expiry ----------------------------------------


def test_vonage_rejected_1360_is_expired(vonage):
    message = sent_message("vonage")

    record(
        vonage,
        vonage_status(
            message,
            "rejected",
            error={
                "type": "https://developer.vonage.com/api-errors/messages#1360",
                "title": "TTL expired",
            },
        ),
    )

    message.refresh_from_db()
    assert (message.status, message.error_code) == (Message.Status.EXPIRED, "1360")


def test_vonage_other_rejections_stay_rejected(vonage):
    message = sent_message("vonage")

    record(
        vonage,
        vonage_status(
            message,
            "rejected",
            error={
                "type": "https://developer.vonage.com/api-errors/messages#1170",
                "title": "Invalid or missing MSISDN",
            },
        ),
    )

    message.refresh_from_db()
    assert message.status == Message.Status.REJECTED


# --- Row 10: Sinch "Deleted" is not a consent withdrawal -------------------------------


def test_sinch_deleted_is_undelivered_without_an_opt_out(sinch):
    message = sent_message("sinch")

    record(sinch, sinch_report(message, "Deleted", 0))

    message.refresh_from_db()
    assert message.status == Message.Status.UNDELIVERED
    assert not ConsentEvent.objects.exists()
    assert message.contact.opted_out_at is None


def test_next_attempt_uses_the_send_error_backoff(sinch, settings):
    settings.SMS_RETRY_BASE_DELAY = 100
    message = sent_message("sinch", attempts=2)
    before = timezone.now()

    record(sinch, sinch_report(message, "Aborted", 404))

    message.refresh_from_db()
    # retry_delay(2): between half and all of base * 2.
    assert before + timedelta(seconds=99) <= message.next_attempt_at
    assert message.next_attempt_at <= timezone.now() + timedelta(seconds=200)
