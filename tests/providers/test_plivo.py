"""The Plivo backend against a faked Message API, and its callback handling."""

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlencode

import plivo.rest.client as plivo_rest_client
import pytest
import requests
import responses
from plivo.utils.signature_v3 import (
    construct_get_url,
    construct_post_url,
    get_signature_v3,
    validate_v3_signature,
)

from django.core.exceptions import ImproperlyConfigured

from providers import create_provider
from providers.backends.plivo import SmsBackend
from providers.exceptions import CallbackAuthError, CallbackParseError
from providers.messages import Callback, DeliveryStatus, OutboundSms, SendErrorKind
from tests.providers.contract import BackendContract

AUTH_ID = "MAXXXXXXXXXXXXXXXXXX"
AUTH_TOKEN = "MY_AUTH_TOKEN"
SEND_URL = f"https://api.plivo.com/v1/Account/{AUTH_ID}/Message/"
STATUS_URL = "https://sms.example.com/webhooks/plivo/status/"
FORM = "application/x-www-form-urlencoded"

# providers.md §6: the worked Plivo vectors.
VECTOR_URL = "https://example.com/plivo/status/"
VECTOR_NONCE = "05429567804466091622"
VECTOR_V2 = "2xO6iHgcvBbecSgCrbJPFuMRriuut/uxcsCCF7VGuzU="
VECTOR_V3 = "8LskMth39Ch6PqaV7/p6fLLBeEgtPMoHEbQ8c90XDKE="
VECTOR_PARAMS = {
    "From": "14155550000",
    "To": "14155551111",
    "Status": "delivered",
    "MessageUUID": "db3ce55a-7f1d-11e1-8ea7-1231380bc196",
    "ErrorCode": "",
}


@pytest.fixture
def backend() -> SmsBackend:
    return SmsBackend(
        alias="plivo",
        auth_id=AUTH_ID,
        auth_token=AUTH_TOKEN,
        sender_id="+14155550000",
    )


@pytest.fixture
def plivo_api():
    with responses.RequestsMock() as mock:
        yield mock


def sms(n: int, text: str = "Hello", **kwargs) -> OutboundSms:
    return OutboundSms(to=f"+1415555{n:04d}", text=text, reference=f"ref-{n}", **kwargs)


def accept(mock, uuids: list[str], invalid: list[str] | None = None, url=SEND_URL):
    body = {"api_id": "api-1", "message": "message(s) queued", "message_uuid": uuids}
    if invalid is not None:
        body["invalid_number"] = invalid
    mock.add(responses.POST, url, json=body, status=202)


def sent_body(mock, index: int = 0) -> dict:
    return json.loads(mock.calls[index].request.body)


def form_callback(
    params: dict[str, str], url: str = VECTOR_URL, headers=None
) -> Callback:
    return Callback(
        method="POST",
        url=url,
        headers=headers or {},
        body=urlencode(params).encode(),
        content_type=FORM,
    )


def sdk_v3_signature(method: str, url: str, params: dict) -> str:
    """The plivo SDK's own V3 signature, as an independent cross-check."""
    signed = (
        construct_get_url(url, dict(params))
        if method == "GET"
        else construct_post_url(url, dict(params))
    )
    signature = get_signature_v3(
        AUTH_TOKEN.encode(), signed.decode(), VECTOR_NONCE.encode()
    ).decode()
    assert validate_v3_signature(
        method, url, VECTOR_NONCE, AUTH_TOKEN, signature, dict(params)
    )
    return signature


def v3_headers(signature: str, nonce: str = VECTOR_NONCE) -> dict[str, str]:
    return {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}


def v2_headers(signature: str = VECTOR_V2) -> dict[str, str]:
    return {
        "X-Plivo-Signature-V2": signature,
        "X-Plivo-Signature-V2-Nonce": VECTOR_NONCE,
    }


# --- Configuration -------------------------------------------------------------------


def test_missing_credentials_name_the_environment_variables():
    with pytest.raises(ImproperlyConfigured) as excinfo:
        SmsBackend(alias="plivo", auth_id="", auth_token="", sender_id="")
    message = str(excinfo.value)
    assert "PLIVO_AUTH_ID" in message
    assert "PLIVO_AUTH_TOKEN" in message
    assert "PLIVO_SENDER_ID" in message


def test_malformed_auth_id_is_a_configuration_error():
    with pytest.raises(ImproperlyConfigured, match="MA or SA"):
        SmsBackend(
            alias="plivo", auth_id="nope", auth_token=AUTH_TOKEN, sender_id="ACME"
        )


def test_api_url_must_be_http():
    with pytest.raises(ImproperlyConfigured, match="PLIVO_API_URL"):
        SmsBackend(
            alias="plivo",
            auth_id=AUTH_ID,
            auth_token=AUTH_TOKEN,
            sender_id="ACME",
            api_url="api.plivo.com",
        )


def test_settings_options_build_the_backend(settings):
    settings.SMS_PROVIDERS = {
        "plivo": {
            "BACKEND": "providers.backends.plivo.SmsBackend",
            "OPTIONS": {
                "auth_id": AUTH_ID,
                "auth_token": AUTH_TOKEN,
                "sender_id": "ACME",
                "api_url": "https://api.plivo.com",
                "rate": 2,
            },
        }
    }
    backend = create_provider("plivo")
    assert isinstance(backend, SmsBackend)
    assert backend.rate == 2.0


def test_capabilities_match_plivo(backend):
    assert backend.max_recipients_per_request == 1000
    assert backend.supports_per_recipient_text is False
    assert backend.supports_client_reference is False
    assert backend.supports_callback_url is True
    assert backend.rate == 5.0


# --- Sending -------------------------------------------------------------------------


def test_single_send_posts_the_documented_body_and_keeps_the_uuid(backend, plivo_api):
    accept(plivo_api, ["uuid-1"])

    [result] = backend.send_batch([sms(1)])

    assert sent_body(plivo_api) == {
        "src": "14155550000",
        "dst": "14155550001",
        "text": "Hello",
        "type": "sms",
        "url": f"{STATUS_URL}?ref=ref-1",
        "method": "POST",
        "log": "true",
        "trackable": False,
    }
    expected_auth = base64.b64encode(f"{AUTH_ID}:{AUTH_TOKEN}".encode()).decode()
    assert (
        plivo_api.calls[0].request.headers["Authorization"] == f"Basic {expected_auth}"
    )
    assert result.accepted
    assert result.reference == "ref-1"
    assert result.to == "+14155550001"
    assert result.provider_message_id == "uuid-1"


def test_bulk_send_joins_destinations_and_leaves_ids_to_the_receipts(
    backend, plivo_api
):
    accept(plivo_api, ["uuid-b", "uuid-a", "uuid-c"])

    results = backend.send_batch([sms(1), sms(2), sms(3)])

    body = sent_body(plivo_api)
    assert body["dst"] == "14155550001<14155550002<14155550003"
    assert body["url"] == f"{STATUS_URL}?ref=ref-1"
    assert [r.reference for r in results] == ["ref-1", "ref-2", "ref-3"]
    assert all(r.accepted for r in results)
    # The uuid order is undocumented: no guessing which is whose.
    assert [r.provider_message_id for r in results] == ["", "", ""]


def test_invalid_numbers_fail_permanently_for_those_recipients_only(
    backend, plivo_api, caplog
):
    caplog.set_level("INFO", logger="providers.backends.plivo")
    accept(plivo_api, ["uuid-1", "uuid-3"], invalid=["14155550002"])

    results = backend.send_batch([sms(1), sms(2), sms(3)])

    assert [r.accepted for r in results] == [True, False, True]
    error = results[1].error
    assert error.code == "invalid_number"
    assert error.kind == SendErrorKind.PERMANENT
    assert "14155550002" not in caplog.text


def test_invalid_numbers_match_despite_plivo_formatting(backend, plivo_api):
    accept(plivo_api, ["uuid-1"], invalid=["+1 (415) 555-0002"])

    results = backend.send_batch([sms(1), sms(2)])

    assert results[1].error.code == "invalid_number"
    # One accepted recipient and one uuid: the id is certain.
    assert results[0].provider_message_id == "uuid-1"


def test_duplicate_destination_gets_one_send_and_one_error(backend, plivo_api):
    accept(plivo_api, ["uuid-1"])
    duplicate = OutboundSms(to="+14155550001", text="Hello", reference="ref-dup")

    first, second = backend.send_batch([sms(1), duplicate])

    assert sent_body(plivo_api)["dst"] == "14155550001"
    assert first.provider_message_id == "uuid-1"
    assert second.reference == "ref-dup"
    assert second.error.code == "duplicate"
    assert second.error.reason == "duplicate destination in batch"
    assert second.error.kind == SendErrorKind.PERMANENT


def test_destination_equal_to_sender_fails_alone(backend, plivo_api):
    accept(plivo_api, ["uuid-1"])
    to_self = OutboundSms(to="+14155550000", text="Hello", reference="ref-self")

    own, other = backend.send_batch([to_self, sms(1)])

    assert own.error.code == "invalid_number"
    body = sent_body(plivo_api)
    assert body["dst"] == "14155550001"
    # The callback ref names a message that is in the request.
    assert body["url"] == f"{STATUS_URL}?ref=ref-1"
    assert other.provider_message_id == "uuid-1"


def test_malformed_destination_is_refused_without_a_request(backend, plivo_api):
    injected = OutboundSms(to="+14155550001<14155550009", text="Hi", reference="r")

    [result] = backend.send_batch([injected])

    assert result.error.code == "invalid_number"
    assert result.error.kind == SendErrorKind.PERMANENT
    assert len(plivo_api.calls) == 0


def test_message_sender_overrides_the_default_without_plus(backend, plivo_api):
    accept(plivo_api, ["uuid-1"])

    backend.send_batch([sms(1, sender="+44 7700 900000")])

    assert sent_body(plivo_api)["src"] == "447700900000"


def test_alphanumeric_sender_is_sent_as_is(backend, plivo_api):
    accept(plivo_api, ["uuid-1"])

    backend.send_batch([sms(1, sender="ACME")])

    assert sent_body(plivo_api)["src"] == "ACME"


def test_no_public_base_url_sends_no_callback_url(backend, plivo_api, settings):
    settings.PUBLIC_BASE_URL = ""
    accept(plivo_api, ["uuid-1"])

    backend.send_batch([sms(1)])

    assert "url" not in sent_body(plivo_api)


def test_custom_api_url_is_used_and_the_sdk_global_left_alone(plivo_api):
    backend = SmsBackend(
        alias="plivo",
        auth_id=AUTH_ID,
        auth_token=AUTH_TOKEN,
        sender_id="ACME",
        api_url="http://127.0.0.1:9000/",
    )
    accept(
        plivo_api,
        ["uuid-1"],
        url=f"http://127.0.0.1:9000/v1/Account/{AUTH_ID}/Message/",
    )

    [result] = backend.send_batch([sms(1)])

    assert result.provider_message_id == "uuid-1"
    assert plivo_rest_client.PLIVO_API_BASE_URI == "https://api.plivo.com/v1/Account"


def test_send_messages_chunks_a_thousand_destinations_per_request(backend, plivo_api):
    def answer(request):
        count = len(json.loads(request.body)["dst"].split("<"))
        body = {"message_uuid": [f"uuid-{i}" for i in range(count)]}
        return 202, {}, json.dumps(body)

    plivo_api.add_callback(responses.POST, SEND_URL, callback=answer)
    messages = [sms(n) for n in range(1, 2501)]

    results = backend.send_messages(messages)

    bodies = [sent_body(plivo_api, i) for i in range(len(plivo_api.calls))]
    assert [len(b["dst"].split("<")) for b in bodies] == [1000, 1000, 500]
    assert [b["url"] for b in bodies] == [
        f"{STATUS_URL}?ref=ref-1",
        f"{STATUS_URL}?ref=ref-1001",
        f"{STATUS_URL}?ref=ref-2001",
    ]
    assert bodies[1]["dst"].split("<")[0] == "14155551001"
    assert [r.reference for r in results] == [m.reference for m in messages]
    assert all(r.accepted for r in results)


def test_send_messages_sends_one_request_per_text(backend, plivo_api):
    accept(plivo_api, ["uuid-a1", "uuid-a2"])
    accept(plivo_api, ["uuid-b1"])

    results = backend.send_messages([sms(1, "A"), sms(2, "B"), sms(3, "A")])

    first, second = sent_body(plivo_api, 0), sent_body(plivo_api, 1)
    assert (first["text"], first["dst"]) == ("A", "14155550001<14155550003")
    assert (second["text"], second["dst"]) == ("B", "14155550002")
    assert sorted(r.reference for r in results) == ["ref-1", "ref-2", "ref-3"]
    by_reference = {r.reference: r for r in results}
    assert by_reference["ref-2"].provider_message_id == "uuid-b1"


def test_send_batch_with_mixed_texts_still_sends_one_text_per_request(
    backend, plivo_api
):
    accept(plivo_api, ["uuid-a"])
    accept(plivo_api, ["uuid-b"])

    results = backend.send_batch([sms(1, "A"), sms(2, "B")])

    assert [sent_body(plivo_api, i)["text"] for i in range(2)] == ["A", "B"]
    assert [r.provider_message_id for r in results] == ["uuid-a", "uuid-b"]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, SendErrorKind.PERMANENT),
        (401, SendErrorKind.MISCONFIGURED),
        (403, SendErrorKind.MISCONFIGURED),
        (404, SendErrorKind.PERMANENT),
        (405, SendErrorKind.PERMANENT),
        (409, SendErrorKind.PERMANENT),
        (422, SendErrorKind.PERMANENT),
        (500, SendErrorKind.NOT_SENT),
        (429, SendErrorKind.THROTTLED),
        (502, SendErrorKind.NOT_SENT),
        (503, SendErrorKind.NOT_SENT),
        (504, SendErrorKind.MAYBE_SENT),
        (418, SendErrorKind.PERMANENT),
    ],
)
def test_http_errors_are_classified_for_the_whole_batch(
    backend, plivo_api, status, kind
):
    plivo_api.add(
        responses.POST,
        SEND_URL,
        json={"api_id": "api-1", "error": "the vendor's words"},
        status=status,
    )

    results = backend.send_batch([sms(1), sms(2)])

    assert [r.reference for r in results] == ["ref-1", "ref-2"]
    assert results[0].error == results[1].error
    error = results[0].error
    # The SDK folded 405/409/422 into one exception and 429/502/503 into a bare
    # message; over plain HTTP the status itself is kept.
    assert (error.code, error.kind) == (str(status), kind)
    assert error.reason == "the vendor's words"


def test_throttling_keeps_the_retry_after_plivo_sends(backend, plivo_api):
    plivo_api.add(
        responses.POST,
        SEND_URL,
        json={"api_id": "api-1", "error": "too many requests"},
        status=429,
        headers={"Retry-After": "3"},
    )

    [result] = backend.send_batch([sms(1)])

    assert result.error.kind == SendErrorKind.THROTTLED
    assert result.error.retry_after == 3.0


def test_vendor_error_text_is_kept(backend, plivo_api):
    plivo_api.add(
        responses.POST,
        SEND_URL,
        json={"api_id": "api-1", "error": "src parameter not present"},
        status=400,
    )

    [result] = backend.send_batch([sms(1)])

    assert result.error.reason == "src parameter not present"


@pytest.mark.parametrize(
    ("exception", "code", "kind"),
    [
        (requests.exceptions.ReadTimeout("slow"), "read_timeout", "maybe_sent"),
        (requests.exceptions.ConnectTimeout("slow"), "connect_timeout", "not_sent"),
        (
            requests.exceptions.ConnectionError("aborted"),
            "connection_lost",
            "maybe_sent",
        ),
        (
            requests.exceptions.ChunkedEncodingError("cut"),
            "broken_response",
            "maybe_sent",
        ),
    ],
)
def test_network_failures_say_whether_the_request_may_have_gone(
    backend, plivo_api, exception, code, kind
):
    plivo_api.add(responses.POST, SEND_URL, body=exception)

    results = backend.send_batch([sms(1), sms(2)])

    assert {(r.error.code, r.error.kind) for r in results} == {(code, kind)}


def test_error_without_a_json_body_keeps_the_status_and_text(backend, plivo_api):
    plivo_api.add(responses.POST, SEND_URL, body="upstream broke", status=502)

    [result] = backend.send_batch([sms(1)])

    assert (result.error.code, result.error.reason) == ("502", "upstream broke")
    assert result.error.kind == SendErrorKind.NOT_SENT


# --- verify_callback -----------------------------------------------------------------


@pytest.fixture
def v2_backend() -> SmsBackend:
    return SmsBackend(
        alias="plivo",
        auth_id=AUTH_ID,
        auth_token=AUTH_TOKEN,
        sender_id="+14155550000",
        allow_v2_signatures=True,
    )


def test_a_valid_v2_signature_is_refused_unless_allowed(backend):
    # V2 covers neither the body nor a time: one captured header pair would forge
    # any callback to that URL for ever.
    with pytest.raises(CallbackAuthError, match="PLIVO_ALLOW_V2_SIGNATURES"):
        backend.verify_callback(form_callback(VECTOR_PARAMS, headers=v2_headers()))


def test_v2_vector_is_accepted_when_allowed(v2_backend):
    v2_backend.verify_callback(form_callback(VECTOR_PARAMS, headers=v2_headers()))


def test_v2_ignores_the_query_string(v2_backend):
    callback = form_callback(
        VECTOR_PARAMS, url=f"{VECTOR_URL}?x=1", headers=v2_headers()
    )
    v2_backend.verify_callback(callback)


def test_v2_main_account_header_is_accepted(v2_backend):
    headers = {
        "X-Plivo-Signature-Ma-V2": VECTOR_V2,
        "X-Plivo-Signature-V2-Nonce": VECTOR_NONCE,
    }
    v2_backend.verify_callback(form_callback(VECTOR_PARAMS, headers=headers))


def test_forged_v2_signature_is_refused(v2_backend):
    forged = base64.b64encode(b"x" * 32).decode()
    with pytest.raises(CallbackAuthError, match="V2 signature does not match"):
        v2_backend.verify_callback(
            form_callback(VECTOR_PARAMS, headers=v2_headers(forged))
        )


def test_v2_signature_for_another_url_is_refused(v2_backend):
    callback = form_callback(
        VECTOR_PARAMS, url="https://example.com/plivo/inbound/", headers=v2_headers()
    )
    with pytest.raises(CallbackAuthError, match="does not match"):
        v2_backend.verify_callback(callback)


def test_v3_vector_is_accepted(backend):
    backend.verify_callback(form_callback(VECTOR_PARAMS, headers=v3_headers(VECTOR_V3)))


def test_v3_refuses_altered_params(backend):
    altered = {**VECTOR_PARAMS, "Status": "undelivered"}
    with pytest.raises(CallbackAuthError, match="V3"):
        backend.verify_callback(form_callback(altered, headers=v3_headers(VECTOR_V3)))


def test_v3_refuses_a_dropped_blank_param(backend):
    without_blank = {k: v for k, v in VECTOR_PARAMS.items() if k != "ErrorCode"}
    with pytest.raises(CallbackAuthError):
        backend.verify_callback(
            form_callback(without_blank, headers=v3_headers(VECTOR_V3))
        )


def test_v3_refuses_another_url(backend):
    callback = form_callback(
        VECTOR_PARAMS,
        url="https://example.org/plivo/status/",
        headers=v3_headers(VECTOR_V3),
    )
    with pytest.raises(CallbackAuthError):
        backend.verify_callback(callback)


def test_v3_refuses_a_forged_signature(backend):
    forged = base64.b64encode(b"y" * 32).decode()
    with pytest.raises(CallbackAuthError):
        backend.verify_callback(
            form_callback(VECTOR_PARAMS, headers=v3_headers(forged))
        )


def test_v3_signature_without_nonce_is_refused(backend):
    headers = {"X-Plivo-Signature-V3": VECTOR_V3}
    with pytest.raises(CallbackAuthError, match="nonce"):
        backend.verify_callback(form_callback(VECTOR_PARAMS, headers=headers))


def test_v3_header_with_several_signatures_needs_one_match(backend):
    other = base64.b64encode(b"z" * 32).decode()
    headers = v3_headers(f"{other},{VECTOR_V3}")
    backend.verify_callback(form_callback(VECTOR_PARAMS, headers=headers))


def test_v3_main_account_header_is_accepted(backend):
    headers = {
        "X-Plivo-Signature-Ma-V3": VECTOR_V3,
        "X-Plivo-Signature-V3-Nonce": VECTOR_NONCE,
    }
    backend.verify_callback(form_callback(VECTOR_PARAMS, headers=headers))


def test_good_v2_does_not_rescue_a_bad_v3(v2_backend):
    altered = {**VECTOR_PARAMS, "Status": "undelivered"}
    headers = {**v3_headers(VECTOR_V3), **v2_headers()}
    with pytest.raises(CallbackAuthError, match="V3"):
        v2_backend.verify_callback(form_callback(altered, headers=headers))


def test_v3_covers_the_query_of_a_post_callback(backend):
    url = f"{STATUS_URL}?ref=ref-1"
    signature = sdk_v3_signature("POST", url, VECTOR_PARAMS)

    backend.verify_callback(
        form_callback(VECTOR_PARAMS, url=url, headers=v3_headers(signature))
    )
    with pytest.raises(CallbackAuthError):
        backend.verify_callback(
            form_callback(
                VECTOR_PARAMS,
                url=f"{STATUS_URL}?ref=ref-2",
                headers=v3_headers(signature),
            )
        )


def test_v3_signs_every_value_of_a_repeated_form_field(backend):
    body = b"Media=https%3A%2F%2Fm%2F2&Media=https%3A%2F%2Fm%2F1&MessageUUID=u-1"
    signature = sdk_v3_signature(
        "POST",
        STATUS_URL,
        {"Media": ["https://m/2", "https://m/1"], "MessageUUID": "u-1"},
    )
    callback = Callback(
        method="POST",
        url=STATUS_URL,
        headers=v3_headers(signature),
        body=body,
        content_type=FORM,
    )

    backend.verify_callback(callback)


def test_v3_get_callback_signs_the_query(backend):
    url = f"{STATUS_URL}?ref=ref-1&{urlencode(VECTOR_PARAMS)}"
    signature = sdk_v3_signature("GET", url, {})
    callback = Callback(method="GET", url=url, headers=v3_headers(signature))

    backend.verify_callback(callback)
    tampered = Callback(
        method="GET",
        url=url.replace("Status=delivered", "Status=failed"),
        headers=v3_headers(signature),
    )
    with pytest.raises(CallbackAuthError):
        backend.verify_callback(tampered)


def test_unsigned_callback_is_refused(backend):
    with pytest.raises(CallbackAuthError, match="missing"):
        backend.verify_callback(form_callback(VECTOR_PARAMS))


def test_unsigned_callback_is_accepted_when_allowed(backend, settings):
    settings.SMS_WEBHOOK_ALLOW_UNSIGNED = True
    backend.verify_callback(form_callback(VECTOR_PARAMS))


def test_bad_signature_is_refused_even_when_unsigned_is_allowed(backend, settings):
    settings.SMS_WEBHOOK_ALLOW_UNSIGNED = True
    altered = {**VECTOR_PARAMS, "Status": "undelivered"}
    with pytest.raises(CallbackAuthError):
        backend.verify_callback(form_callback(altered, headers=v3_headers(VECTOR_V3)))


# --- parse_status_callback -----------------------------------------------------------

DLR = {
    "MessageUUID": "db3ce55a-7f1d-11e1-8ea7-1231380bc196",
    "To": "14155551111",
    "From": "14155550000",
    "Type": "sms",
    "Status": "delivered",
    "Units": "2",
    "TotalRate": "0.0050",
    "TotalAmount": "0.0100",
    "MCC": "310",
    "MNC": "410",
    "ErrorCode": "",
    "Sequence": "3",
    "MessageTime": "2025-01-01 12:00:00.000000",
    "QueuedTime": "2025-01-01 12:00:00.100000",
    "SentTime": "2025-01-01 12:00:01.000000",
    "DeliveryReportTime": "2025-01-01 12:00:05.250000",
    "PowerpackUUID": "",
}


def test_status_callback_fields_are_read(backend):
    callback = form_callback(DLR, url=f"{STATUS_URL}?ref=ref-1")

    [event] = backend.parse_status_callback(callback)

    assert event.status == DeliveryStatus.DELIVERED
    assert event.raw_status == "delivered"
    assert event.provider_message_id == "db3ce55a-7f1d-11e1-8ea7-1231380bc196"
    assert event.reference == "ref-1"
    assert event.recipient == "+14155551111"
    assert event.error_code == ""
    assert event.error_reason == ""
    assert event.price == Decimal("0.0100")
    assert event.currency == ""
    assert event.segments == 2
    assert event.occurred_at == datetime(2025, 1, 1, 12, 0, 5, 250000, tzinfo=UTC)
    assert event.opt_out_signal is False
    assert event.payload["MCC"] == "310"


def test_status_callback_by_get_reads_the_query(backend):
    params = {"MessageUUID": "u-9", "To": "14155551111", "Status": "sent"}
    url = f"{STATUS_URL}?ref=ref-9&{urlencode(params)}"

    [event] = backend.parse_status_callback(Callback(method="GET", url=url, headers={}))

    assert (event.status, event.provider_message_id, event.reference) == (
        DeliveryStatus.SENT,
        "u-9",
        "ref-9",
    )


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("queued", DeliveryStatus.SUBMITTED),
        ("sent", DeliveryStatus.SENT),
        ("delivered", DeliveryStatus.DELIVERED),
        ("undelivered", DeliveryStatus.UNDELIVERED),
        ("failed", DeliveryStatus.FAILED),
        ("rejected", DeliveryStatus.REJECTED),
        ("read", DeliveryStatus.UNKNOWN),
        ("teleported", DeliveryStatus.UNKNOWN),
    ],
)
def test_statuses_map_and_unknown_ones_keep_the_raw_value(backend, raw, status):
    [event] = backend.parse_status_callback(form_callback({**DLR, "Status": raw}))

    assert event.status == status
    assert event.raw_status == raw


@pytest.mark.parametrize("code", ["", "000"])
def test_blank_and_zero_error_codes_mean_no_error(backend, code):
    [event] = backend.parse_status_callback(form_callback({**DLR, "ErrorCode": code}))

    assert event.error_code == ""


def test_known_error_code_gets_its_documented_reason(backend):
    params = {**DLR, "Status": "undelivered", "ErrorCode": "30"}

    [event] = backend.parse_status_callback(form_callback(params))

    assert (event.error_code, event.error_reason) == ("30", "Spam detected")
    assert event.opt_out_signal is False


def test_unknown_error_code_is_kept_without_reason(backend):
    params = {**DLR, "Status": "failed", "ErrorCode": "777"}

    [event] = backend.parse_status_callback(form_callback(params))

    assert (event.error_code, event.error_reason) == ("777", "")


def test_stop_block_error_signals_an_opt_out(backend):
    params = {**DLR, "Status": "failed", "ErrorCode": "200"}

    [event] = backend.parse_status_callback(form_callback(params))

    assert event.opt_out_signal is True


def test_price_falls_back_to_rate_times_units(backend):
    params = {k: v for k, v in DLR.items() if k != "TotalAmount"}
    params["Units"] = "3"

    [event] = backend.parse_status_callback(form_callback(params))

    assert event.price == Decimal("0.0150")


def test_timestamps_with_an_offset_become_utc(backend):
    params = {**DLR, "DeliveryReportTime": "2025-01-01 17:30:00+05:30"}

    [event] = backend.parse_status_callback(form_callback(params))

    assert event.occurred_at == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_queued_status_takes_the_latest_time_present(backend):
    params = {**DLR, "Status": "queued", "SentTime": "", "DeliveryReportTime": ""}

    [event] = backend.parse_status_callback(form_callback(params))

    assert event.occurred_at == datetime(2025, 1, 1, 12, 0, 0, 100000, tzinfo=UTC)


@pytest.mark.parametrize("missing", ["MessageUUID", "Status"])
def test_status_callback_without_required_field_is_refused(backend, missing):
    params = {k: v for k, v in DLR.items() if k != missing}
    with pytest.raises(CallbackParseError, match=missing):
        backend.parse_status_callback(form_callback(params))


def test_non_form_post_is_refused(backend):
    callback = Callback(
        method="POST",
        url=STATUS_URL,
        headers={},
        body=json.dumps(DLR).encode(),
        content_type="application/json",
    )
    with pytest.raises(CallbackParseError, match="form"):
        backend.parse_status_callback(callback)


def test_form_content_type_with_charset_is_accepted(backend):
    callback = Callback(
        method="POST",
        url=STATUS_URL,
        headers={},
        body=urlencode(DLR).encode(),
        content_type=f"{FORM}; charset=utf-8",
    )
    [event] = backend.parse_status_callback(callback)
    assert event.status == DeliveryStatus.DELIVERED


def test_undecodable_form_body_is_refused(backend):
    callback = Callback(
        method="POST", url=STATUS_URL, headers={}, body=b"To=\xff", content_type=FORM
    )
    with pytest.raises(CallbackParseError):
        backend.parse_status_callback(callback)


# --- parse_inbound_callback ----------------------------------------------------------

INBOUND = {
    "From": "14155551111",
    "To": "14155550000",
    "Text": "STOP",
    "Type": "sms",
    "MessageUUID": "2f8c0000-0000-0000-0000-000000000001",
    "Units": "1",
    "TotalRate": "0",
    "TotalAmount": "0",
    "MessageIntent": "optout",
    "PowerpackUUID": "",
}


def test_inbound_message_is_read_with_its_keyword_hint(backend):
    [inbound] = backend.parse_inbound_callback(form_callback(INBOUND))

    assert inbound.from_number == "+14155551111"
    assert inbound.to_number == "+14155550000"
    assert inbound.text == "STOP"
    assert inbound.provider_message_id == "2f8c0000-0000-0000-0000-000000000001"
    assert inbound.keyword_hint == "optout"


def test_inbound_without_intent_has_no_hint(backend):
    params = {**INBOUND, "Text": "Hello there", "MessageIntent": ""}

    [inbound] = backend.parse_inbound_callback(form_callback(params))

    assert inbound.keyword_hint == ""


def test_inbound_to_a_short_code_keeps_it_as_received(backend):
    [inbound] = backend.parse_inbound_callback(
        form_callback({**INBOUND, "To": "38383"})
    )

    assert inbound.to_number == "38383"


def test_inbound_by_get_reads_the_query(backend):
    url = f"https://sms.example.com/webhooks/plivo/inbound/?{urlencode(INBOUND)}"

    [inbound] = backend.parse_inbound_callback(
        Callback(method="GET", url=url, headers={})
    )

    assert (inbound.from_number, inbound.text) == ("+14155551111", "STOP")


def test_inbound_without_from_is_refused(backend):
    params = {k: v for k, v in INBOUND.items() if k != "From"}
    with pytest.raises(CallbackParseError, match="From"):
        backend.parse_inbound_callback(form_callback(params))


# --- The backend contract (tests/providers/contract.py) ----------------------------

# Plivo's example status callback, as its "Message status callbacks" page lists the
# parameters (https://docs.plivo.com/docs/messaging/api/message/message-status-callbacks;
# providers.md §2.2).
EXAMPLE_STATUS = {
    "MessageUUID": "db3ce55a-7f1d-11e1-8ea7-1231380bc196",
    "To": "14155551111",
    "From": "14155550000",
    "Type": "sms",
    "Status": "delivered",
    "Units": "1",
    "TotalRate": "0.0050",
    "TotalAmount": "0.0050",
    "MCC": "310",
    "MNC": "410",
    "ErrorCode": "",
    "Sequence": "3",
    "MessageTime": "2025-01-01 12:00:00.000000",
    "PowerpackUUID": "",
}


class TestPlivoContract(BackendContract):
    alias = "plivo"
    send_url = SEND_URL
    # The same page's Status values; "read" is WhatsApp only (no news for SMS).
    documented_statuses = {
        "queued": DeliveryStatus.SUBMITTED,
        "sent": DeliveryStatus.SENT,
        "delivered": DeliveryStatus.DELIVERED,
        "undelivered": DeliveryStatus.UNDELIVERED,
        "failed": DeliveryStatus.FAILED,
        "rejected": DeliveryStatus.REJECTED,
        "read": DeliveryStatus.UNKNOWN,
    }
    no_news_statuses = frozenset({"read"})
    # V2 and V3 sign URL, parameters and a nonce: no time to judge staleness by.
    signs_time = False

    def make_backend(self, **options):
        return SmsBackend(
            alias="plivo",
            auth_id=AUTH_ID,
            auth_token=AUTH_TOKEN,
            sender_id="+14155550000",
            **options,
        )

    def accept_send(self, mock, count):
        mock.add(
            responses.POST,
            SEND_URL,
            json={
                "api_id": "a",
                "message": "message(s) queued",
                "message_uuid": [f"uuid-{n}" for n in range(count)],
            },
            status=202,
        )

    def sign(self, callback, *, at):
        # Plivo's own SDK code: plivo.utils.signature_v3.
        nonce = "05429567804466091622"
        params = {k: v for k, v in callback.form.items()}
        signature = get_signature_v3(
            AUTH_TOKEN, construct_post_url(callback.url, params), nonce
        ).decode()
        return Callback(
            method="POST",
            url=callback.url,
            headers={
                "X-Plivo-Signature-V3": signature,
                "X-Plivo-Signature-V3-Nonce": nonce,
            },
            body=callback.body,
            content_type=FORM,
        )

    def example_status_callback(self):
        return self.status_callback_with("delivered")

    def status_callback_with(self, raw_status):
        return Callback(
            method="POST",
            url=STATUS_URL,
            headers={},
            body=urlencode({**EXAMPLE_STATUS, "Status": raw_status}).encode(),
            content_type=FORM,
        )
