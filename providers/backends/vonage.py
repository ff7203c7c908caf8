"""SMS backend for the Vonage Messages API (v1).

Sending goes over the shared HTTP layer (``http.HttpClient``), not through the
``vonage`` SDK's client, for three reasons measured or read in vonage 4.9.1:

- the SDK mints a new application JWT for every request and PyJWT re-parses the PEM
  private key each time (~33 ms of CPU under the GIL per message, which capped a
  process at ~27 messages/s);
- its HTTP client silently re-sends the POST when the connection drops with
  RemoteDisconnected, which can text a recipient twice;
- its exceptions do not say whether the request had gone out, which decides whether
  a failed message may be sent again.

The SDK is still what defines the request: ``vonage_messages.Sms`` validates and
serialises the body (numbers, client_ref length, field names), and
``vonage_jwt.JwtClient`` builds the application JWT claims. The private key is
parsed once, when the backend is built, and one token is signed and reused until
shortly before it expires.
"""

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError
from vonage_jwt import JwtClient
from vonage_messages import Sms
from vonage_messages.models.enums import WebhookVersion
from vonage_utils.errors import VonageError

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from smscampaigns import json_limits

from ..exceptions import CallbackAuthError, CallbackParseError
from ..messages import (
    Callback,
    DeliveryStatus,
    InboundSms,
    OutboundSms,
    SendError,
    SendErrorKind,
    SendResult,
    StatusEvent,
    mask_phone,
)
from .base import BaseSmsBackend
from .http import HttpClient, SendFailed, classify_status, json_object

logger = logging.getLogger(__name__)

TOKEN_LIFETIME = 15 * 60
"""Seconds an application JWT is valid (its ``exp``), as the SDK sets it."""

TOKEN_RENEW_BEFORE = 60
"""Seconds before ``exp`` a new token is signed, so none expires while in flight."""

# The statuses of the Messages API status webhook, v1 and v0.1 alike
# (https://developer.vonage.com/en/messages/concepts/messages-status-callbacks; the
# v0.1 enum is in Nexmo/station _open_api/definitions/messages-olympus.yml).
STATUS_MAP: dict[str, DeliveryStatus] = {
    # Passed to the provider (the chargeable event for SMS).
    "submitted": DeliveryStatus.SUBMITTED,
    "accepted": DeliveryStatus.SUBMITTED,
    "buffered": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    # "read" exists only on OTT channels; it still implies delivery.
    "read": DeliveryStatus.DELIVERED,
    # Rejected by Vonage or the carrier; see REJECTED_BY_CODE for the errors that
    # mean something else.
    "rejected": DeliveryStatus.REJECTED,
    # "Vonage was unable to connect to the provider": it never left Vonage.
    "undeliverable": DeliveryStatus.FAILED,
    "failed": DeliveryStatus.FAILED,
    "expired": DeliveryStatus.EXPIRED,
}

REJECTED_BY_CODE: dict[str, tuple[DeliveryStatus, bool]] = {
    # 1000 "Throttled - You have exceeded the submission capacity allowed on this
    # account. Please wait and retry" (https://developer.vonage.com/en/api-errors/messages):
    # nothing went out; it is sent again (resend).
    "1000": (DeliveryStatus.FAILED, True),
    # 1360: the message's TTL ran out before delivery (Messages API errors page; the
    # status callbacks concept page: "rejected" also when "the TTL expired").
    "1360": (DeliveryStatus.EXPIRED, False),
}
"""``rejected`` callbacks whose error code says what really happened: (our status,
whether the message may be sent again)."""

MAX_TTL = 604800
"""Seconds: the longest ``ttl`` the Messages API takes (the SDK's ``Sms`` model
bounds it to 20..604800)."""
MIN_TTL = 20


def _now() -> float:
    """The current Unix time (a function of its own so tests can freeze the clock)."""
    return time.time()


class ApplicationToken:
    """The ``Authorization: Bearer`` JWT for one Vonage application.

    Signing RS256 costs about a millisecond with an already-parsed key; doing it
    once per token lifetime instead of once per message leaves the send path with
    no RSA work at all. Safe to share between threads.
    """

    def __init__(self, application_id: str, private_key: rsa.RSAPrivateKey) -> None:
        # JwtClient keeps a key object as it is, so PyJWT signs with it directly
        # instead of parsing PEM text on every encode.
        self._jwt = JwtClient(application_id, private_key)
        self._lock = threading.Lock()
        self._current: tuple[str, float] = ("", 0.0)
        self.signed = 0
        """How many tokens this instance has signed (for tests and benchmarks)."""

    def bearer(self) -> str:
        token, expires = self._current
        if _now() < expires - TOKEN_RENEW_BEFORE:
            return token
        with self._lock:
            # Another thread may have renewed it while this one waited.
            token, expires = self._current
            now = _now()
            if now < expires - TOKEN_RENEW_BEFORE:
                return token
            issued = int(now)
            token = self._jwt.generate_application_jwt(
                {"iat": issued, "exp": issued + TOKEN_LIFETIME}
            ).decode("ascii")
            # One tuple, swapped in one assignment: readers never see a token
            # paired with another token's expiry.
            self._current = (token, issued + TOKEN_LIFETIME)
            self.signed += 1
            return token


class SmsBackend(BaseSmsBackend):
    """Vonage Messages API: one recipient per request, JWT (application) auth.

    Delivery receipts and inbound messages arrive as signed JSON webhooks
    (``Authorization: Bearer <HS256 JWT>`` keyed with the account signature secret).
    """

    max_recipients_per_request = 1
    supports_client_reference = True
    supports_callback_url = True
    default_rate = 30.0
    # The whole JWT: its jti and iat make each signing unique.
    replay_headers = ("Authorization",)

    # "text ... limited to 1000 characters"; the SDK's model allows 3200, so the
    # limit is checked here.
    max_text_length = 1000
    text_limit_source = "https://developer.vonage.com/en/api/messages (text)"

    timeout: tuple[float, float] = (5.0, 10.0)
    """(connect, read) seconds for one send request."""

    def __init__(
        self,
        *,
        alias: str,
        application_id: str = "",
        private_key_path: str = "",
        number: str = "",
        signature_secret: str = "",
        api_url: str = "https://api.nexmo.com",
        **options: object,
    ) -> None:
        super().__init__(alias=alias, **options)
        self.require(
            alias,
            VONAGE_APPLICATION_ID=application_id,
            VONAGE_PRIVATE_KEY_PATH=private_key_path,
            VONAGE_NUMBER=number,
        )
        self.application_id = application_id
        self.number = _vendor_number(number)
        self.signature_secret = signature_secret
        self.api_url = _api_origin(alias, api_url or "https://api.nexmo.com")
        self.messages_url = f"{self.api_url}/v1/messages"
        # Parsed here, once per process: a bad VONAGE_PRIVATE_KEY_PATH stops
        # start-up (system check), and no send ever parses PEM again.
        self.token = ApplicationToken(
            application_id, _load_private_key(alias, private_key_path)
        )
        self.http = HttpClient(vendor="Vonage", timeout=self.timeout)

    # --- Sending -------------------------------------------------------------------

    def open_connections(self, count: int) -> int:
        return self.http.open_connections(self.messages_url, count)

    def send_batch(self, messages: Sequence[OutboundSms]) -> list[SendResult]:
        return [self._send_one(message) for message in messages]

    def _send_one(self, message: OutboundSms) -> SendResult:
        if problem := self.text_problem(message.text):
            return self._failed(
                message, SendError(SendErrorKind.PERMANENT, "text_too_long", problem)
            )
        try:
            # client_ref is always our unique reference: should a request whose
            # answer was lost have reached Vonage after all, its receipt names it.
            sms = Sms(
                to=_vendor_number(message.to),
                from_=_vendor_number(message.sender) or self.number,
                text=message.text,
                client_ref=message.reference,
                webhook_url=self.status_callback_url() or None,
                # The status webhook shape this backend reads first, whatever the
                # application's own setting (the SDK's WebhookVersion enum).
                webhook_version=WebhookVersion.V1,
                ttl=_ttl(message.expires_at),
            )
        except ValidationError as exc:
            return self._failed(message, _validation_error(exc))
        try:
            token = self.token.bearer()
        except VonageError as exc:
            # The key cannot sign: no message can go out with these credentials.
            return self._failed(
                message,
                SendError(SendErrorKind.MISCONFIGURED, "auth_error", str(exc)),
            )
        try:
            response = self.http.post_json(
                self.messages_url,
                sms.model_dump(by_alias=True, exclude_none=True),
                headers={"Authorization": f"Bearer {token}"},
            )
        except SendFailed as failure:
            return self._failed(message, failure.error)
        if not 200 <= response.status_code < 300:
            return self._failed(message, _http_error(response))
        message_uuid = _text(json_object(response).get("message_uuid"))
        if not message_uuid:
            # Vonage took the message (2xx): reporting a failure would invite a
            # duplicate. The receipt names it through client_ref.
            logger.warning(
                "Vonage accepted %s for %s without a message_uuid",
                message.reference,
                mask_phone(message.to),
            )
        return SendResult(
            reference=message.reference,
            to=message.to,
            provider_message_id=message_uuid,
        )

    def _failed(self, message: OutboundSms, error: SendError) -> SendResult:
        logger.warning(
            "Vonage did not take %s for %s: %s %s (%s)",
            message.reference,
            mask_phone(message.to),
            error.code,
            error.reason,
            error.kind,
        )
        return SendResult(reference=message.reference, to=message.to, error=error)

    # --- Callbacks -----------------------------------------------------------------

    def verify_callback(self, callback: Callback) -> None:
        authorization = callback.header("Authorization").strip()
        if not authorization:
            if settings.SMS_WEBHOOK_ALLOW_UNSIGNED:
                return
            raise CallbackAuthError("missing Authorization header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise CallbackAuthError("Authorization header is not a Bearer token")
        if not self.signature_secret:
            raise CallbackAuthError(
                "cannot verify the signature: VONAGE_SIGNATURE_SECRET is not set"
            )
        claims = self._decode_token(token)

        # Freshness is checked here rather than by PyJWT so it follows one clock and
        # this provider's webhook_max_age (Vonage sends no exp; iat is all there is).
        issued_at = claims["iat"]
        if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
            raise CallbackAuthError("token iat is not a number")
        now = _now()
        skew = settings.SMS_WEBHOOK_CLOCK_SKEW
        if issued_at > now + skew:
            raise CallbackAuthError("token is issued in the future")
        if now - issued_at > self.webhook_max_age + skew:
            raise CallbackAuthError("token is stale")
        expires = claims.get("exp")
        if isinstance(expires, int | float) and expires <= now - skew:
            raise CallbackAuthError("token has expired")
        if "iss" in claims and claims["iss"] != "Vonage":
            raise CallbackAuthError("token issuer is not Vonage")

        payload_hash = claims["payload_hash"]
        if not isinstance(payload_hash, str) or not _body_matches(
            callback.body, payload_hash
        ):
            raise CallbackAuthError("body does not match the signed payload_hash")

    def _decode_token(self, token: str) -> dict:
        try:
            return jwt.decode(
                token,
                self.signature_secret,
                algorithms=["HS256"],
                options={
                    "verify_iat": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "require": ["iat", "payload_hash"],
                },
            )
        except jwt.InvalidAlgorithmError:
            raise CallbackAuthError("token is not signed with HS256") from None
        except jwt.InvalidSignatureError:
            raise CallbackAuthError("signature does not match") from None
        except jwt.MissingRequiredClaimError as exc:
            raise CallbackAuthError(f"token has no {exc.claim} claim") from None
        except jwt.InvalidTokenError:
            raise CallbackAuthError("malformed token") from None

    def parse_status_callback(self, callback: Callback) -> list[StatusEvent]:
        """One status from a status webhook, in the v1 shape or the v0.1 one.

        v1 (``webhook_version: "v1"``, sent with every message) names numbers as
        strings and errors as RFC 7807 ``{type, title, detail}``; v0.1, still what an
        application set to v0.1 sends for messages without our per-message choice,
        names them as ``{"type": "sms", "number": ...}`` and ``{code, reason}``
        (Nexmo/station _open_api/definitions/messages-olympus.yml, MessageStatus).
        """
        data = _json_object(callback)
        message_uuid = _text(data.get("message_uuid"))
        client_ref = _text(data.get("client_ref"))
        if not message_uuid and not client_ref:
            raise CallbackParseError(
                "Vonage status callback has neither message_uuid nor client_ref"
            )
        raw_status = _text(data.get("status"))
        if not raw_status:
            raise CallbackParseError("Vonage status callback has no status")

        error = _mapping(data.get("error"))
        usage = _mapping(data.get("usage"))
        sms = _mapping(data.get("sms"))
        if "code" in error or "reason" in error:
            # v0.1: {"code": 1300, "reason": "Not part of the provider network"}
            error_code = _text(error.get("code"))
            error_reason = _text(error.get("reason"))
        else:
            error_code = _problem_code(error.get("type"))
            error_reason = _problem_reason(error.get("title"), error.get("detail"))
        status = STATUS_MAP.get(raw_status.lower(), DeliveryStatus.UNKNOWN)
        resend = raw_status.lower() == "undeliverable"
        if raw_status.lower() == "rejected" and error_code in REJECTED_BY_CODE:
            status, resend = REJECTED_BY_CODE[error_code]
        return [
            StatusEvent(
                status=status,
                raw_status=raw_status,
                provider_message_id=message_uuid,
                reference=client_ref,
                recipient=_e164(_party_number(data.get("to"))),
                error_code=error_code,
                error_reason=error_reason,
                price=_decimal(usage.get("price")),
                currency=_text(usage.get("currency")),
                segments=_int(sms.get("count_total")),
                occurred_at=_datetime(data.get("timestamp")),
                resend=resend,
                payload=data,
            )
        ]

    def parse_inbound_callback(self, callback: Callback) -> list[InboundSms]:
        """The text of an inbound webhook, v1 (``from``, ``text``) or v0.1
        (``from.number``, ``message.content.text``): an application still on v0.1
        must not lose a STOP."""
        data = _json_object(callback)
        sender = _party_number(data.get("from"))
        if not sender:
            raise CallbackParseError("Vonage inbound callback has no from")
        text = data.get("text")
        if text is None and "message" in data:
            content = _mapping(_mapping(data.get("message")).get("content"))
            text = content.get("text")
        if not isinstance(text, str):
            raise CallbackParseError("Vonage inbound callback has no text")
        return [
            InboundSms(
                from_number=_e164(sender),
                to_number=_e164(_party_number(data.get("to"))),
                text=text,
                provider_message_id=_text(data.get("message_uuid")),
                received_at=_datetime(data.get("timestamp")),
                # No keyword_hint: Vonage's sms.keyword is only the message's first
                # word upper-cased ("HELP" for "Help me find the store hours"), not a
                # reading of what it means (Plivo's MessageIntent is one).
                payload=data,
            )
        ]


# --- Configuration helpers ------------------------------------------------------------


def _api_origin(alias: str, api_url: str) -> str:
    """``https://host[:port]`` from VONAGE_API_URL, refusing anything else."""
    parts = urlsplit(api_url)
    if parts.scheme != "https" or not parts.hostname:
        raise ImproperlyConfigured(
            f"VONAGE_API_URL for SMS provider {alias!r} must be an https:// origin "
            f"(Vonage only serves https), got {api_url!r}"
        )
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
        raise ImproperlyConfigured(
            f"VONAGE_API_URL for SMS provider {alias!r} must be an origin such as "
            f"https://api.nexmo.com (no path, query or credentials), got {api_url!r}"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"https://{host}:{parts.port}" if parts.port else f"https://{host}"


def _load_private_key(alias: str, path: str) -> rsa.RSAPrivateKey:
    """The application's RSA key, parsed (PKCS#8 or PKCS#1 PEM)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImproperlyConfigured(
            f"VONAGE_PRIVATE_KEY_PATH for SMS provider {alias!r} cannot be read: "
            f"{exc.strerror or exc}"
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"VONAGE_PRIVATE_KEY_PATH for SMS provider {alias!r} is not an "
            f"unencrypted PEM private key ({type(exc).__name__})"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ImproperlyConfigured(
            f"VONAGE_PRIVATE_KEY_PATH for SMS provider {alias!r} must hold an RSA key"
        )
    return key


# --- Send error helpers ---------------------------------------------------------------


def _validation_error(exc: ValidationError) -> SendError:
    """A permanent error naming the fields the SDK model refused, without their values
    (they would put phone numbers in logs)."""
    errors = exc.errors(include_input=False, include_url=False)
    fields = {str(error["loc"][0]) for error in errors if error["loc"]}
    reason = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in errors
    )
    code = "invalid_number" if fields & {"to", "from_"} else "invalid_request"
    return SendError(SendErrorKind.PERMANENT, code, reason)


def _http_error(response: requests.Response) -> SendError:
    """Classify a Vonage error answer (RFC 7807 problem details) by its status."""
    body = json_object(response)
    return classify_status(
        response,
        code=_problem_code(body.get("type")),
        reason=_problem_reason(body.get("title"), body.get("detail")),
    )


def _problem_code(problem_type: object) -> str:
    """The code in an RFC 7807 type URL: ".../api-errors/messages#1250" gives "1250"."""
    if not isinstance(problem_type, str) or problem_type in ("", "about:blank"):
        return ""
    return urlsplit(problem_type).fragment or problem_type


def _problem_reason(title: object, detail: object) -> str:
    parts = [_text(title), _text(detail)]
    parts = [part for part in parts if part]
    if len(parts) == 2 and parts[0] == parts[1]:
        parts = parts[:1]
    return ": ".join(parts)


# --- Callback helpers -----------------------------------------------------------------


def _body_matches(body: bytes, payload_hash: str) -> bool:
    """Whether payload_hash (hex SHA-256) is the hash of this body.

    Vonage hashes the JSON it sends, which is compact. Its own sample verifier hashes
    the compact re-serialisation of the parsed body, so that form is accepted too: it
    is the same JSON object, and the parsers read nothing but that object.
    """
    expected = payload_hash.lower().encode("ascii", errors="replace")
    if hmac.compare_digest(hashlib.sha256(body).hexdigest().encode(), expected):
        return True
    try:
        compact = json.dumps(
            json_limits.loads(body), separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(hashlib.sha256(compact).hexdigest().encode(), expected)


def _json_object(callback: Callback) -> dict:
    data = callback.json()
    if not isinstance(data, dict):
        raise CallbackParseError(
            f"Vonage callback body must be a JSON object, got {type(data).__name__}"
        )
    return data


def _ttl(expires_at: datetime | None) -> int | None:
    """Seconds until ``expires_at`` as Vonage's ``ttl``, within what it accepts
    (MIN_TTL..MAX_TTL); None (Vonage's default, 72 h) without a deadline or beyond
    the maximum."""
    if expires_at is None:
        return None
    seconds = int((expires_at - datetime.now(UTC)).total_seconds())
    if seconds > MAX_TTL:
        return None
    return max(seconds, MIN_TTL)


def _mapping(value: object) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _party_number(value: object) -> str:
    """A number as v1 sends it ("447700900000") or as v0.1 does
    ({"type": "sms", "number": "447700900000"})."""
    if isinstance(value, Mapping):
        return _text(value.get("number"))
    return _text(value)


def _text(value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _e164(value: object) -> str:
    """Vonage numbers carry no "+"; add it to digit strings, keep sender IDs as sent."""
    number = _text(value)
    return f"+{number}" if number.isdigit() else number


def _vendor_number(number: str) -> str:
    """Vonage wants numbers without the leading "+"."""
    return number.strip().removeprefix("+")


def _decimal(value: object) -> Decimal | None:
    text = _text(value)
    if not text:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _int(value: object) -> int | None:
    try:
        return int(_text(value))
    except ValueError:
        return None


def _datetime(value: object) -> datetime | None:
    text = _text(value)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
