"""What a vendor's answer means is decided by its kind alone (issue #11, 4 and 5)."""

import pytest

from campaigns.models import Message
from campaigns.sending.launch import campaign_launch
from campaigns.sending.recording import Rendered, record_batch
from providers.messages import SendError, SendErrorKind, SendResult
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def claimed():
    contact_list = ContactListFactory()
    ContactFactory().lists.add(contact_list)
    campaign = CampaignFactory(lists=[contact_list], provider="locmem")
    campaign_launch(campaign=campaign)
    message = Message.objects.get(campaign=campaign)
    Message.objects.filter(pk=message.pk).update(status="sending", attempts=1)
    return Rendered(
        id=message.pk,
        reference=str(message.client_reference),
        body="Hi",
        encoding="gsm7",
        segments=1,
        attempts=1,
    )


def _record(claimed, kind, code="whatever_the_vendor_says"):
    error = SendError(kind=kind, code=code, reason="the vendor's words", retry_after=2)
    result = SendResult(reference=claimed.reference, to="+14155550100", error=error)
    outcome = record_batch(rendered=[claimed], results=[result])
    return outcome, Message.objects.get(pk=claimed.id)


@pytest.mark.parametrize(
    ("kind", "status", "throttled", "transient", "misconfigured"),
    [
        (SendErrorKind.THROTTLED, "queued", True, 0, False),
        (SendErrorKind.NOT_SENT, "queued", False, 1, False),
        (SendErrorKind.MAYBE_SENT, "unknown", False, 1, False),
        (SendErrorKind.PERMANENT, "failed", False, 0, False),
        (SendErrorKind.MISCONFIGURED, "queued", False, 0, True),
    ],
)
def test_the_kind_alone_decides(
    claimed, kind, status, throttled, transient, misconfigured
):
    # Any code at all (Sinch's "too_many_requests", Vonage's hyphens...): only the
    # kind is read.
    outcome, message = _record(claimed, kind)
    assert message.status == status
    assert message.error_code == "whatever_the_vendor_says"
    assert (outcome.throttled, outcome.transient, outcome.misconfigured) == (
        throttled,
        transient,
        misconfigured,
    )


def test_a_throttled_message_waits_at_least_what_the_vendor_asked(claimed):
    _, message = _record(claimed, SendErrorKind.THROTTLED, code="too_many_requests")
    assert (message.next_attempt_at - message.status_changed_at).total_seconds() >= 2


def test_a_maybe_sent_message_is_never_queued_again(claimed):
    _, message = _record(claimed, SendErrorKind.MAYBE_SENT, code="connection_dropped")
    assert message.status == "unknown"
    assert "may have been sent" in message.error_reason
    assert message.next_attempt_at is None


def test_an_unknown_kind_is_refused_where_the_error_is_made():
    with pytest.raises(ValueError, match="kind must be one of"):
        SendError(kind="retryable", code="429", reason="slow down")
