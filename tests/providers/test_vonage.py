"""Tests for the Vonage Messages API backend (send over the shared HTTP layer, signed
webhooks)."""

import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from http.client import RemoteDisconnected

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from responses import matchers

from django.core.exceptions import ImproperlyConfigured

from providers import create_provider
from providers.backends import http, vonage
from providers.backends.vonage import SmsBackend
from providers.exceptions import CallbackAuthError, CallbackParseError
from providers.messages import Callback, DeliveryStatus, OutboundSms, SendErrorKind
from tests.providers.contract import BackendContract

API = "https://api.nexmo.com/v1/messages"
APP_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
MESSAGE_UUID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"

# Worked vector from providers.md §6.
SECRET = "test_signature_secret_0123456789abcdef"
VECTOR_BODY = b'{"message_uuid":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab","to":"447700900000","from":"AcmeInc","timestamp":"2025-01-01T12:00:00.000Z","status":"delivered","usage":{"currency":"EUR","price":"0.0333"},"channel":"sms","client_ref":"camp42-msg7"}'
VECTOR_IAT = 1735732800
VECTOR_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3MzU3MzI4MDAsImp0aSI6ImM1YmE4ZjI0"
    "LTFhMTQtNGMxMC1iZmRmLTNmYmU4Y2U1MTFiNSIsImlzcyI6IlZvbmFnZSIsInBheWxvYWRfaGFzaCI6"
    "IjgyYWQxMWE5NmFkMjdiZjA1MzllYTVkYWM1MDFkYjQxZGFiMGQxMjU0NTM0NzBiNDA1MWEyYmRhODk1"
    "MzUwYTAiLCJhcGlfa2V5IjoiYTFiMmMzZCIsImFwcGxpY2F0aW9uX2lkIjoiYWFhYWFhYWEtYmJiYi1j"
    "Y2NjLWRkZGQtMDEyMzQ1Njc4OWFiIn0.Rn9Pj-HKklwlieB5iayLZiz6aKtz4lyobxYCsdZaTFw"
)


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_path(tmp_path, rsa_key) -> str:
    path = tmp_path / "vonage_private.key"
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


@pytest.fixture
def options(key_path) -> dict:
    return {
        "application_id": APP_ID,
        "private_key_path": key_path,
        "number": "447700900001",
        "signature_secret": SECRET,
        "api_url": "https://api.nexmo.com",
        "rate": None,
    }


@pytest.fixture
def backend(options) -> SmsBackend:
    return SmsBackend(alias="vonage", **options)


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def freeze(monkeypatch):
    def freeze_at(timestamp: float) -> None:
        monkeypatch.setattr(vonage, "_now", lambda: timestamp)

    return freeze_at


def sms(n: int = 0, text: str = "Hello", sender: str = "") -> OutboundSms:
    return OutboundSms(
        to=f"+44770090{n:04d}", text=text, reference=f"ref-{n}", sender=sender
    )


def accepted(rsps, url: str = API, uuid: str = MESSAGE_UUID) -> None:
    rsps.add(responses.POST, url, json={"message_uuid": uuid}, status=202)


def sent_body(call) -> dict:
    return json.loads(call.request.body)


def authorization(call) -> str:
    value = call.request.headers["Authorization"]
    # The SDK builds the header as bytes.
    return value.decode() if isinstance(value, bytes) else value


def problem(type_: str, title: str, detail: str) -> dict:
    return {"type": type_, "title": title, "detail": detail, "instance": "797a8f19"}


def signed(body: bytes, *, iat: int = VECTOR_IAT, secret: str = SECRET, **extra):
    claims = {
        "iat": iat,
        "jti": "c5ba8f24-1a14-4c10-bfdf-3fbe8ce511b5",
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": "a1b2c3d",
        "application_id": APP_ID,
        **extra,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def callback(body: bytes, authorization: str | None = None) -> Callback:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return Callback(
        method="POST",
        url="https://sms.example.com/webhooks/vonage/status/",
        headers=headers,
        body=body,
        content_type="application/json",
    )


# --- Configuration ----------------------------------------------------------------------


def test_capabilities_and_default_rate(backend):
    assert backend.max_recipients_per_request == 1
    assert backend.supports_client_reference is True
    assert backend.supports_callback_url is True
    assert backend.rate == 30.0


def test_rate_option_overrides_default(options):
    assert SmsBackend(alias="vonage", **{**options, "rate": 12}).rate == 12.0


def test_settings_options_build_the_backend(settings, options):
    settings.SMS_PROVIDERS = {
        "vonage": {
            "BACKEND": "providers.backends.vonage.SmsBackend",
            "OPTIONS": options,
        }
    }
    assert isinstance(create_provider("vonage"), SmsBackend)


def test_missing_credentials_name_the_environment_variables(options):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        SmsBackend(
            alias="vonage",
            **{**options, "application_id": "", "private_key_path": "", "number": ""},
        )
    message = str(excinfo.value)
    assert "VONAGE_APPLICATION_ID" in message
    assert "VONAGE_PRIVATE_KEY_PATH" in message
    assert "VONAGE_NUMBER" in message


def test_signature_secret_is_optional_for_sending(options):
    assert SmsBackend(alias="vonage", **{**options, "signature_secret": ""})


def test_unknown_option_is_refused(options):
    with pytest.raises(ImproperlyConfigured, match="api_key"):
        SmsBackend(alias="vonage", **options, api_key="x")


def test_unreadable_private_key_file_is_refused(options, tmp_path):
    missing = str(tmp_path / "nope.key")
    with pytest.raises(ImproperlyConfigured, match="VONAGE_PRIVATE_KEY_PATH"):
        SmsBackend(alias="vonage", **{**options, "private_key_path": missing})


def test_private_key_file_without_a_key_is_refused(options, tmp_path):
    path = tmp_path / "private.key"
    path.write_text("not a key")
    with pytest.raises(ImproperlyConfigured, match="not an unencrypted PEM"):
        SmsBackend(alias="vonage", **{**options, "private_key_path": str(path)})


@pytest.mark.parametrize(
    "api_url",
    [
        "http://api.nexmo.com",
        "ftp://api.nexmo.com",
        "api.nexmo.com",
        "https://api.nexmo.com/v1",
        "https://user:pw@api.nexmo.com",
    ],
)
def test_api_url_must_be_an_https_origin(options, api_url):
    with pytest.raises(ImproperlyConfigured, match="VONAGE_API_URL"):
        SmsBackend(alias="vonage", **{**options, "api_url": api_url})


@pytest.mark.parametrize(
    ("api_url", "host"),
    [
        ("https://api.nexmo.com", "api.nexmo.com"),
        ("https://api-eu.vonage.com/", "api-eu.vonage.com"),
        ("https://127.0.0.1:8443", "127.0.0.1:8443"),
    ],
)
def test_api_url_is_where_messages_are_posted(options, mocked, api_url, host):
    backend = SmsBackend(alias="vonage", **{**options, "api_url": api_url})
    accepted(mocked, url=f"https://{host}/v1/messages")

    [result] = backend.send_messages([sms(0)])

    assert result.accepted
    assert mocked.calls[0].request.url == f"https://{host}/v1/messages"


# --- Sending ----------------------------------------------------------------------------


def test_send_posts_the_documented_json_body(backend, mocked):
    accepted(mocked)

    [result] = backend.send_messages([sms(0)])

    assert result.accepted
    assert result.provider_message_id == MESSAGE_UUID
    assert result.reference == "ref-0"
    assert result.to == "+447700900000"
    [call] = mocked.calls
    assert call.request.url == API
    assert sent_body(call) == {
        "to": "447700900000",
        "from": "447700900001",
        "text": "Hello",
        "client_ref": "ref-0",
        "webhook_url": "https://sms.example.com/webhooks/vonage/status/",
        "webhook_version": "v1",
        "channel": "sms",
        "message_type": "text",
    }


def test_send_authenticates_with_an_rs256_application_jwt(backend, mocked, rsa_key):
    accepted(mocked)

    backend.send_messages([sms(0)])

    scheme, token = authorization(mocked.calls[0]).split(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"])
    assert claims["application_id"] == APP_ID
    assert claims["exp"] - claims["iat"] == vonage.TOKEN_LIFETIME
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT"}


def test_pkcs1_private_key_file_is_accepted(options, mocked, rsa_key, tmp_path):
    path = tmp_path / "private.pem"
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    backend = SmsBackend(alias="vonage", **{**options, "private_key_path": str(path)})
    accepted(mocked)

    [result] = backend.send_messages([sms(0)])

    assert result.accepted
    token = authorization(mocked.calls[0]).removeprefix("Bearer ")
    assert jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"])


def test_send_omits_webhook_url_without_public_base_url(backend, mocked, settings):
    settings.PUBLIC_BASE_URL = ""
    accepted(mocked)

    backend.send_messages([sms(0)])

    assert "webhook_url" not in sent_body(mocked.calls[0])


@pytest.mark.parametrize(
    ("sender", "wire_from"), [("+14155550100", "14155550100"), ("AcmeInc", "AcmeInc")]
)
def test_message_sender_overrides_the_default_number(
    backend, mocked, sender, wire_from
):
    accepted(mocked)

    backend.send_messages([sms(0, sender=sender)])

    assert sent_body(mocked.calls[0])["from"] == wire_from


def test_default_number_given_with_plus_is_sent_without(options, mocked):
    backend = SmsBackend(alias="vonage", **{**options, "number": "+447700900001"})
    accepted(mocked)

    backend.send_messages([sms(0)])

    assert sent_body(mocked.calls[0])["from"] == "447700900001"


def test_send_goes_to_a_custom_api_host(options, mocked):
    backend = SmsBackend(
        alias="vonage", **{**options, "api_url": "https://127.0.0.1:8443"}
    )
    mocked.add(
        responses.POST,
        "https://127.0.0.1:8443/v1/messages",
        json={"message_uuid": MESSAGE_UUID},
        status=202,
        match=[
            matchers.json_params_matcher({"to": "447700900000"}, strict_match=False)
        ],
    )

    [result] = backend.send_messages([sms(0)])

    assert result.provider_message_id == MESSAGE_UUID
    assert mocked.calls[0].request.url == "https://127.0.0.1:8443/v1/messages"


def test_every_request_carries_its_own_client_ref(backend, mocked):
    for n in range(3):
        accepted(mocked, uuid=f"uuid-{n}")

    results = backend.send_messages([sms(n) for n in range(3)])

    assert [sent_body(call)["client_ref"] for call in mocked.calls] == [
        "ref-0",
        "ref-1",
        "ref-2",
    ]
    assert [r.provider_message_id for r in results] == ["uuid-0", "uuid-1", "uuid-2"]


def test_remote_disconnect_is_maybe_sent_and_never_posted_again(backend, mocked):
    """The SDK's client re-posted on RemoteDisconnected (a possible duplicate text);
    one POST, then the message waits for its receipt."""
    dropped = requests.ConnectionError(
        RemoteDisconnected("Remote end closed connection without response")
    )
    mocked.add(responses.POST, API, body=dropped)
    accepted(mocked)

    [result] = backend.send_messages([sms(0)])

    assert result.error.kind == SendErrorKind.MAYBE_SENT
    assert result.error.retryable is False
    assert len(mocked.calls) == 1


def test_one_token_is_signed_and_reused_until_shortly_before_it_expires(
    backend, mocked, freeze
):
    for _ in range(3):
        accepted(mocked)
    freeze(VECTOR_IAT)
    backend.send_messages([sms(0)])
    freeze(VECTOR_IAT + vonage.TOKEN_LIFETIME - vonage.TOKEN_RENEW_BEFORE - 1)
    backend.send_messages([sms(1)])
    freeze(VECTOR_IAT + vonage.TOKEN_LIFETIME - vonage.TOKEN_RENEW_BEFORE)
    backend.send_messages([sms(2)])

    tokens = [authorization(call) for call in mocked.calls]
    assert tokens[0] == tokens[1]
    assert tokens[2] != tokens[1]
    assert backend.token.signed == 2
    renewed = jwt.decode(
        tokens[2].removeprefix("Bearer "), options={"verify_signature": False}
    )
    assert renewed["iat"] == VECTOR_IAT + vonage.TOKEN_LIFETIME - 60


def test_private_key_is_parsed_when_the_backend_is_built_not_per_send(
    options, mocked, monkeypatch
):
    parsed = []
    real_load = serialization.load_pem_private_key

    def counting_load(*args, **kwargs):
        parsed.append(1)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(serialization, "load_pem_private_key", counting_load)
    backend = SmsBackend(alias="vonage", **options)
    for _ in range(5):
        accepted(mocked)
    # A token close to expiry forces a second signature: still no parsing.
    backend.send_messages([sms(n) for n in range(3)])
    backend.token._current = ("stale", 0.0)
    backend.send_messages([sms(n) for n in range(3, 5)])

    assert len(parsed) == 1
    assert backend.token.signed == 2


def test_tokens_are_shared_safely_between_threads(backend, mocked):
    from concurrent.futures import ThreadPoolExecutor

    for _ in range(40):
        accepted(mocked)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda n: backend.send_messages([sms(n)])[0], range(40))
        )

    assert all(result.accepted for result in results)
    assert backend.token.signed == 1
    assert len({authorization(call) for call in mocked.calls}) == 1


def test_text_of_1000_characters_is_sent(backend, mocked):
    accepted(mocked)

    [result] = backend.send_messages([sms(0, text="a" * 1000)])

    assert result.accepted
    assert sent_body(mocked.calls[0])["text"] == "a" * 1000


def test_text_over_1000_characters_is_a_permanent_error_not_a_truncation(
    backend, mocked
):
    [result] = backend.send_messages([sms(0, text="a" * 1001)])

    assert result.error.code == "text_too_long"
    assert result.error.kind == SendErrorKind.PERMANENT
    assert len(mocked.calls) == 0


def test_invalid_number_is_permanent_and_not_sent(backend, mocked):
    bad = OutboundSms(to="+0447700900000", text="Hi", reference="ref-bad")

    [result] = backend.send_messages([bad])

    assert result.error.code == "invalid_number"
    assert result.error.kind == SendErrorKind.PERMANENT
    assert result.error.reason.startswith("to: ")
    assert "447700900000" not in result.error.reason
    assert len(mocked.calls) == 0


def test_client_ref_over_100_characters_is_an_invalid_request(backend, mocked):
    message = OutboundSms(to="+447700900000", text="Hi", reference="r" * 101)

    [result] = backend.send_messages([message])

    assert result.error.code == "invalid_request"
    assert result.error.kind == SendErrorKind.PERMANENT
    assert "client_ref" in result.error.reason


@pytest.mark.parametrize(
    ("status", "body", "code", "reason", "kind"),
    [
        (
            401,
            problem(
                "https://developer.vonage.com/api-errors#unauthorized",
                "Invalid credentials supplied",
                "You did not provide correct credentials.",
            ),
            "unauthorized",
            "Invalid credentials supplied: You did not provide correct credentials.",
            SendErrorKind.MISCONFIGURED,
        ),
        (
            403,
            problem(
                "https://developer.vonage.com/api-errors#forbidden",
                "Forbidden",
                "Your account does not have permission to perform this action.",
            ),
            "forbidden",
            "Forbidden: Your account does not have permission to perform this action.",
            SendErrorKind.MISCONFIGURED,
        ),
        (
            404,
            problem(
                "https://developer.vonage.com/api-errors#not-found",
                "Not Found",
                "Not Found",
            ),
            "not-found",
            "Not Found",
            SendErrorKind.PERMANENT,
        ),
        (
            402,
            problem(
                "https://developer.vonage.com/api-errors/messages#1170",
                "Low balance",
                "This request could not be performed due to your account balance being low.",
            ),
            "1170",
            "Low balance: This request could not be performed due to your account balance being low.",
            # No message goes through until someone tops the account up: stop the
            # campaign rather than fail every recipient for good.
            SendErrorKind.MISCONFIGURED,
        ),
        (
            422,
            problem(
                "https://developer.vonage.com/api-errors/messages#1150",
                "Invalid params",
                "The value of one or more parameters is invalid.",
            ),
            "1150",
            "Invalid params: The value of one or more parameters is invalid.",
            SendErrorKind.PERMANENT,
        ),
        (
            429,
            problem(
                "https://developer.vonage.com/api-errors#throttled",
                "Rate Limit Hit",
                "Please wait, then retry your request",
            ),
            "throttled",
            "Rate Limit Hit: Please wait, then retry your request",
            SendErrorKind.THROTTLED,
        ),
        (
            500,
            problem(
                "https://developer.vonage.com/api-errors#internal-error",
                "Internal Error",
                "Something went wrong.",
            ),
            "internal-error",
            "Internal Error: Something went wrong.",
            SendErrorKind.NOT_SENT,
        ),
        (
            503,
            problem(
                "https://developer.vonage.com/api-errors#service-unavailable",
                "Service Unavailable",
                "",
            ),
            "service-unavailable",
            "Service Unavailable",
            SendErrorKind.NOT_SENT,
        ),
    ],
)
def test_http_errors_are_classified(backend, mocked, status, body, code, reason, kind):
    mocked.add(
        responses.POST,
        API,
        json=body,
        status=status,
        content_type="application/problem+json",
    )

    [result] = backend.send_messages([sms(0)])

    assert result.error.code == code
    assert result.error.reason == reason
    assert result.error.kind == kind
    assert result.error.retry_after is None


def test_error_without_problem_body_keeps_the_http_status(backend, mocked):
    mocked.add(responses.POST, API, body="<html>bad gateway</html>", status=502)

    [result] = backend.send_messages([sms(0)])

    assert result.error.code == "502"
    assert result.error.reason == "Bad Gateway"
    assert result.error.kind == SendErrorKind.NOT_SENT


def test_gateway_timeout_is_maybe_sent(backend, mocked):
    mocked.add(responses.POST, API, body="", status=504)

    [result] = backend.send_messages([sms(0)])

    assert result.error.kind == SendErrorKind.MAYBE_SENT
    assert result.error.retryable is False


def test_throttling_carries_retry_after_seconds(backend, mocked):
    mocked.add(responses.POST, API, json={}, status=429, headers={"Retry-After": "7"})

    [result] = backend.send_messages([sms(0)])

    assert result.error.code == "429"
    assert result.error.kind == SendErrorKind.THROTTLED
    assert result.error.retry_after == 7.0


def test_retry_after_as_an_http_date_becomes_seconds(backend, mocked, monkeypatch):
    monkeypatch.setattr(http, "_now", lambda: VECTOR_IAT)  # 2025-01-01T12:00:00Z
    mocked.add(
        responses.POST,
        API,
        json={},
        status=503,
        headers={"Retry-After": "Wed, 01 Jan 2025 12:01:30 GMT"},
    )

    [result] = backend.send_messages([sms(0)])

    assert result.error.retry_after == 90.0


def test_read_timeout_is_maybe_sent(backend, mocked):
    mocked.add(responses.POST, API, body=requests.ReadTimeout("read timed out"))

    [result] = backend.send_messages([sms(0)])

    assert result.error.code == "read_timeout"
    assert result.error.kind == SendErrorKind.MAYBE_SENT


def test_connect_timeout_is_not_sent(backend, mocked):
    mocked.add(responses.POST, API, body=requests.ConnectTimeout("connect timed out"))

    [result] = backend.send_messages([sms(0)])

    assert result.error.code == "connect_timeout"
    assert result.error.kind == SendErrorKind.NOT_SENT
    assert result.error.retryable is True


def test_accepted_without_message_uuid_is_still_accepted(backend, mocked):
    mocked.add(responses.POST, API, body="", status=202)

    [result] = backend.send_messages([sms(0)])

    assert result.accepted
    assert result.provider_message_id == ""


def test_key_that_cannot_sign_is_misconfigured_and_nothing_is_posted(
    backend, mocked, monkeypatch
):
    def broken(claims):
        raise vonage.VonageError("key cannot sign")

    monkeypatch.setattr(backend.token._jwt, "generate_application_jwt", broken)

    [result] = backend.send_messages([sms(0)])

    assert result.error.kind == SendErrorKind.MISCONFIGURED
    assert len(mocked.calls) == 0


def test_one_failure_keeps_the_other_results(backend, mocked):
    accepted(mocked, uuid="uuid-0")
    mocked.add(
        responses.POST,
        API,
        json=problem(
            "https://developer.vonage.com/api-errors/messages#1150",
            "Invalid params",
            "Bad to",
        ),
        status=422,
    )
    accepted(mocked, uuid="uuid-2")

    results = backend.send_messages([sms(0), sms(1), sms(2)])

    assert [r.reference for r in results] == ["ref-0", "ref-1", "ref-2"]
    assert [r.accepted for r in results] == [True, False, True]
    assert results[2].provider_message_id == "uuid-2"


def test_failure_log_masks_the_number(backend, mocked, caplog):
    mocked.add(responses.POST, API, json={}, status=500)

    with caplog.at_level(logging.WARNING, logger="providers.backends.vonage"):
        backend.send_messages([sms(0)])

    logged = " ".join(
        r.getMessage() for r in caplog.records if r.name == vonage.__name__
    )
    assert "ref-0" in logged
    assert "447700900000" not in logged
    assert "+44********00" in logged


# --- verify_callback ----------------------------------------------------------------------


def test_worked_vector_is_accepted(backend, freeze):
    freeze(VECTOR_IAT + 10)

    backend.verify_callback(callback(VECTOR_BODY, f"Bearer {VECTOR_TOKEN}"))


def test_worked_vector_is_accepted_up_to_max_age_plus_leeway(backend, freeze):
    freeze(VECTOR_IAT + 300 + 30)

    backend.verify_callback(callback(VECTOR_BODY, f"Bearer {VECTOR_TOKEN}"))


def test_stale_token_is_refused(backend, freeze):
    freeze(VECTOR_IAT + 300 + 31)

    with pytest.raises(CallbackAuthError, match="stale"):
        backend.verify_callback(callback(VECTOR_BODY, f"Bearer {VECTOR_TOKEN}"))


def test_token_within_clock_skew_ahead_is_accepted(backend, freeze):
    freeze(VECTOR_IAT - 30)

    backend.verify_callback(callback(VECTOR_BODY, f"Bearer {VECTOR_TOKEN}"))


def test_token_from_the_future_is_refused(backend, freeze):
    freeze(VECTOR_IAT - 31)

    with pytest.raises(CallbackAuthError, match="future"):
        backend.verify_callback(callback(VECTOR_BODY, f"Bearer {VECTOR_TOKEN}"))


def test_freshness_follows_the_provider_window(options, freeze, settings):
    settings.SMS_WEBHOOK_CLOCK_SKEW = 0
    backend = SmsBackend(alias="vonage", **options, webhook_max_age=60)
    freeze(VECTOR_IAT + 60)
    backend.verify_callback(callback(VECTOR_BODY, f"Bearer {VECTOR_TOKEN}"))
    freeze(VECTOR_IAT + 61)

    with pytest.raises(CallbackAuthError, match="stale"):
        backend.verify_callback(callback(VECTOR_BODY, f"Bearer {VECTOR_TOKEN}"))


def test_forged_signature_is_refused(backend, freeze):
    freeze(VECTOR_IAT)
    token = signed(VECTOR_BODY, secret="some_other_secret_0123456789abcdef")

    with pytest.raises(CallbackAuthError, match="signature does not match"):
        backend.verify_callback(callback(VECTOR_BODY, f"Bearer {token}"))


def test_altered_body_is_refused(backend, freeze):
    freeze(VECTOR_IAT)
    altered = VECTOR_BODY.replace(b'"delivered"', b'"rejected"')

    with pytest.raises(CallbackAuthError, match="payload_hash"):
        backend.verify_callback(callback(altered, f"Bearer {VECTOR_TOKEN}"))


def test_reformatted_body_with_the_same_json_is_accepted(backend, freeze):
    """Vonage's sample verifier hashes the compact JSON of the parsed body."""
    freeze(VECTOR_IAT)
    spaced = json.dumps(json.loads(VECTOR_BODY), indent=2).encode()

    backend.verify_callback(callback(spaced, f"Bearer {VECTOR_TOKEN}"))


def test_missing_authorization_header_is_refused(backend, freeze):
    freeze(VECTOR_IAT)

    with pytest.raises(CallbackAuthError, match="missing"):
        backend.verify_callback(callback(VECTOR_BODY))


def test_unsigned_callback_is_accepted_when_allowed(backend, settings):
    settings.SMS_WEBHOOK_ALLOW_UNSIGNED = True

    backend.verify_callback(callback(VECTOR_BODY))


def test_bad_signature_is_refused_even_when_unsigned_is_allowed(
    backend, freeze, settings
):
    settings.SMS_WEBHOOK_ALLOW_UNSIGNED = True
    freeze(VECTOR_IAT)
    token = signed(VECTOR_BODY, secret="some_other_secret_0123456789abcdef")

    with pytest.raises(CallbackAuthError):
        backend.verify_callback(callback(VECTOR_BODY, f"Bearer {token}"))


@pytest.mark.parametrize(
    "authorization", [VECTOR_TOKEN, f"Basic {VECTOR_TOKEN}", "Bearer"]
)
def test_authorization_without_bearer_token_is_refused(backend, freeze, authorization):
    freeze(VECTOR_IAT)

    with pytest.raises(CallbackAuthError, match="Bearer"):
        backend.verify_callback(callback(VECTOR_BODY, authorization))


def test_lowercase_bearer_scheme_is_accepted(backend, freeze):
    freeze(VECTOR_IAT)

    backend.verify_callback(callback(VECTOR_BODY, f"bearer {VECTOR_TOKEN}"))


def test_unsigned_alg_none_token_is_refused(backend, freeze):
    freeze(VECTOR_IAT)
    claims = jwt.decode(VECTOR_TOKEN, options={"verify_signature": False})
    token = jwt.encode(claims, None, algorithm="none")

    with pytest.raises(CallbackAuthError, match="HS256"):
        backend.verify_callback(callback(VECTOR_BODY, f"Bearer {token}"))


def test_token_signed_with_another_algorithm_is_refused(backend, freeze):
    freeze(VECTOR_IAT)
    claims = jwt.decode(VECTOR_TOKEN, options={"verify_signature": False})
    token = jwt.encode(claims, SECRET + "_padding_for_hs512_key_length_xx", "HS512")

    with pytest.raises(CallbackAuthError, match="HS256"):
        backend.verify_callback(callback(VECTOR_BODY, f"Bearer {token}"))


def test_malformed_token_is_refused(backend):
    with pytest.raises(CallbackAuthError, match="malformed"):
        backend.verify_callback(callback(VECTOR_BODY, "Bearer not.a.jwt"))


def test_token_without_payload_hash_is_refused(backend, freeze):
    freeze(VECTOR_IAT)
    token = jwt.encode({"iat": VECTOR_IAT, "iss": "Vonage"}, SECRET, "HS256")

    with pytest.raises(CallbackAuthError, match="payload_hash"):
        backend.verify_callback(callback(VECTOR_BODY, f"Bearer {token}"))


def test_token_without_iat_is_refused(backend):
    token = jwt.encode(
        {"payload_hash": hashlib.sha256(VECTOR_BODY).hexdigest()}, SECRET, "HS256"
    )

    with pytest.raises(CallbackAuthError, match="iat"):
        backend.verify_callback(callback(VECTOR_BODY, f"Bearer {token}"))


def test_token_from_another_issuer_is_refused(backend, freeze):
    freeze(VECTOR_IAT)
    token = signed(VECTOR_BODY, iss="Mallory")

    with pytest.raises(CallbackAuthError, match="issuer"):
        backend.verify_callback(callback(VECTOR_BODY, f"Bearer {token}"))


def test_signed_callback_without_signature_secret_is_refused(options, freeze):
    freeze(VECTOR_IAT)
    backend = SmsBackend(alias="vonage", **{**options, "signature_secret": ""})

    with pytest.raises(CallbackAuthError, match="VONAGE_SIGNATURE_SECRET"):
        backend.verify_callback(callback(VECTOR_BODY, f"Bearer {VECTOR_TOKEN}"))


# --- parse_status_callback -------------------------------------------------------------


def test_status_callback_is_parsed(backend):
    body = json.loads(VECTOR_BODY) | {"sms": {"count_total": "2"}}

    [event] = backend.parse_status_callback(callback(json.dumps(body).encode()))

    assert event.status == DeliveryStatus.DELIVERED
    assert event.raw_status == "delivered"
    assert event.provider_message_id == MESSAGE_UUID
    assert event.reference == "camp42-msg7"
    assert event.recipient == "+447700900000"
    assert event.price == Decimal("0.0333")
    assert event.currency == "EUR"
    assert event.segments == 2
    assert event.occurred_at == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert event.error_code == ""
    assert event.payload["channel"] == "sms"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("submitted", DeliveryStatus.SUBMITTED),
        ("delivered", DeliveryStatus.DELIVERED),
        ("rejected", DeliveryStatus.REJECTED),
        ("undeliverable", DeliveryStatus.FAILED),
        ("accepted", DeliveryStatus.SUBMITTED),
        ("buffered", DeliveryStatus.SENT),
        ("Delivered", DeliveryStatus.DELIVERED),
        ("teleported", DeliveryStatus.UNKNOWN),
    ],
)
def test_status_values_are_mapped(backend, raw, status):
    body = {"message_uuid": MESSAGE_UUID, "status": raw}

    [event] = backend.parse_status_callback(callback(json.dumps(body).encode()))

    assert event.status == status
    assert event.raw_status == raw


def test_rejected_status_carries_the_error(backend):
    body = {
        "message_uuid": MESSAGE_UUID,
        "to": "447700900000",
        "status": "rejected",
        "client_ref": "ref-0",
        "timestamp": "2025-01-01T12:00:00+01:00",
        "error": {
            "type": "https://developer.vonage.com/api-errors/messages#1250",
            "title": "Unroutable",
            "detail": "The message could not be routed",
            "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
        },
    }

    [event] = backend.parse_status_callback(callback(json.dumps(body).encode()))

    assert event.status == DeliveryStatus.REJECTED
    assert event.error_code == "1250"
    assert event.error_reason == "Unroutable: The message could not be routed"
    assert event.occurred_at == datetime(2025, 1, 1, 11, 0, tzinfo=UTC)
    assert event.price is None
    assert event.segments is None


def test_status_callback_with_only_client_ref_is_parsed(backend):
    body = {"client_ref": "ref-0", "status": "submitted"}

    [event] = backend.parse_status_callback(callback(json.dumps(body).encode()))

    assert event.reference == "ref-0"
    assert event.provider_message_id == ""


@pytest.mark.parametrize(
    "body",
    [
        b'{"status": "delivered", "to": "447700900000"}',
        b'{"message_uuid": "", "client_ref": "", "status": "delivered"}',
        b'{"message_uuid": "x"}',
        b'[{"message_uuid": "x", "status": "delivered"}]',
        b'"delivered"',
        b"not json",
    ],
    ids=["no-ids", "empty-ids", "no-status", "array", "string", "invalid-json"],
)
def test_malformed_status_callback_is_refused(backend, body):
    with pytest.raises(CallbackParseError):
        backend.parse_status_callback(callback(body))


# --- parse_inbound_callback ------------------------------------------------------------

INBOUND = {
    "channel": "sms",
    "message_uuid": MESSAGE_UUID,
    "to": "447700900001",
    "from": "447700900000",
    "timestamp": "2025-01-01T12:00:00.000Z",
    "message_type": "text",
    "text": "STOP",
    "usage": {"currency": "EUR", "price": "0.0057"},
    "sms": {"num_messages": "1", "keyword": "STOP"},
}


def test_inbound_callback_is_parsed(backend):
    [inbound] = backend.parse_inbound_callback(callback(json.dumps(INBOUND).encode()))

    assert inbound.from_number == "+447700900000"
    assert inbound.to_number == "+447700900001"
    assert inbound.text == "STOP"
    assert inbound.provider_message_id == MESSAGE_UUID
    assert inbound.received_at == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    # sms.keyword is only the first word: never passed on as an intent.
    assert inbound.keyword_hint == ""
    assert inbound.payload["usage"]["price"] == "0.0057"


def test_inbound_without_keyword_has_empty_hint(backend):
    body = {k: v for k, v in INBOUND.items() if k != "sms"}

    [inbound] = backend.parse_inbound_callback(callback(json.dumps(body).encode()))

    assert inbound.keyword_hint == ""


@pytest.mark.parametrize("missing", ["from", "text"])
def test_inbound_without_required_field_is_refused(backend, missing):
    body = {k: v for k, v in INBOUND.items() if k != missing}

    with pytest.raises(CallbackParseError, match=missing):
        backend.parse_inbound_callback(callback(json.dumps(body).encode()))


def test_inbound_that_is_not_an_object_is_refused(backend):
    with pytest.raises(CallbackParseError, match="JSON object"):
        backend.parse_inbound_callback(callback(b"[1, 2]"))


# --- The backend contract (tests/providers/contract.py) ----------------------------


class TestVonageContract(BackendContract):
    alias = "vonage"
    send_url = "https://api.nexmo.com/v1/messages"
    # https://developer.vonage.com/en/messages/concepts/messages-status-callbacks
    documented_statuses = {
        "submitted": DeliveryStatus.SUBMITTED,
        "delivered": DeliveryStatus.DELIVERED,
        "rejected": DeliveryStatus.REJECTED,
        "undeliverable": DeliveryStatus.FAILED,
        "read": DeliveryStatus.DELIVERED,
    }

    @pytest.fixture(autouse=True)
    def _options(self, options):
        self.options = options

    def make_backend(self, **options):
        return SmsBackend(alias="vonage", **{**self.options, **options})

    def accept_send(self, mock, count):
        for _ in range(count):
            mock.add(
                responses.POST,
                self.send_url,
                json={"message_uuid": str(uuid.uuid4())},
                status=202,
            )

    def sign(self, callback, *, at):
        # The Vonage SDK only verifies (vonage_jwt.verify_signature); the token is
        # built as Vonage's signed-webhooks page describes (HS256, payload_hash).
        return callback_with(callback, f"Bearer {signed(callback.body, iat=int(at))}")

    def example_status_callback(self):
        # The SMS status example of providers.md §1.2: field set of Vonage's Java SDK
        # test (Vonage/vonage-java-sdk MessageStatusTest.java) and the status
        # callbacks page (developer.vonage.com/en/messages/concepts/messages-status-callbacks).
        return callback(VECTOR_BODY)

    def status_callback_with(self, raw_status):
        data = json.loads(VECTOR_BODY)
        return callback(json.dumps({**data, "status": raw_status}).encode())


def callback_with(original: Callback, authorization: str) -> Callback:
    return Callback(
        method=original.method,
        url=original.url,
        headers={**original.headers, "Authorization": authorization},
        body=original.body,
        content_type=original.content_type,
    )
