import io
import json
import time
from types import SimpleNamespace

import pytest

from django.core.exceptions import ImproperlyConfigured

from providers import get_provider
from providers.backends import console, locmem
from providers.exceptions import CallbackAuthError, CallbackParseError
from providers.messages import (
    Callback,
    DeliveryStatus,
    OutboundSms,
    SendError,
    SendErrorKind,
)

THROTTLED = SendError(SendErrorKind.THROTTLED, "429", "Too Many Requests")
REJECTED = SendError(SendErrorKind.PERMANENT, "rejected", "Content refused")


def sms(n: int, text: str = "Hello", sender: str = "") -> OutboundSms:
    return OutboundSms(
        to=f"+1415555{n:04d}", text=text, reference=f"ref-{n}", sender=sender
    )


# --- console ------------------------------------------------------------------------


def test_console_writes_each_message_with_its_encoding_and_a_separator():
    stream = io.StringIO()
    backend = console.SmsBackend(alias="console", stream=stream)

    results = backend.send_messages(
        [sms(123, "Hi there", sender="+15550001111"), sms(124, "Ça va? ça 😀")]
    )

    assert stream.getvalue() == (
        "To: +14*******23\n"
        "From: +15550001111\n"
        "Reference: ref-123\n"
        "Encoding: gsm7 (8 units, 1 segment)\n"
        "\n"
        "Hi there\n" + console.SEPARATOR + "\n"
        "To: +14*******24\n"
        "From: (default sender)\n"
        "Reference: ref-124\n"
        "Encoding: ucs2 (12 units, 1 segment)\n"
        "\n"
        "Ça va? ça 😀\n" + console.SEPARATOR + "\n"
    )
    assert [(r.reference, r.to, r.accepted) for r in results] == [
        ("ref-123", "+14155550123", True),
        ("ref-124", "+14155550124", True),
    ]
    ids = [r.provider_message_id for r in results]
    assert all(i.startswith("console-") for i in ids)
    assert len(set(ids)) == 2


def test_console_shows_full_numbers_when_masking_is_off():
    stream = io.StringIO()
    backend = console.SmsBackend(alias="console", stream=stream, mask_numbers=False)
    backend.send_messages([sms(123, "a" * 161)])
    assert "To: +14155550123\n" in stream.getvalue()
    assert "Encoding: gsm7 (161 units, 2 segments)\n" in stream.getvalue()


def test_console_from_settings_writes_to_the_current_stdout(capsys):
    backend = get_provider("console")
    assert isinstance(backend, console.SmsBackend)

    backend.send_messages([sms(1, "First")])
    assert "First\n" in capsys.readouterr().out

    # Still the same cached instance, still following sys.stdout.
    get_provider("console").send_messages([sms(2, "Second")])
    out = capsys.readouterr().out
    assert "Second\n" in out
    assert "First" not in out


def test_console_and_locmem_declare_bulk_capabilities():
    for backend_class in (console.SmsBackend, locmem.SmsBackend):
        assert backend_class.max_recipients_per_request == 1000
        assert backend_class.supports_per_recipient_text is True
        assert backend_class.supports_client_reference is True
        assert backend_class.default_rate == 1000.0


def test_console_refuses_unknown_options():
    with pytest.raises(ImproperlyConfigured, match="colour"):
        console.SmsBackend(alias="console", colour="red")


# --- locmem: sending ------------------------------------------------------------------


def test_locmem_from_settings_records_messages_in_the_outbox(sms_outbox):
    backend = get_provider("locmem")
    assert isinstance(backend, locmem.SmsBackend)
    messages = [sms(1), sms(2, "Other text")]

    results = backend.send_messages(messages)

    assert sms_outbox == messages
    assert [(r.reference, r.provider_message_id) for r in results] == [
        ("ref-1", "locmem-1"),
        ("ref-2", "locmem-2"),
    ]
    assert all(r.accepted for r in results)


def test_the_default_test_provider_is_locmem(sms_outbox):
    get_provider().send_messages([sms(7)])
    assert [m.reference for m in sms_outbox] == ["ref-7"]


def test_fail_next_fails_the_next_messages_in_order_then_sends_again(sms_outbox):
    backend = get_provider("locmem")
    locmem.fail_next(THROTTLED, count=2)
    locmem.fail_next(REJECTED)

    results = backend.send_messages([sms(1), sms(2), sms(3), sms(4)])

    assert [r.error for r in results] == [THROTTLED, THROTTLED, REJECTED, None]
    assert [r.reference for r in results] == ["ref-1", "ref-2", "ref-3", "ref-4"]
    assert results[0].provider_message_id == ""
    assert results[3].provider_message_id == "locmem-1"
    assert sms_outbox == [sms(4)]
    assert locmem.pending_failures() == 0


def test_fail_next_lasts_across_calls_so_a_retry_can_succeed(sms_outbox):
    backend = get_provider("locmem")
    locmem.fail_next(THROTTLED)

    first = backend.send_messages([sms(1)])
    retry = backend.send_messages([sms(1)])

    assert first[0].error == THROTTLED
    assert first[0].error.retryable
    assert retry[0].accepted
    assert sms_outbox == [sms(1)]


def test_fail_next_needs_a_positive_count():
    with pytest.raises(ValueError, match="at least 1"):
        locmem.fail_next(THROTTLED, count=0)


def test_sent_messages_and_queued_failures_stay_until_the_test_ends(sms_outbox):
    get_provider("locmem").send_messages([sms(1), sms(2)])
    locmem.fail_next(THROTTLED, count=5)
    assert len(sms_outbox) == 2


def test_sms_outbox_starts_empty_for_each_test(sms_outbox):
    # Runs right after the test above, which left messages and failures behind.
    assert sms_outbox == []
    assert locmem.pending_failures() == 0
    [result] = get_provider("locmem").send_messages([sms(1)])
    assert result.provider_message_id == "locmem-1"


@pytest.mark.parametrize("number", ["14155550123", "+1415", "0044 7700 900000", ""])
def test_locmem_refuses_numbers_that_are_not_e164_as_permanent(number, sms_outbox):
    message = OutboundSms(to=number, text="Hi", reference="ref-x")
    [result] = get_provider("locmem").send_messages([message])
    assert result.error.code == "invalid_number"
    assert result.error.kind == SendErrorKind.PERMANENT
    assert sms_outbox == []


# --- locmem: callbacks ----------------------------------------------------------------


@pytest.fixture
def backend():
    return get_provider("locmem")


def test_locmem_status_callback_round_trips(backend):
    callback = locmem.status_callback(
        reference="ref-1",
        provider_message_id="locmem-1",
        status="undelivered",
        recipient="+14155550001",
        error_code="30003",
        error_reason="Unreachable",
    )
    backend.verify_callback(callback)

    [event] = backend.parse_status_callback(callback)

    assert event.status == DeliveryStatus.UNDELIVERED
    assert (event.raw_status, event.reference, event.provider_message_id) == (
        "undelivered",
        "ref-1",
        "locmem-1",
    )
    assert (event.recipient, event.error_code, event.error_reason) == (
        "+14155550001",
        "30003",
        "Unreachable",
    )
    assert callback.url == "https://sms.example.com/webhooks/locmem/status/"


def test_locmem_unknown_status_maps_to_unknown_keeping_the_raw_status(backend):
    callback = locmem.status_callback(reference="ref-1", status="buffered")
    [event] = backend.parse_status_callback(callback)
    assert (event.status, event.raw_status) == (DeliveryStatus.UNKNOWN, "buffered")


def test_locmem_status_callback_may_carry_several_events(backend):
    callback = locmem.signed_callback(
        [
            {"reference": "ref-1", "status": "delivered"},
            {"provider_message_id": "locmem-2", "status": "failed"},
        ],
        kind="status",
    )
    backend.verify_callback(callback)
    events = backend.parse_status_callback(callback)
    assert [(e.reference, e.provider_message_id, e.status) for e in events] == [
        ("ref-1", "", DeliveryStatus.DELIVERED),
        ("", "locmem-2", DeliveryStatus.FAILED),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "non-empty list"),
        (b'"delivered"', "JSON object"),
        (b'{"reference": "ref-1"}', "'status'"),
        (b'{"status": "delivered"}', "reference or a provider_message_id"),
        (b'{"status": 3, "reference": "ref-1"}', "must be a string"),
    ],
)
def test_locmem_malformed_status_callbacks_are_parse_errors(backend, body, message):
    callback = Callback(
        method="POST", url="https://sms.example.com/", headers={}, body=body
    )
    with pytest.raises(CallbackParseError, match=message):
        backend.parse_status_callback(callback)


def test_locmem_inbound_callback_round_trips(backend):
    callback = locmem.inbound_callback(
        from_number="+14155550001",
        to_number="+15550001111",
        text=" stop ",
        message_id="in-1",
    )
    backend.verify_callback(callback)

    [inbound] = backend.parse_inbound_callback(callback)

    assert (inbound.from_number, inbound.to_number, inbound.text) == (
        "+14155550001",
        "+15550001111",
        " stop ",
    )
    assert inbound.provider_message_id == "in-1"
    assert callback.url == "https://sms.example.com/webhooks/locmem/inbound/"


def test_locmem_inbound_callback_without_sender_is_a_parse_error(backend):
    callback = locmem.signed_callback(
        {"to": "+15550001111", "text": "hi"}, kind="inbound"
    )
    with pytest.raises(CallbackParseError, match="'from'"):
        backend.parse_inbound_callback(callback)


def with_header(callback: Callback, **changes: str) -> Callback:
    headers = dict(callback.headers)
    for name, value in changes.items():
        header = {
            "timestamp": locmem.TIMESTAMP_HEADER,
            "signature": locmem.SIGNATURE_HEADER,
        }[name]
        if value is None:
            del headers[header]
        else:
            headers[header] = value
    return Callback(
        method=callback.method, url=callback.url, headers=headers, body=callback.body
    )


def test_locmem_refuses_an_altered_body(backend):
    callback = locmem.status_callback(reference="ref-1")
    altered = Callback(
        method="POST",
        url=callback.url,
        headers=callback.headers,
        body=callback.body.replace(b"delivered", b"failed"),
    )
    with pytest.raises(CallbackAuthError, match="bad signature"):
        backend.verify_callback(altered)


def test_locmem_refuses_a_forged_signature(backend):
    callback = with_header(
        locmem.status_callback(reference="ref-1"), signature="0" * 64
    )
    with pytest.raises(CallbackAuthError, match="bad signature"):
        backend.verify_callback(callback)


def test_locmem_refuses_a_signature_for_another_timestamp(backend):
    callback = locmem.status_callback(reference="ref-1")
    moved = with_header(
        callback, timestamp=str(int(callback.header(locmem.TIMESTAMP_HEADER)) + 1)
    )
    with pytest.raises(CallbackAuthError, match="bad signature"):
        backend.verify_callback(moved)


@pytest.mark.parametrize(
    ("age", "accepted"),
    [(0, True), (330, True), (331, False), (-30, True), (-31, False)],
)
def test_locmem_freshness_allows_max_age_plus_clock_skew(
    backend, monkeypatch, age, accepted
):
    now = 1_800_000_000
    monkeypatch.setattr(locmem, "time", SimpleNamespace(time=lambda: now))
    callback = locmem.status_callback(reference="ref-1", timestamp=now - age)
    if accepted:
        backend.verify_callback(callback)
    else:
        with pytest.raises(CallbackAuthError, match="stale"):
            backend.verify_callback(callback)


def test_locmem_refuses_a_day_old_callback_in_real_time(backend):
    callback = locmem.status_callback(
        reference="ref-1", timestamp=int(time.time()) - 86400
    )
    with pytest.raises(CallbackAuthError, match="stale"):
        backend.verify_callback(callback)


def test_locmem_refuses_unsigned_callbacks_by_default(backend):
    body = json.dumps({"reference": "ref-1", "status": "delivered"}).encode()
    callback = Callback(
        method="POST", url="https://sms.example.com/", headers={}, body=body
    )
    with pytest.raises(CallbackAuthError, match="missing signature"):
        backend.verify_callback(callback)


def test_locmem_accepts_unsigned_callbacks_only_when_allowed(backend, settings):
    settings.SMS_WEBHOOK_ALLOW_UNSIGNED = True
    unsigned = Callback(
        method="POST", url="https://sms.example.com/", headers={}, body=b"{}"
    )
    backend.verify_callback(unsigned)

    forged = with_header(locmem.status_callback(reference="ref-1"), signature="f" * 64)
    with pytest.raises(CallbackAuthError, match="bad signature"):
        backend.verify_callback(forged)
    half = with_header(locmem.status_callback(reference="ref-1"), signature=None)
    with pytest.raises(CallbackAuthError, match="incomplete"):
        backend.verify_callback(half)


def test_locmem_refuses_a_malformed_timestamp(backend):
    callback = with_header(
        locmem.status_callback(reference="ref-1"), timestamp="yesterday"
    )
    with pytest.raises(CallbackAuthError, match="malformed timestamp"):
        backend.verify_callback(callback)
