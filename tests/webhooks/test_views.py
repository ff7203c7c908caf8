"""The six webhook endpoints, end to end: real URL routing, a CSRF-enforcing client,
vendor-signed payloads as their documentation shows them."""

import base64
import hashlib
import hmac
import io
import json
import time
import uuid
from urllib.parse import urlencode

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3

from django.core.management import call_command
from django.test import Client

from campaigns.models import DeliveryEvent, Message
from contacts.models import ConsentEvent, Suppression
from tests.factories import ContactFactory, MessageFactory
from webhooks.models import InboundMessage, RejectedCallback

pytestmark = pytest.mark.django_db(transaction=True)

VONAGE_SECRET = "vonage-signature-secret-for-tests"
PLIVO_ID, PLIVO_TOKEN = "MAXXXXXXXXXXXXXXXXXX", "plivo-auth-token"
SINCH_SECRET = "sinch-webhook-secret"


@pytest.fixture(autouse=True)
def vendors(settings, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp_path / "vonage.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    providers = dict(settings.SMS_PROVIDERS)
    providers["vonage"] = {
        **providers["vonage"],
        "OPTIONS": {
            **providers["vonage"]["OPTIONS"],
            "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
            "private_key_path": str(key_path),
            "number": "+14155550100",
            "signature_secret": VONAGE_SECRET,
        },
    }
    providers["plivo"] = {
        **providers["plivo"],
        "OPTIONS": {
            **providers["plivo"]["OPTIONS"],
            "auth_id": PLIVO_ID,
            "auth_token": PLIVO_TOKEN,
            "sender_id": "14155550100",
        },
    }
    providers["sinch"] = {
        **providers["sinch"],
        "OPTIONS": {
            **providers["sinch"]["OPTIONS"],
            "service_plan_id": "plan",
            "api_token": "token",
            "number": "+14155550100",
            "webhook_secret": SINCH_SECRET,
        },
    }
    settings.SMS_PROVIDERS = providers


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)


# --- Signing as each vendor does -------------------------------------------------


def vonage_post(client, path, payload, *, iat=None, secret=VONAGE_SECRET, body=None):
    body = (
        body
        if body is not None
        else json.dumps(payload, separators=(",", ":")).encode()
    )
    claims = {
        "iat": int(iat if iat is not None else time.time()),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": "a1b2c3d",
    }
    token = jwt.encode(claims, secret, algorithm="HS256")
    return client.post(
        path,
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def plivo_post(client, path, params, *, token=PLIVO_TOKEN, tamper=None):
    nonce = "05429567804466091622"
    url = "https://sms.example.com" + path
    signature = get_signature_v3(
        token, construct_post_url(url, dict(params)), nonce
    ).decode()
    sent = {**params, **(tamper or {})}
    return client.post(
        path,
        urlencode(sent),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_PLIVO_SIGNATURE_V3=signature,
        HTTP_X_PLIVO_SIGNATURE_V3_NONCE=nonce,
    )


def sinch_post(client, path, payload, *, timestamp=None, secret=SINCH_SECRET):
    body = json.dumps(payload).encode()
    nonce = "01JHFFHWYY7HSS4FWTMDTQEK8V"
    timestamp = str(int(timestamp if timestamp is not None else time.time()))
    digest = hmac.new(
        secret.encode(), f"{body.decode()}.{nonce}.{timestamp}".encode(), hashlib.sha256
    ).digest()
    return client.post(
        path,
        body,
        content_type="application/json",
        HTTP_X_SINCH_WEBHOOK_SIGNATURE=base64.b64encode(digest).decode(),
        HTTP_X_SINCH_WEBHOOK_SIGNATURE_NONCE=nonce,
        HTTP_X_SINCH_WEBHOOK_SIGNATURE_TIMESTAMP=timestamp,
        HTTP_X_SINCH_WEBHOOK_SIGNATURE_ALGORITHM="HmacSHA256",
    )


def vonage_status(message, status="delivered", **extra):
    return {
        "message_uuid": message.provider_message_id,
        "to": message.to.lstrip("+"),
        "from": "14155550100",
        "timestamp": "2025-01-01T12:00:00.000Z",
        "status": status,
        "channel": "sms",
        "client_ref": str(message.client_reference),
        "usage": {"currency": "EUR", "price": "0.0333"},
        "sms": {"count_total": "1"},
        **extra,
    }


# --- Vonage ----------------------------------------------------------------------


def test_vonage_status_moves_the_message_and_keeps_the_receipt(client):
    message = MessageFactory(
        provider="vonage", provider_message_id=str(uuid.uuid4()), status="submitted"
    )
    response = vonage_post(client, "/webhooks/vonage/status/", vonage_status(message))
    assert response.status_code == 200, response.content
    message.refresh_from_db()
    assert message.status == "delivered"
    assert str(message.price) == "0.03330"
    event = DeliveryEvent.objects.get()
    assert event.raw_status == "delivered"
    assert event.payload["client_ref"] == str(message.client_reference)


def test_vonage_rejected_receipt_stores_the_error(client):
    message = MessageFactory(
        provider="vonage", provider_message_id=str(uuid.uuid4()), status="submitted"
    )
    error = {
        "type": "https://developer.vonage.com/api-errors/messages#1320",
        "title": "Message failed",
        "detail": "Recipient blocked",
    }
    vonage_post(
        client,
        "/webhooks/vonage/status/",
        vonage_status(message, "rejected", error=error),
    )
    message.refresh_from_db()
    assert message.status == "rejected"
    assert message.error_code == "1320"
    assert "Recipient blocked" in message.error_reason


@pytest.mark.parametrize(
    "case",
    ["forged", "altered", "stale", "future", "missing"],
)
def test_vonage_bad_signatures_are_refused_and_change_nothing(client, case):
    message = MessageFactory(
        provider="vonage", provider_message_id=str(uuid.uuid4()), status="submitted"
    )
    payload = vonage_status(message)
    if case == "forged":
        response = vonage_post(
            client,
            "/webhooks/vonage/status/",
            payload,
            secret="not-the-vonage-signature-secret-at-all",
        )
    elif case == "altered":
        good = json.dumps(payload, separators=(",", ":")).encode()
        claims_body = good
        altered = good.replace(b"delivered", b"rejected")
        token = jwt.encode(
            {
                "iat": int(time.time()),
                "iss": "Vonage",
                "payload_hash": hashlib.sha256(claims_body).hexdigest(),
            },
            VONAGE_SECRET,
            algorithm="HS256",
        )
        response = client.post(
            "/webhooks/vonage/status/",
            altered,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
    elif case == "stale":
        response = vonage_post(
            client, "/webhooks/vonage/status/", payload, iat=time.time() - 90_000
        )
    elif case == "future":
        response = vonage_post(
            client, "/webhooks/vonage/status/", payload, iat=time.time() + 3600
        )
    else:
        response = client.post(
            "/webhooks/vonage/status/",
            json.dumps(payload),
            content_type="application/json",
        )
    assert response.status_code == 401
    message.refresh_from_db()
    assert message.status == "submitted"
    assert DeliveryEvent.objects.count() == 0


def test_vonage_inbound_stop_opts_out_and_confirms(client):
    contact = ContactFactory(phone="+14155550123")
    payload = {
        "channel": "sms",
        "message_uuid": str(uuid.uuid4()),
        "to": "14155550100",
        "from": "14155550123",
        "timestamp": "2025-01-01T12:00:00.000Z",
        "message_type": "text",
        "text": "STOP",
        "sms": {"num_messages": "1", "keyword": "STOP"},
    }
    # The confirmation leaves through Vonage, the provider the STOP came in on.
    with responses.RequestsMock() as vonage_api:
        vonage_api.post(
            "https://api.nexmo.com/v1/messages",
            json={"message_uuid": str(uuid.uuid4())},
            status=202,
        )
        response = vonage_post(client, "/webhooks/vonage/inbound/", payload)
        # The webhook answers at once; the worker sends the confirmation.
        assert len(vonage_api.calls) == 0
        call_command("run_worker", "--once", stdout=io.StringIO())
        sent = json.loads(vonage_api.calls[0].request.body)
    assert response.status_code == 200, response.content
    contact.refresh_from_db()
    assert contact.opted_out
    assert InboundMessage.objects.get().keyword == "opt_out"
    reply = Message.objects.get(kind="reply")
    assert (reply.to, reply.sender, reply.status) == (
        "+14155550123",
        "+14155550100",
        "submitted",
    )
    assert (sent["to"], sent["from"]) == ("14155550123", "14155550100")
    assert "unsubscribed" in sent["text"]


# --- Plivo -------------------------------------------------------------------------


def plivo_status(message, status="delivered", **extra):
    return {
        "MessageUUID": "db3ce55a-7f1d-11e1-8ea7-1231380bc196",
        "To": message.to.lstrip("+"),
        "From": "14155550100",
        "Type": "sms",
        "Status": status,
        "Units": "1",
        "TotalRate": "0.0050",
        "TotalAmount": "0.0050",
        "MCC": "310",
        "MNC": "410",
        "ErrorCode": "",
        "Sequence": "3",
        "MessageTime": "2025-01-01 12:00:00.000000",
        **extra,
    }


def test_plivo_status_finds_the_message_by_the_reference_in_our_url(client):
    first = MessageFactory(provider="plivo", status="submitted")
    second = MessageFactory(
        campaign=first.campaign, provider="plivo", status="submitted"
    )
    path = f"/webhooks/plivo/status/?ref={first.client_reference}"
    response = plivo_post(client, path, plivo_status(second))
    assert response.status_code == 200, response.content
    second.refresh_from_db()
    assert second.status == "delivered"
    assert second.provider_message_id == "db3ce55a-7f1d-11e1-8ea7-1231380bc196"


def test_plivo_altered_params_are_refused(client):
    message = MessageFactory(
        provider="plivo",
        provider_message_id="db3ce55a-7f1d-11e1-8ea7-1231380bc196",
        status="sent",
    )
    response = plivo_post(
        client,
        "/webhooks/plivo/status/",
        plivo_status(message, "delivered"),
        tamper={"Status": "undelivered"},
    )
    assert response.status_code == 401
    message.refresh_from_db()
    assert message.status == "sent"


def test_plivo_bad_v3_is_not_rescued_by_a_good_v2(client):
    message = MessageFactory(
        provider="plivo",
        provider_message_id="db3ce55a-7f1d-11e1-8ea7-1231380bc196",
        status="sent",
    )
    nonce = "05429567804466091622"
    v2 = base64.b64encode(
        hmac.new(
            PLIVO_TOKEN.encode(),
            f"https://sms.example.com/webhooks/plivo/status/{nonce}".encode(),
            hashlib.sha256,
        ).digest()
    ).decode()
    response = client.post(
        "/webhooks/plivo/status/",
        urlencode(plivo_status(message)),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_PLIVO_SIGNATURE_V2=v2,
        HTTP_X_PLIVO_SIGNATURE_V2_NONCE=nonce,
        HTTP_X_PLIVO_SIGNATURE_V3="forged=",
        HTTP_X_PLIVO_SIGNATURE_V3_NONCE=nonce,
    )
    assert response.status_code == 401
    message.refresh_from_db()
    assert message.status == "sent"


def test_plivo_inbound_with_intent_opts_out_an_unknown_number(
    client, settings, sms_outbox
):
    params = {
        "From": "14155550177",
        "To": "14155550100",
        "Text": "Arrêt",
        "Type": "sms",
        "MessageUUID": str(uuid.uuid4()),
        "MessageIntent": "optout",
    }
    response = plivo_post(client, "/webhooks/plivo/inbound/", params)
    assert response.status_code == 200, response.content
    assert Suppression.objects.filter(phone="+14155550177").exists()
    assert ConsentEvent.objects.get().provider == "plivo"
    # Plivo answers inbound messages with Message XML; an empty Response replies nothing.
    assert response["Content-Type"] == "application/xml"
    assert response.content.endswith(b"<Response></Response>")


# --- Sinch ---------------------------------------------------------------------------


def test_sinch_one_url_routes_every_callback_type(client, sms_outbox):
    message = MessageFactory(
        provider="sinch",
        provider_message_id="01W4FFL35P4NC4K35SMSBATCH9",
        status="submitted",
    )
    report = {
        "type": "recipient_delivery_report_sms",
        "batch_id": "01W4FFL35P4NC4K35SMSBATCH9",
        "recipient": message.to.lstrip("+"),
        "code": 0,
        "status": "Delivered",
        "at": "2024-06-06T08:17:19.210Z",
        "client_reference": str(message.client_reference),
    }
    mo = {
        "type": "mo_text",
        "id": "01XXXXX21XXXXX119Z8P1XXXXX",
        "from": "16051234567",
        "to": "14155550100",
        "body": "HELP",
        "received_at": "2022-08-24T14:15:22Z",
    }
    # Both payloads to the same endpoint, as a service plan's single callback URL does.
    assert sinch_post(client, "/webhooks/sinch/inbound/", report).status_code == 200
    assert sinch_post(client, "/webhooks/sinch/inbound/", mo).status_code == 200
    message.refresh_from_db()
    assert message.status == "delivered"
    assert InboundMessage.objects.get().keyword == "help"


def test_sinch_deleted_is_undelivered_and_no_opt_out(client):
    # Sinch: "Deleted" may be an invalid number as well as an opted-out subscriber.
    contact = ContactFactory()
    message = MessageFactory(
        contact=contact, provider="sinch", provider_message_id="B1", status="sent"
    )
    report = {
        "type": "recipient_delivery_report_sms",
        "batch_id": "B1",
        "recipient": message.to,
        "code": 0,
        "status": "Deleted",
        "at": "2024-06-06T08:17:19.210Z",
    }
    assert sinch_post(client, "/webhooks/sinch/status/", report).status_code == 200
    contact.refresh_from_db()
    message.refresh_from_db()
    assert message.status == "undelivered"
    assert "invalid number or opted-out" in message.error_reason
    assert not contact.opted_out
    assert not ConsentEvent.objects.exists()


def test_sinch_stale_signature_is_refused(client):
    report = {
        "type": "recipient_delivery_report_sms",
        "batch_id": "B1",
        "recipient": "14155550123",
        "code": 0,
        "status": "Delivered",
        "at": "2024-06-06T08:17:19.210Z",
    }
    assert (
        sinch_post(
            client, "/webhooks/sinch/status/", report, timestamp=time.time() - 90_000
        ).status_code
        == 401
    )
    assert DeliveryEvent.objects.count() == 0


# --- Ordering, duplicates, bad input ----------------------------------------------------


def test_out_of_order_and_duplicate_receipts_leave_the_best_status(client):
    message = MessageFactory(
        provider="vonage", provider_message_id=str(uuid.uuid4()), status="submitted"
    )
    answers = [
        vonage_post(client, "/webhooks/vonage/status/", vonage_status(message, status))
        for status in ["delivered", "submitted", "delivered"]
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    # The third is the first one again (a vendor retry): answered, not applied.
    assert [a.json()["applied"] for a in answers] == [1, 1, 0]
    message.refresh_from_db()
    assert message.status == "delivered"
    assert DeliveryEvent.objects.count() == 2


def test_unknown_status_is_accepted_and_logged(client, caplog):
    message = MessageFactory(
        provider="vonage", provider_message_id=str(uuid.uuid4()), status="submitted"
    )
    response = vonage_post(
        client, "/webhooks/vonage/status/", vonage_status(message, "teleported")
    )
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.status == "submitted"
    assert DeliveryEvent.objects.get().raw_status == "teleported"


def test_malformed_json_is_a_400_and_the_body_is_kept(client):
    body = b'{"message_uuid": "abc", "status": '
    response = vonage_post(client, "/webhooks/vonage/status/", None, body=body)
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]
    rejected = RejectedCallback.objects.get()
    assert rejected.body == body.decode()
    assert DeliveryEvent.objects.count() == 0


def test_missing_fields_are_a_400(client):
    response = vonage_post(client, "/webhooks/vonage/status/", {"channel": "sms"})
    assert response.status_code == 400


def test_wrong_content_type_for_plivo_is_a_400(client):
    nonce = "1"
    response = client.post(
        "/webhooks/plivo/status/",
        b'{"a": 1}',
        content_type="application/json",
        HTTP_X_PLIVO_SIGNATURE_V2="x",
        HTTP_X_PLIVO_SIGNATURE_V2_NONCE=nonce,
    )
    assert response.status_code in (400, 401)


def test_oversize_body_is_a_400(client):
    body = b"{" + b" " * (1_048_576 + 10) + b"}"
    response = client.post(
        "/webhooks/vonage/status/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert "1048576" in response.json()["error"]


def test_unknown_provider_is_a_404(client):
    assert (
        client.post(
            "/webhooks/pigeon/status/", b"{}", content_type="application/json"
        ).status_code
        == 404
    )
    assert (
        client.post(
            "/webhooks/locmem/status/", b"{}", content_type="application/json"
        ).status_code
        == 404
    )


def test_other_methods_are_refused(client):
    assert client.put("/webhooks/vonage/status/", b"{}").status_code == 405


def test_unconfigured_provider_asks_the_vendor_to_retry(client, settings):
    settings.SMS_PROVIDERS = {
        **settings.SMS_PROVIDERS,
        "sinch": {
            **settings.SMS_PROVIDERS["sinch"],
            "OPTIONS": {**settings.SMS_PROVIDERS["sinch"]["OPTIONS"], "api_token": ""},
        },
    }
    response = client.post(
        "/webhooks/sinch/status/", b"{}", content_type="application/json"
    )
    assert response.status_code == 503


def test_unsigned_callbacks_pass_only_when_explicitly_allowed(client, settings):
    message = MessageFactory(
        provider="vonage", provider_message_id=str(uuid.uuid4()), status="submitted"
    )
    payload = json.dumps(vonage_status(message))
    assert (
        client.post(
            "/webhooks/vonage/status/", payload, content_type="application/json"
        ).status_code
        == 401
    )
    settings.SMS_WEBHOOK_ALLOW_UNSIGNED = True
    assert (
        client.post(
            "/webhooks/vonage/status/", payload, content_type="application/json"
        ).status_code
        == 200
    )
    message.refresh_from_db()
    assert message.status == "delivered"


def test_simulator_reports_take_the_same_path(settings):
    from providers import get_provider
    from providers.messages import OutboundSms

    message = MessageFactory(provider="simulator", status="sending")
    simulator = get_provider("simulator")
    [result] = simulator.send_messages(
        [OutboundSms(to=message.to, text="hi", reference=str(message.client_reference))]
    )
    Message.objects.filter(pk=message.pk).update(
        provider_message_id=result.provider_message_id, status="submitted"
    )
    simulator.flush()
    message.refresh_from_db()
    assert message.status in {"delivered", "undelivered", "failed", "rejected"}
    assert DeliveryEvent.objects.filter(message=message).count() == 2


def test_plivo_status_by_get_with_query_parameters(client):
    message = MessageFactory(provider="plivo", status="submitted")
    params = plivo_status(message, "sent")
    params["ref"] = str(message.client_reference)
    path = "/webhooks/plivo/status/?" + urlencode(params)
    nonce = "12345678901234567890"
    url = "https://sms.example.com" + path
    from plivo.utils.signature_v3 import construct_get_url

    signature = get_signature_v3(
        PLIVO_TOKEN, construct_get_url(url, {}), nonce
    ).decode()
    response = client.get(
        path, HTTP_X_PLIVO_SIGNATURE_V3=signature, HTTP_X_PLIVO_SIGNATURE_V3_NONCE=nonce
    )
    assert response.status_code == 200, response.content
    message.refresh_from_db()
    assert message.status == "sent"
