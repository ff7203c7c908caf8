import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
import requests
import responses
from responses import matchers

from django.core.exceptions import ImproperlyConfigured

from providers.backends import http, sinch
from providers.backends.sinch import SmsBackend
from providers.exceptions import CallbackAuthError, CallbackParseError
from providers.messages import Callback, DeliveryStatus, OutboundSms, SendErrorKind
from tests.providers.contract import BackendContract

BATCHES_URL = "https://us.sms.api.sinch.com/xms/v1/plan123/batches"
STATUS_URL = "https://sms.example.com/webhooks/sinch/status/"

# The worked HMAC vector of providers.md §6 (from Sinch's .NET SDK tests).
VECTOR_SECRET = "my_secret_key"
VECTOR_BODY = b'{"event":"test"}'
VECTOR_TIMESTAMP = 1736760161
VECTOR_HEADERS = {
    "X-Sinch-Webhook-Signature": "ehhrg9MUuhpJUCo2drsI3zoqWViaojp8d6RahfBY3cg=",
    "X-Sinch-Webhook-Signature-Nonce": "01JHFFHWYY7HSS4FWTMDTQEK8V",
    "X-Sinch-Webhook-Signature-Timestamp": str(VECTOR_TIMESTAMP),
    "X-Sinch-Webhook-Signature-Algorithm": "HmacSHA256",
}

RECIPIENT_REPORT = {
    "type": "recipient_delivery_report_sms",
    "batch_id": "01W4FFL35P4NC4K35SMSBATCH9",
    "recipient": "12017777777",
    "code": 0,
    "status": "Delivered",
    "at": "2024-06-06T08:17:19.210Z",
    "operator_status_at": "2024-06-06T08:17:00Z",
    "client_reference": "client-ref",
}
INBOUND_TEXT = {
    "body": "This is a test message.",
    "from": "16051234567",
    "id": "01XXXXX21XXXXX119Z8P1XXXXX",
    "operator_id": "string",
    "received_at": "2022-08-24T14:15:22Z",
    "sent_at": "2022-08-24T14:15:22Z",
    "to": "13185551234",
    "type": "mo_text",
}


def make_backend(**options) -> SmsBackend:
    config = {
        "service_plan_id": "plan123",
        "api_token": "token-abc",
        "number": "+14155550000",
        **options,
    }
    return SmsBackend(alias="sinch", **config)


@pytest.fixture
def backend() -> SmsBackend:
    return make_backend()


@pytest.fixture
def frozen_clock(monkeypatch):
    def freeze(at: float) -> None:
        monkeypatch.setattr(sinch, "_now", lambda: at)
        # Retry-After dates are read by the shared HTTP layer.
        monkeypatch.setattr(http, "_now", lambda: at)

    freeze(VECTOR_TIMESTAMP)
    return freeze


def sms(n: int, text: str = "Hello", sender: str = "") -> OutboundSms:
    return OutboundSms(
        to=f"+1415555{n:04d}", text=text, reference=f"ref-{n}", sender=sender
    )


def json_callback(data, headers=None) -> Callback:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return Callback(
        method="POST",
        url=STATUS_URL,
        headers=headers or {},
        body=body,
        content_type="application/json",
    )


def sent_json(call_index: int = 0) -> dict:
    return json.loads(responses.calls[call_index].request.body)


def created(batch_id: str = "01FC66621XXXXX119Z8PMV1QPQ") -> dict:
    return {"status": 201, "json": {"id": batch_id, "type": "mt_text"}}


# --- Configuration -----------------------------------------------------------------


def test_missing_credentials_name_the_environment_variables():
    with pytest.raises(ImproperlyConfigured) as excinfo:
        SmsBackend(alias="sinch", number="+14155550000")
    assert "SINCH_SERVICE_PLAN_ID" in str(excinfo.value)
    assert "SINCH_API_TOKEN" in str(excinfo.value)
    assert "SINCH_NUMBER" not in str(excinfo.value)


def test_half_configured_basic_credentials_are_refused():
    with pytest.raises(ImproperlyConfigured, match="SINCH_CALLBACK_PASSWORD"):
        make_backend(callback_username="sinch")


def test_unknown_options_are_refused():
    with pytest.raises(ImproperlyConfigured, match="region"):
        make_backend(region="eu")


def test_capabilities_and_rate(backend):
    assert backend.max_recipients_per_request == 1000
    assert backend.supports_per_recipient_text
    assert backend.supports_client_reference
    assert backend.supports_callback_url
    assert backend.rate == 10.0
    assert make_backend(rate=25).rate == 25.0


# --- Sending ---------------------------------------------------------------------------


@responses.activate
def test_same_text_goes_out_as_one_batch_with_the_documented_body(backend):
    responses.post(
        BATCHES_URL,
        **created("BATCH1"),
        match=[matchers.header_matcher({"Authorization": "Bearer token-abc"})],
    )

    results = backend.send_batch([sms(1, "Hi"), sms(2, "Hi")])

    assert sent_json() == {
        "from": "14155550000",
        "to": ["14155550001", "14155550002"],
        "body": "Hi",
        "type": "mt_text",
        "delivery_report": "per_recipient",
        "callback_url": STATUS_URL,
        "client_reference": "ref-1",
    }
    assert [(r.reference, r.to, r.provider_message_id) for r in results] == [
        ("ref-1", "+14155550001", "BATCH1"),
        ("ref-2", "+14155550002", "BATCH1"),
    ]
    assert all(r.accepted for r in results)


@responses.activate
def test_different_texts_go_out_as_parameters_keyed_by_recipient(backend):
    responses.post(BATCHES_URL, **created("BATCH2"))

    results = backend.send_batch([sms(1, "Hi Ann"), sms(2, "Hi Bob ${x}")])

    assert sent_json() == {
        "from": "14155550000",
        "to": ["14155550001", "14155550002"],
        "body": "Hi ${part}",
        "parameters": {"part": {"14155550001": "Ann", "14155550002": "Bob ${x}"}},
        "type": "mt_text",
        "delivery_report": "per_recipient",
        "callback_url": STATUS_URL,
        "client_reference": "ref-1",
    }
    assert [r.provider_message_id for r in results] == ["BATCH2", "BATCH2"]


@responses.activate
def test_no_callback_url_without_a_public_base_url(settings, backend):
    settings.PUBLIC_BASE_URL = ""
    responses.post(BATCHES_URL, **created())

    backend.send_batch([sms(1)])

    assert "callback_url" not in sent_json()


@responses.activate
def test_region_and_sender_id_are_used_as_configured():
    backend = make_backend(api_url="https://eu.sms.api.sinch.com/", number="Acme")
    responses.post(
        "https://eu.sms.api.sinch.com/xms/v1/plan123/batches", **created("EU1")
    )

    [result] = backend.send_batch([sms(1)])

    assert sent_json()["from"] == "Acme"
    assert result.provider_message_id == "EU1"


@responses.activate
def test_messages_with_other_senders_or_repeated_recipients_get_their_own_batch(
    backend,
):
    responses.post(BATCHES_URL, **created("B1"))
    responses.post(BATCHES_URL, **created("B2"))
    responses.post(BATCHES_URL, **created("B3"))
    repeat = OutboundSms(to="+14155550001", text="Again", reference="ref-again")

    results = backend.send_batch(
        [sms(1), sms(2, sender="+14155559999"), repeat, sms(3)]
    )

    assert [sent_json(i)["to"] for i in range(3)] == [
        ["14155550001", "14155550003"],
        ["14155550002"],
        ["14155550001"],
    ]
    assert sent_json(1)["from"] == "14155559999"
    assert sent_json(2)["client_reference"] == "ref-again"
    assert [(r.reference, r.provider_message_id) for r in results] == [
        ("ref-1", "B1"),
        ("ref-2", "B2"),
        ("ref-again", "B3"),
        ("ref-3", "B1"),
    ]


@responses.activate
def test_send_messages_sends_at_most_1000_recipients_per_request(backend):
    batch_ids = iter(["B1", "B2", "B3"])

    def reply(request):
        return 201, {}, json.dumps({"id": next(batch_ids)})

    responses.add_callback(responses.POST, BATCHES_URL, callback=reply)
    messages = [sms(n, text=f"Hi {n % 3}") for n in range(2500)]

    results = backend.send_messages(messages)

    assert [len(sent_json(i)["to"]) for i in range(len(responses.calls))] == [
        1000,
        1000,
        500,
    ]
    assert sent_json(2)["body"] == "Hi ${part}"
    assert sent_json(2)["parameters"]["part"]["14155552499"] == "0"
    assert [r.reference for r in results] == [m.reference for m in messages]
    assert {r.provider_message_id for r in results[:1000]} == {"B1"}
    assert {r.provider_message_id for r in results[2000:]} == {"B3"}


@responses.activate
def test_accepted_batch_without_an_id_still_counts_as_sent(backend):
    responses.post(BATCHES_URL, status=201, body="queued")

    [result] = backend.send_batch([sms(1)])

    assert result.accepted
    assert result.provider_message_id == ""


@responses.activate
def test_bad_request_is_permanent_and_keeps_the_vendor_code_and_text(backend):
    responses.post(
        BATCHES_URL,
        status=400,
        json={
            "code": "syntax_invalid_parameter_format",
            "text": "Invalid MSISDN format",
        },
    )

    results = backend.send_batch([sms(1), sms(2)])

    assert len(results) == 2
    for result in results:
        assert not result.accepted
        assert result.error.code == "syntax_invalid_parameter_format"
        assert result.error.reason == "Invalid MSISDN format"
        assert result.error.kind == SendErrorKind.PERMANENT


@responses.activate
def test_failure_logs_mask_phone_numbers_from_the_vendor_text(backend, caplog):
    responses.post(
        BATCHES_URL,
        status=400,
        json={"code": "syntax_constraint_violation", "text": "Bad to: 14155550001"},
    )

    [result] = backend.send_batch([sms(1)])

    assert result.error.reason == "Bad to: 14155550001"
    assert "syntax_constraint_violation" in caplog.text
    assert "14155550001" not in caplog.text
    assert "141******01" in caplog.text


@pytest.mark.parametrize("status", [401, 403, 404])
@responses.activate
def test_refused_credentials_or_unknown_plan_are_misconfigured(backend, status):
    responses.post(
        BATCHES_URL,
        status=status,
        json={"code": "unauthorized", "text": "Invalid credentials"},
    )

    [result] = backend.send_batch([sms(1)])

    assert result.error.code == "unauthorized"
    assert result.error.kind == SendErrorKind.MISCONFIGURED


@responses.activate
def test_throttling_is_throttled_with_the_time_sinch_asks(backend):
    responses.post(
        BATCHES_URL,
        status=429,
        json={"code": "too_many_requests", "text": "Slow down"},
        headers={"Retry-After": "7"},
    )

    [result] = backend.send_batch([sms(1)])

    # Sinch's own code for it, which the send path never reads: the kind says it.
    assert result.error.code == "too_many_requests"
    assert result.error.kind == SendErrorKind.THROTTLED
    assert result.error.retry_after == 7.0


@responses.activate
def test_retry_after_as_an_http_date_becomes_seconds(backend, frozen_clock):
    responses.post(
        BATCHES_URL,
        status=429,
        body="",
        headers={"Retry-After": "Mon, 13 Jan 2025 09:23:01 GMT"},  # clock + 20 s
    )

    [result] = backend.send_batch([sms(1)])

    assert result.error.retry_after == 20.0
    assert result.error.code == "429"


@responses.activate
def test_server_error_with_a_non_json_body_is_retryable(backend):
    responses.post(BATCHES_URL, status=503, body="<html>Service Unavailable</html>")

    [result] = backend.send_batch([sms(1)])

    assert result.error.code == "503"
    assert result.error.reason == "<html>Service Unavailable</html>"
    assert result.error.kind == SendErrorKind.NOT_SENT
    assert result.error.retry_after is None


@responses.activate
def test_google_style_error_body_is_understood(backend):
    responses.post(
        BATCHES_URL,
        status=400,
        json={
            "error": {
                "code": 400,
                "message": "Bad Request",
                "status": "INVALID_ARGUMENT",
            }
        },
    )

    [result] = backend.send_batch([sms(1)])

    assert result.error.code == "INVALID_ARGUMENT"
    assert result.error.reason == "Bad Request"
    assert result.error.kind == SendErrorKind.PERMANENT


@pytest.mark.parametrize(
    ("exception", "code", "kind"),
    [
        (requests.ReadTimeout("read timed out"), "read_timeout", "maybe_sent"),
        (requests.ConnectTimeout("connect timed out"), "connect_timeout", "not_sent"),
        (
            requests.ConnectionError("connection aborted"),
            "connection_lost",
            "maybe_sent",
        ),
    ],
)
@responses.activate
def test_timeouts_and_connection_errors_say_whether_the_batch_may_have_gone(
    backend, exception, code, kind
):
    responses.post(BATCHES_URL, body=exception)

    results = backend.send_batch([sms(1), sms(2)])

    assert [r.error.code for r in results] == [code, code]
    assert {r.error.kind for r in results} == {kind}


@responses.activate
def test_one_session_is_reused_across_batches(backend):
    responses.post(BATCHES_URL, **created())
    session = backend.http.session

    backend.send_batch([sms(1)])
    backend.send_batch([sms(2)])

    assert backend.http.session is session
    assert isinstance(session, requests.Session)
    assert len(responses.calls) == 2


# --- Callback authenticity -------------------------------------------------------------


def test_the_documented_signature_vector_is_accepted(frozen_clock):
    backend = make_backend(webhook_secret=VECTOR_SECRET)

    backend.verify_callback(json_callback(VECTOR_BODY, VECTOR_HEADERS))


def test_header_names_are_matched_in_any_case(frozen_clock):
    backend = make_backend(webhook_secret=VECTOR_SECRET)
    headers = {name.lower(): value for name, value in VECTOR_HEADERS.items()}

    backend.verify_callback(json_callback(VECTOR_BODY, headers))


def test_a_forged_signature_is_refused(frozen_clock):
    backend = make_backend(webhook_secret=VECTOR_SECRET)
    headers = {
        **VECTOR_HEADERS,
        "X-Sinch-Webhook-Signature": base64.b64encode(b"x" * 32).decode(),
    }

    with pytest.raises(CallbackAuthError, match="does not match"):
        backend.verify_callback(json_callback(VECTOR_BODY, headers))


def test_another_secret_does_not_verify_the_vector(frozen_clock):
    backend = make_backend(webhook_secret="other_secret")

    with pytest.raises(CallbackAuthError, match="does not match"):
        backend.verify_callback(json_callback(VECTOR_BODY, VECTOR_HEADERS))


def test_an_altered_body_is_refused(frozen_clock):
    backend = make_backend(webhook_secret=VECTOR_SECRET)

    with pytest.raises(CallbackAuthError, match="does not match"):
        backend.verify_callback(json_callback(b'{"event":"tESt"}', VECTOR_HEADERS))


@pytest.mark.parametrize("offset", [330, -30])
def test_signatures_within_max_age_and_skew_are_fresh(frozen_clock, offset):
    frozen_clock(VECTOR_TIMESTAMP + offset)
    backend = make_backend(webhook_secret=VECTOR_SECRET)

    backend.verify_callback(json_callback(VECTOR_BODY, VECTOR_HEADERS))


def test_a_stale_signature_is_refused(frozen_clock):
    frozen_clock(VECTOR_TIMESTAMP + 331)  # 300 s max age + 30 s skew, plus one
    backend = make_backend(webhook_secret=VECTOR_SECRET)

    with pytest.raises(CallbackAuthError, match="stale"):
        backend.verify_callback(json_callback(VECTOR_BODY, VECTOR_HEADERS))


def test_a_signature_from_the_future_is_refused(frozen_clock):
    frozen_clock(VECTOR_TIMESTAMP - 31)
    backend = make_backend(webhook_secret=VECTOR_SECRET)

    with pytest.raises(CallbackAuthError, match="future"):
        backend.verify_callback(json_callback(VECTOR_BODY, VECTOR_HEADERS))


def test_freshness_follows_the_settings(settings, frozen_clock):
    settings.SMS_WEBHOOK_MAX_AGE = 60
    settings.SMS_WEBHOOK_CLOCK_SKEW = 0
    frozen_clock(VECTOR_TIMESTAMP + 61)
    backend = make_backend(webhook_secret=VECTOR_SECRET)

    with pytest.raises(CallbackAuthError, match="stale"):
        backend.verify_callback(json_callback(VECTOR_BODY, VECTOR_HEADERS))


def test_missing_signature_is_refused(frozen_clock):
    backend = make_backend(webhook_secret=VECTOR_SECRET)

    with pytest.raises(CallbackAuthError, match="missing"):
        backend.verify_callback(json_callback(VECTOR_BODY))


@pytest.mark.parametrize(
    "dropped",
    ["X-Sinch-Webhook-Signature-Nonce", "X-Sinch-Webhook-Signature-Timestamp"],
)
def test_incomplete_signature_headers_are_refused_even_when_unsigned_is_allowed(
    settings, frozen_clock, dropped
):
    settings.SMS_WEBHOOK_ALLOW_UNSIGNED = True
    backend = make_backend(webhook_secret=VECTOR_SECRET)
    headers = {k: v for k, v in VECTOR_HEADERS.items() if k != dropped}

    with pytest.raises(CallbackAuthError, match="incomplete"):
        backend.verify_callback(json_callback(VECTOR_BODY, headers))


def test_unsigned_callback_passes_only_when_allowed(settings, frozen_clock):
    settings.SMS_WEBHOOK_ALLOW_UNSIGNED = True
    backend = make_backend(webhook_secret=VECTOR_SECRET)

    backend.verify_callback(json_callback(VECTOR_BODY))
    with pytest.raises(CallbackAuthError, match="does not match"):
        backend.verify_callback(json_callback(b"{}", VECTOR_HEADERS))


def test_an_unsupported_algorithm_is_refused(frozen_clock):
    backend = make_backend(webhook_secret=VECTOR_SECRET)
    headers = {**VECTOR_HEADERS, "X-Sinch-Webhook-Signature-Algorithm": "HmacSHA512"}

    with pytest.raises(CallbackAuthError, match="algorithm"):
        backend.verify_callback(json_callback(VECTOR_BODY, headers))


def basic(credentials: bytes) -> dict[str, str]:
    return {"Authorization": f"Basic {base64.b64encode(credentials).decode()}"}


def test_matching_basic_credentials_are_accepted():
    backend = make_backend(callback_username="sinch", callback_password="s3cr:et")

    backend.verify_callback(json_callback(RECIPIENT_REPORT, basic(b"sinch:s3cr:et")))


@pytest.mark.parametrize(
    "headers",
    [
        basic(b"sinch:wrong"),
        basic(b"other:s3cr:et"),
        basic(b"sinch"),
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Bearer s3cr:et"},
        {},
    ],
    ids=["password", "username", "no-colon", "malformed", "scheme", "missing"],
)
def test_wrong_or_missing_basic_credentials_are_refused(headers):
    backend = make_backend(callback_username="sinch", callback_password="s3cr:et")

    with pytest.raises(CallbackAuthError):
        backend.verify_callback(json_callback(RECIPIENT_REPORT, headers))


def test_without_any_verification_configured_callbacks_are_refused(backend):
    with pytest.raises(CallbackAuthError, match="SINCH_WEBHOOK_SECRET"):
        backend.verify_callback(json_callback(RECIPIENT_REPORT))


def test_without_any_verification_configured_unsigned_may_be_allowed(settings, backend):
    settings.SMS_WEBHOOK_ALLOW_UNSIGNED = True

    backend.verify_callback(json_callback(RECIPIENT_REPORT))


# --- Callback content -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (RECIPIENT_REPORT, "recipient_delivery_report_sms"),
        (INBOUND_TEXT, "mo_text"),
        ({"type": "delivery_report_sms", "batch_id": "B"}, "delivery_report_sms"),
    ],
)
def test_callback_type_names_the_kind_of_callback(backend, data, kind):
    assert backend.callback_type(json_callback(data)) == kind


@pytest.mark.parametrize(
    ("kind", "routed"),
    [
        ("recipient_delivery_report_sms", "status"),
        ("delivery_report_sms", "status"),
        ("mo_text", "inbound"),
        ("mo_binary", "inbound"),
        ("something_new", "fallback"),
    ],
)
def test_callback_kind_routes_to_the_right_parser(backend, kind, routed):
    callback = json_callback({"type": kind})

    assert backend.callback_kind(callback, default="fallback") == routed


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"batch_id": "B"}'])
def test_callback_type_refuses_bodies_without_a_type(backend, body):
    with pytest.raises(CallbackParseError):
        backend.callback_type(json_callback(body))


def test_documented_recipient_report_becomes_one_event(backend):
    [event] = backend.parse_status_callback(json_callback(RECIPIENT_REPORT))

    assert event.status == DeliveryStatus.DELIVERED
    assert event.raw_status == "Delivered"
    assert event.provider_message_id == "01W4FFL35P4NC4K35SMSBATCH9"
    assert event.recipient == "+12017777777"
    assert event.reference == "client-ref"
    assert event.error_code == ""
    assert event.occurred_at == datetime(2024, 6, 6, 8, 17, tzinfo=UTC)
    assert not event.opt_out_signal
    assert event.payload == RECIPIENT_REPORT


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("Queued", DeliveryStatus.SUBMITTED),
        ("Dispatched", DeliveryStatus.SENT),
        ("Delivered", DeliveryStatus.DELIVERED),
        ("Failed", DeliveryStatus.UNDELIVERED),
        ("Aborted", DeliveryStatus.FAILED),
        ("Cancelled", DeliveryStatus.FAILED),
        ("Rejected", DeliveryStatus.REJECTED),
        ("Expired", DeliveryStatus.EXPIRED),
        ("Deleted", DeliveryStatus.UNDELIVERED),
        ("Unknown", DeliveryStatus.UNCONFIRMED),
        ("DELIVERED", DeliveryStatus.DELIVERED),
        ("Teleported", DeliveryStatus.UNKNOWN),
    ],
)
def test_recipient_report_statuses_map_to_ours(backend, raw, status):
    [event] = backend.parse_status_callback(
        json_callback({**RECIPIENT_REPORT, "status": raw})
    )

    assert event.status == status
    assert event.raw_status == raw
    # "Deleted" is an invalid number or an opted-out subscriber: not a consent signal.
    assert not event.opt_out_signal
    assert event.resend == (raw == "Aborted")


def test_report_code_becomes_the_error_with_its_documented_meaning(backend):
    data = {
        **RECIPIENT_REPORT,
        "status": "Aborted",
        "code": 402,
        "recipient": "+44231235674",
        "number_of_message_parts": 2,
    }
    del data["operator_status_at"]

    [event] = backend.parse_status_callback(json_callback(data))

    assert event.error_code == "402"
    assert event.error_reason == "Message unroutable"
    assert event.recipient == "+44231235674"
    assert event.segments == 2
    assert event.occurred_at == datetime(2024, 6, 6, 8, 17, 19, 210000, tzinfo=UTC)


def test_operator_code_without_a_sinch_name_is_kept(backend):
    [event] = backend.parse_status_callback(
        json_callback({**RECIPIENT_REPORT, "status": "Failed", "code": 61})
    )

    assert event.error_code == "61"
    assert event.error_reason == ""


def test_full_batch_report_gives_one_event_per_recipient(backend):
    data = {
        "batch_id": "01FC66621XXXXX119Z8PMV1QPQ",
        "client_reference": "ref-1",
        "statuses": [
            {
                "code": 0,
                "count": 1,
                "recipients": ["44231235674"],
                "status": "Delivered",
            },
            {
                "code": 402,
                "count": 2,
                "recipients": ["14155550001", "+14155550002"],
                "status": "Aborted",
            },
        ],
        "total_message_count": 3,
        "type": "delivery_report_sms",
    }

    events = backend.parse_status_callback(json_callback(data))

    assert [(e.recipient, e.status, e.error_code) for e in events] == [
        ("+44231235674", DeliveryStatus.DELIVERED, ""),
        ("+14155550001", DeliveryStatus.FAILED, "402"),
        ("+14155550002", DeliveryStatus.FAILED, "402"),
    ]
    assert {e.provider_message_id for e in events} == {"01FC66621XXXXX119Z8PMV1QPQ"}
    assert {e.reference for e in events} == {"ref-1"}
    assert events[1].error_reason == "Message unroutable"


def test_summary_batch_report_without_recipients_gives_no_events(backend):
    data = {
        "batch_id": "01FC66621XXXXX119Z8PMV1QPQ",
        "statuses": [{"code": 0, "count": 1, "status": "Delivered"}],
        "total_message_count": 1,
        "type": "delivery_report_sms",
    }

    assert backend.parse_status_callback(json_callback(data)) == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        json.dumps(INBOUND_TEXT).encode(),
        json.dumps({**RECIPIENT_REPORT, "batch_id": ""}).encode(),
        json.dumps(
            {k: v for k, v in RECIPIENT_REPORT.items() if k != "recipient"}
        ).encode(),
        json.dumps(
            {k: v for k, v in RECIPIENT_REPORT.items() if k != "status"}
        ).encode(),
        json.dumps({"type": "delivery_report_sms", "batch_id": "B"}).encode(),
        json.dumps(
            {"type": "delivery_report_sms", "batch_id": "B", "statuses": ["Delivered"]}
        ).encode(),
        json.dumps(
            {
                "type": "delivery_report_sms",
                "batch_id": "B",
                "statuses": [{"status": "Delivered", "recipients": [123]}],
            }
        ).encode(),
    ],
    ids=[
        "malformed",
        "inbound",
        "empty-batch-id",
        "no-recipient",
        "no-status",
        "no-statuses",
        "bad-status-entry",
        "bad-recipients",
    ],
)
def test_bad_delivery_reports_are_refused(backend, body):
    with pytest.raises(CallbackParseError):
        backend.parse_status_callback(json_callback(body))


def test_documented_inbound_text_becomes_an_inbound_sms(backend):
    [inbound] = backend.parse_inbound_callback(json_callback(INBOUND_TEXT))

    assert inbound.from_number == "+16051234567"
    assert inbound.to_number == "+13185551234"
    assert inbound.text == "This is a test message."
    assert inbound.provider_message_id == "01XXXXX21XXXXX119Z8P1XXXXX"
    assert inbound.received_at == datetime(2022, 8, 24, 14, 15, 22, tzinfo=UTC)
    assert inbound.payload == INBOUND_TEXT


def test_inbound_text_to_a_short_code_keeps_the_short_code(backend):
    [inbound] = backend.parse_inbound_callback(
        json_callback({**INBOUND_TEXT, "to": "54321", "body": "STOP"})
    )

    assert inbound.to_number == "54321"
    assert inbound.text == "STOP"


@pytest.mark.parametrize(
    "data",
    [
        RECIPIENT_REPORT,
        {**INBOUND_TEXT, "type": "mo_binary"},
        {k: v for k, v in INBOUND_TEXT.items() if k != "from"},
        {k: v for k, v in INBOUND_TEXT.items() if k != "body"},
        {**INBOUND_TEXT, "to": None},
    ],
    ids=["status-report", "binary", "no-from", "no-body", "null-to"],
)
def test_bad_inbound_callbacks_are_refused(backend, data):
    with pytest.raises(CallbackParseError):
        backend.parse_inbound_callback(json_callback(data))


# --- Issue 13 rows 1 and 14: Sinch's parameter and body limits ------------------------


@responses.activate
def test_personalised_texts_share_one_body_with_short_parameters(backend):
    responses.post(BATCHES_URL, **created("B"))
    footer = "\nReply STOP to opt out. " + "Offer terms apply. " * 15
    texts = [f"Hi {name}, your order is ready.{footer}" for name in ("Ann", "Bo")]
    assert all(len(text) > 160 for text in texts)

    backend.send_batch([sms(1, texts[0]), sms(2, texts[1])])

    body = sent_json()
    assert len(responses.calls) == 1
    assert body["body"] == f"Hi ${{part}}, your order is ready.{footer}"
    values = body["parameters"]["part"]
    assert values == {"14155550001": "Ann", "14155550002": "Bo"}
    assert all(len(value) <= sinch.MAX_PARAMETER_LENGTH for value in values.values())


@responses.activate
def test_texts_differing_by_more_than_160_characters_go_as_one_batch_per_text(backend):
    ids = iter(["B1", "B2"])
    responses.add_callback(
        responses.POST,
        BATCHES_URL,
        callback=lambda request: (201, {}, json.dumps({"id": next(ids)})),
    )
    long_a, long_b = "A" * 401, "B" * 401

    results = backend.send_messages([sms(1, long_a), sms(2, long_b), sms(3, long_a)])

    bodies = [sent_json(i) for i in range(len(responses.calls))]
    assert [(b["body"], b["to"]) for b in bodies] == [
        (long_a, ["14155550001", "14155550003"]),
        (long_b, ["14155550002"]),
    ]
    assert all("parameters" not in b for b in bodies)
    assert [r.provider_message_id for r in results] == ["B1", "B2", "B1"]


@responses.activate
def test_a_body_over_2000_characters_is_refused_before_any_request(backend):
    results = backend.send_messages([sms(1, "x" * 2001), sms(2, "fine")])

    assert results[0].error.kind == SendErrorKind.PERMANENT
    assert results[0].error.code == "text_too_long"
    assert "at most 2000" in results[0].error.reason
    assert results[1].error is not None  # no stub: the request itself failed
    assert len(responses.calls) == 1
    assert sent_json()["to"] == ["14155550002"]


def test_shared_text_holding_a_placeholder_is_never_a_template():
    assert sinch._common_template(["Pay ${x} now, Ann", "Pay ${x} now, Bo"]) is None
    assert sinch._common_template(["Hi Ann!", "Hi Bo!"]) == ("Hi ", "!", ["Ann", "Bo"])


@responses.activate
def test_with_a_callback_secret_batches_leave_callback_url_to_the_service_plan():
    # Issue 13 row 12: signed callbacks go to the service plan's callback URL, which
    # a per-batch callback_url cannot override (sinch SDK README).
    backend = make_backend(webhook_secret="s3cret")
    responses.post(BATCHES_URL, **created())

    backend.send_batch([sms(1)])

    assert "callback_url" not in sent_json()


# --- The backend contract (tests/providers/contract.py) ----------------------------


class TestSinchContract(BackendContract):
    alias = "sinch"
    send_url = BATCHES_URL
    # Sinch's "Delivery report statuses" table
    # (https://developers.sinch.com/docs/sms/api-reference/sms/tag/Delivery-reports/).
    documented_statuses = {
        "Queued": DeliveryStatus.SUBMITTED,
        "Dispatched": DeliveryStatus.SENT,
        "Aborted": DeliveryStatus.FAILED,
        "Cancelled": DeliveryStatus.FAILED,
        "Rejected": DeliveryStatus.REJECTED,
        "Deleted": DeliveryStatus.UNDELIVERED,
        "Delivered": DeliveryStatus.DELIVERED,
        "Failed": DeliveryStatus.UNDELIVERED,
        "Expired": DeliveryStatus.EXPIRED,
        "Unknown": DeliveryStatus.UNCONFIRMED,
    }

    def make_backend(self, **options):
        return make_backend(webhook_secret=VECTOR_SECRET, **options)

    def accept_send(self, mock, count):
        mock.add(responses.POST, BATCHES_URL, **created())

    def sign(self, callback, *, at):
        # The scheme of sinch 2.3.0 (authentication_validation.py,
        # validate_sinch_event_signature_with_nonce): HMAC-SHA256 over
        # "{body}.{nonce}.{timestamp}", base64. The sinch package is not installed
        # here, so the same three lines are written out.
        nonce, timestamp = "01JHFFHWYY7HSS4FWTMDTQEK8V", str(int(at))
        signed = b".".join([callback.body, nonce.encode(), timestamp.encode()])
        digest = hmac.new(VECTOR_SECRET.encode(), signed, hashlib.sha256).digest()
        return json_callback(
            callback.body,
            headers={
                "x-sinch-webhook-signature": base64.b64encode(digest).decode(),
                "x-sinch-webhook-signature-nonce": nonce,
                "x-sinch-webhook-signature-timestamp": timestamp,
                "x-sinch-webhook-signature-algorithm": "HmacSHA256",
            },
        )

    def example_status_callback(self):
        # sinch/sinch-sdk-python tests/e2e/sms/features/steps/webhooks.steps.py
        return json_callback(RECIPIENT_REPORT)

    def status_callback_with(self, raw_status):
        return json_callback({**RECIPIENT_REPORT, "status": raw_status})
