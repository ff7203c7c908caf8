"""Callbacks signed as each vendor signs them, for the webhook security tests.

Plivo's V3 and V2 signatures come from the ``plivo`` SDK's own signing code; Vonage's
token carries the claims its signed webhooks carry (iat, jti, iss, payload_hash);
Sinch's HMAC is the documented ``body.nonce.timestamp`` scheme.
"""

import base64
import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import urlencode

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3

from django.test import Client

PUBLIC_BASE = "https://sms.example.com"
VONAGE_SECRET = "vonage-signature-secret-for-tests"
PLIVO_ID, PLIVO_TOKEN = "MAXXXXXXXXXXXXXXXXXX", "plivo-auth-token"
SINCH_SECRET = "sinch-webhook-secret"
OUR_NUMBER = "+14155550100"


@pytest.fixture
def vendors(settings, tmp_path):
    """Vonage, Plivo and Sinch configured with test credentials (production windows)."""
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
    options = {
        "vonage": {
            "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
            "private_key_path": str(key_path),
            "number": OUR_NUMBER,
            "signature_secret": VONAGE_SECRET,
        },
        "plivo": {
            "auth_id": PLIVO_ID,
            "auth_token": PLIVO_TOKEN,
            "sender_id": OUR_NUMBER.lstrip("+"),
        },
        "sinch": {
            "service_plan_id": "plan",
            "api_token": "token",
            "number": OUR_NUMBER,
            "webhook_secret": SINCH_SECRET,
        },
    }
    for alias, extra in options.items():
        providers[alias] = {
            **providers[alias],
            "OPTIONS": {**providers[alias]["OPTIONS"], **extra},
        }
    settings.SMS_PROVIDERS = providers
    return providers


def configure(settings, alias: str, **options) -> None:
    """Change one provider's OPTIONS (e.g. allow_v2_signatures, webhook_max_age)."""
    providers = dict(settings.SMS_PROVIDERS)
    providers[alias] = {
        **providers[alias],
        "OPTIONS": {**providers[alias]["OPTIONS"], **options},
    }
    settings.SMS_PROVIDERS = providers


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)


# --- Signing -------------------------------------------------------------------------


def compact(payload) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def vonage_headers(body: bytes, *, iat: float | None = None) -> dict[str, str]:
    claims = {
        "iat": int(iat if iat is not None else time.time()),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": "a1b2c3d",
    }
    return {"Authorization": f"Bearer {jwt.encode(claims, VONAGE_SECRET, 'HS256')}"}


def plivo_v3_headers(path: str, params: dict, *, nonce: str = "") -> dict[str, str]:
    nonce = nonce or uuid.uuid4().hex
    url = PUBLIC_BASE + path
    signature = get_signature_v3(
        PLIVO_TOKEN, construct_post_url(url, dict(params)), nonce
    ).decode()
    return {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}


def plivo_v2_headers(path: str, *, nonce: str = "") -> dict[str, str]:
    nonce = nonce or uuid.uuid4().hex
    base = PUBLIC_BASE + path.split("?", 1)[0]
    signature = base64.b64encode(
        hmac.new(
            PLIVO_TOKEN.encode(), f"{base}{nonce}".encode(), hashlib.sha256
        ).digest()
    ).decode()
    return {"X-Plivo-Signature-V2": signature, "X-Plivo-Signature-V2-Nonce": nonce}


def sinch_headers(
    body: bytes, *, timestamp: float | None = None, nonce: str = ""
) -> dict[str, str]:
    nonce = nonce or uuid.uuid4().hex
    stamp = str(int(timestamp if timestamp is not None else time.time()))
    digest = hmac.new(
        SINCH_SECRET.encode(), body + f".{nonce}.{stamp}".encode(), hashlib.sha256
    ).digest()
    return {
        "x-sinch-webhook-signature": base64.b64encode(digest).decode(),
        "x-sinch-webhook-signature-nonce": nonce,
        "x-sinch-webhook-signature-timestamp": stamp,
        "x-sinch-webhook-signature-algorithm": "HmacSHA256",
    }


def post_json(client, path: str, body: bytes, headers: dict[str, str]):
    return client.post(path, body, content_type="application/json", headers=headers)


def post_form(client, path: str, params: dict, headers: dict[str, str]):
    return client.post(
        path,
        urlencode(params),
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )


# --- Vendor bodies ---------------------------------------------------------------------


def vonage_inbound(sender: str, text: str, message_uuid: str = "") -> dict:
    return {
        "channel": "sms",
        "message_uuid": message_uuid or str(uuid.uuid4()),
        "to": OUR_NUMBER.lstrip("+"),
        "from": sender.lstrip("+"),
        "timestamp": "2025-01-01T12:00:00.000Z",
        "message_type": "text",
        "text": text,
        "sms": {"num_messages": "1", "keyword": text.split()[0] if text else ""},
    }


def vonage_status(message, status: str = "delivered") -> dict:
    return {
        "message_uuid": message.provider_message_id,
        "to": message.to.lstrip("+"),
        "from": OUR_NUMBER.lstrip("+"),
        "timestamp": "2025-01-01T12:00:00.000Z",
        "status": status,
        "channel": "sms",
        "client_ref": str(message.client_reference),
    }


def plivo_inbound(sender: str, text: str, message_uuid: str = "") -> dict:
    return {
        "From": sender.lstrip("+"),
        "To": OUR_NUMBER.lstrip("+"),
        "Text": text,
        "Type": "sms",
        "MessageUUID": message_uuid or str(uuid.uuid4()),
        "MessageIntent": "",
    }


def plivo_status(message, status: str = "delivered", **extra) -> dict:
    return {
        "MessageUUID": message.provider_message_id or str(uuid.uuid4()),
        "To": message.to.lstrip("+"),
        "From": OUR_NUMBER.lstrip("+"),
        "Type": "sms",
        "Status": status,
        "ErrorCode": "",
        "MessageTime": "2025-01-01 12:00:00.000000",
        **extra,
    }


def sinch_inbound(sender: str, text: str, message_id: str = "") -> dict:
    return {
        "type": "mo_text",
        "id": message_id or uuid.uuid4().hex,
        "from": sender.lstrip("+"),
        "to": OUR_NUMBER.lstrip("+"),
        "body": text,
        "received_at": "2024-06-06T08:17:19.210Z",
    }


def sinch_status(message, status: str = "Delivered") -> dict:
    return {
        "type": "recipient_delivery_report_sms",
        "batch_id": message.provider_message_id,
        "recipient": message.to.lstrip("+"),
        "code": 0,
        "status": status,
        "at": "2024-06-06T08:17:19.210Z",
    }
