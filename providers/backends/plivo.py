"""Plivo Message API backend (https://www.plivo.com/docs/messaging/api/message).

Sends ``POST {api_url}/v1/Account/{auth_id}/Message/`` over the shared HTTP layer
(``http.HttpClient``, HTTP Basic auth_id:auth_token) rather than through the
``plivo`` SDK, whose base URL is a module global (``PLIVO_API_BASE_URI``, copied onto
the client on every call): reaching a configured ``api_url`` meant holding a
process-wide lock around every send, which serialised all Plivo sends of a process.
The SDK also turns 429/502/503 into a bare ``PlivoRestError`` without the response
(so no Retry-After) and hides whether a failed request had gone out, which decides
whether its recipients may be sent it again. The ``plivo`` package is still used
for what it does well: its account-id rules check ``auth_id`` at start-up, and the
tests cross-check callback signatures with its V3 signing code.

One request carries one text to up to 1,000 unique destinations in one "<"-joined
string (Plivo drops repeats silently, so a repeat is refused here with a result of
its own). Plivo has no client-reference field, so the status callback URL carries ``?ref=<reference of the first message in the request>``; a
delivery receipt then names a message by that ``ref`` plus its ``To`` number (and by
``MessageUUID``). Callbacks are form-encoded (POST) or query parameters (GET), signed
with Plivo's V3 scheme (URL, parameters and nonce). V2 (URL and nonce only: no body,
no time) is accepted only with ``allow_v2_signatures`` (PLIVO_ALLOW_V2_SIGNATURES):
one captured V2 header pair would otherwise forge any callback to that URL for ever.
"""

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qs, urlsplit

from plivo.utils import is_valid_mainaccount, is_valid_subaccount

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

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
from .http import HttpClient, SendFailed, body_excerpt, classify_status, json_object

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.plivo.com"

MAX_DESTINATIONS = 1000
"""Plivo's limit of unique destinations in one bulk request."""

TIMEOUT = (5.0, 30.0)
"""(connect, read) seconds. The read timeout is longer than the SDK's 5 s: a request
that times out after going out leaves all its (up to 1,000) messages "maybe sent"."""

STATUS_MAP: dict[str, DeliveryStatus] = {
    "queued": DeliveryStatus.SUBMITTED,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    # Carrier refusal for regulatory reasons: missing from the newest docs page but
    # still in older docs and the SDK's filter list.
    "rejected": DeliveryStatus.REJECTED,
}

ERROR_REASONS: dict[str, str] = {
    # https://plivo.com/docs/messaging/troubleshooting/error-codes (10-1000), the
    # queue-expiry and balance FAQs (420, 900) and the SMS FAQ (450).
    "10": "Invalid message",
    "20": "Network error",
    "30": "Spam detected",
    "40": "Invalid source number",
    "50": "Invalid destination number",
    "60": "Loop detected",
    "70": "Destination permanently unavailable",
    "80": "Destination temporarily unavailable",
    "90": "No route available",
    "100": "Prohibited by carrier",
    "110": "Message too long",
    "200": "Source number blocked by STOP from destination number",
    "201": "Outbound messages from US toll-free numbers to Canadian numbers are blocked",
    "420": "Message expired in queue",
    "450": "Destination country barred",
    "900": "Insufficient credit",
    "1000": "Unknown error",
}

OPT_OUT_ERROR_CODE = "200"
"""The recipient texted STOP to our number: Plivo blocks everything we send them."""

KEYWORD_INTENTS = frozenset({"optout", "optin", "help"})

HEADER_V3 = "X-Plivo-Signature-V3"
HEADER_MA_V3 = "X-Plivo-Signature-Ma-V3"
HEADER_V3_NONCE = "X-Plivo-Signature-V3-Nonce"
HEADER_V2 = "X-Plivo-Signature-V2"
HEADER_MA_V2 = "X-Plivo-Signature-Ma-V2"
HEADER_V2_NONCE = "X-Plivo-Signature-V2-Nonce"
SIGNATURE_HEADERS = (
    HEADER_V3,
    HEADER_MA_V3,
    HEADER_V3_NONCE,
    HEADER_V2,
    HEADER_MA_V2,
    HEADER_V2_NONCE,
)

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

# Characters Plivo strips from "dst" (and "src") before using a number.
_PLIVO_STRIPPED = re.compile(r"[\s/\-.+()]")
_NON_DIGITS = re.compile(r"\D")
_DUPLICATE = SendError(
    SendErrorKind.PERMANENT, "duplicate", "duplicate destination in batch"
)
_NOT_A_NUMBER = SendError(
    SendErrorKind.PERMANENT,
    "invalid_number",
    "not a phone number Plivo accepts as a destination",
)
_SAME_AS_SOURCE = SendError(
    SendErrorKind.PERMANENT, "invalid_number", "destination is the sender number"
)
_PLIVO_INVALID = SendError(
    SendErrorKind.PERMANENT,
    "invalid_number",
    "Plivo listed the destination in invalid_number",
)


class SmsBackend(BaseSmsBackend):
    """Plivo Message API: bulk sends, form-encoded callbacks, V3/V2 signatures."""

    max_recipients_per_request = MAX_DESTINATIONS
    supports_per_recipient_text = False
    supports_client_reference = False
    supports_callback_url = True
    default_rate = 5.0
    """Plivo's default outbound SMS throughput per account (above it, it queues)."""
    replay_headers = SIGNATURE_HEADERS

    max_text_length = 1600
    max_unicode_length = 737
    text_limit_source = (
        "https://www.plivo.com/docs/messaging/api/message/send-a-message (text: "
        "1,600 GSM or 737 Unicode characters)"
    )

    def __init__(
        self,
        *,
        alias: str,
        auth_id: str = "",
        auth_token: str = "",
        sender_id: str = "",
        api_url: str = DEFAULT_API_URL,
        allow_v2_signatures: bool = False,
        **options: object,
    ) -> None:
        super().__init__(alias=alias, **options)
        self.allow_v2_signatures = bool(allow_v2_signatures)
        self.require(
            alias,
            PLIVO_AUTH_ID=auth_id,
            PLIVO_AUTH_TOKEN=auth_token,
            PLIVO_SENDER_ID=sender_id,
        )
        api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ImproperlyConfigured(
                f"PLIVO_API_URL for SMS provider {alias!r} must be an http(s) URL such as {DEFAULT_API_URL}"
            )
        # The SDK's own rule (MA or SA plus 18 characters); alphanumeric too, as
        # the id goes into the URL path.
        if not (
            (is_valid_mainaccount(auth_id) or is_valid_subaccount(auth_id))
            and auth_id.isalnum()
        ):
            raise ImproperlyConfigured(
                f"PLIVO_AUTH_ID for SMS provider {alias!r} must be 20 characters starting with MA or SA"
            )
        self.auth_id = auth_id
        self.auth_token = auth_token
        self.sender_id = _plivo_source(sender_id)
        self.api_url = api_url
        # The trailing slash is part of Plivo's path (the SDK adds it too).
        self.messages_url = f"{api_url}/v1/Account/{auth_id}/Message/"
        self.http = HttpClient(
            vendor="Plivo", timeout=TIMEOUT, auth=(auth_id, auth_token)
        )

    # --- Sending -------------------------------------------------------------------

    def open_connections(self, count: int) -> int:
        return self.http.open_connections(self.messages_url, count)

    def send_batch(self, messages: Sequence[OutboundSms]) -> list[SendResult]:
        """Send one request per (text, sender), each to at most 1,000 destinations."""
        results: dict[int, SendResult] = {}
        groups: dict[tuple[str, str], list[int]] = {}
        for index, message in enumerate(messages):
            groups.setdefault((message.text, message.sender), []).append(index)
        for indexes in groups.values():
            for start in range(0, len(indexes), MAX_DESTINATIONS):
                chunk = [
                    (i, messages[i]) for i in indexes[start : start + MAX_DESTINATIONS]
                ]
                results.update(self._send_one_request(chunk))
        return [results[index] for index in range(len(messages))]

    def _send_one_request(
        self, items: list[tuple[int, OutboundSms]]
    ) -> dict[int, SendResult]:
        first = items[0][1]
        src = _plivo_source(first.sender) if first.sender else self.sender_id
        results: dict[int, SendResult] = {}
        to_send: list[tuple[int, OutboundSms, str]] = []
        seen: set[str] = set()
        for index, message in items:
            dst = _plivo_number(message.to)
            if dst is None:
                # Also keeps a stray "<" from splitting one recipient into two.
                error = _NOT_A_NUMBER
            elif dst == src:
                # The SDK would refuse the whole request for this one recipient.
                error = _SAME_AS_SOURCE
            elif dst in seen:
                # Plivo would drop the repeat silently, leaving it without a result.
                error = _DUPLICATE
            else:
                seen.add(dst)
                to_send.append((index, message, dst))
                continue
            results[index] = _failed(message, error)
        if not to_send:
            return results

        # The body the SDK sends, field for field (its defaults included).
        params: dict[str, object] = {
            "src": src,
            # Plivo's bulk form: one "<"-joined string.
            "dst": "<".join(dst for _, _, dst in to_send),
            "text": first.text,
            "type": "sms",
        }
        # No client reference at Plivo: the first message's reference rides in the
        # callback URL, and the receipt's To tells the batch's messages apart.
        url = self.status_callback_url(reference=to_send[0][1].reference)
        if url:
            params["url"] = url
        params.update(method="POST", log="true", trackable=False)
        if (expiry := _message_expiry(first.expires_at)) is not None:
            params["message_expiry"] = expiry
        try:
            response = self.http.post_json(self.messages_url, params)
        except SendFailed as failure:
            error = failure.error
        else:
            error = None if response.ok else _http_error(response)
        if error is not None:
            logger.warning(
                "Plivo (%s) did not take a request for %d recipient(s): %s %s (%s)",
                self.alias,
                len(to_send),
                error.code,
                error.reason,
                error.kind,
            )
            for index, message, _ in to_send:
                results[index] = _failed(message, error)
            return results

        body = json_object(response)
        uuids = _as_list(body.get("message_uuid"))
        invalid = {
            _NON_DIGITS.sub("", str(number))
            for number in _as_list(body.get("invalid_number"))
        }
        accepted: list[tuple[int, OutboundSms]] = []
        for index, message, dst in to_send:
            if dst in invalid:
                logger.info(
                    "Plivo (%s) listed %s as invalid",
                    self.alias,
                    mask_phone(message.to),
                )
                results[index] = _failed(message, _PLIVO_INVALID)
            else:
                accepted.append((index, message))
        if len(uuids) != len(accepted):
            logger.warning(
                "Plivo (%s) returned %d message_uuid(s) for %d accepted recipient(s)",
                self.alias,
                len(uuids),
                len(accepted),
            )
        # Plivo does not document how message_uuid is ordered against dst, so an id
        # is only certain when one recipient was accepted; otherwise the receipt
        # (MessageUUID + To) tells us.
        message_id = uuids[0] if len(accepted) == 1 and len(uuids) == 1 else ""
        for index, message in accepted:
            results[index] = SendResult(
                reference=message.reference,
                to=message.to,
                provider_message_id=message_id,
            )
        return results

    # --- Callbacks -----------------------------------------------------------------

    def callback_answer(self, kind: str) -> tuple[str, bytes] | None:
        # Plivo answers an inbound message with Message XML ("handling incoming
        # messages", https://plivo.com/docs/messaging/api/message/handling-incoming):
        # an empty <Response> sends no reply (keyword replies go out through the API).
        if kind == "inbound":
            return (
                "application/xml",
                b'<?xml version="1.0" encoding="utf-8"?><Response></Response>',
            )
        return None

    def verify_callback(self, callback: Callback) -> None:
        """Check the V3 signature, or (only when allowed) the V2 one when no V3
        header came at all.

        Plivo signatures carry no timestamp, so unlike the other vendors there is no
        staleness check here: the webhook handler remembers each accepted signature
        for ``webhook_max_age`` instead. V2 does not even cover the body, which is why
        it is refused by default and a failing V3 is never rescued by a passing V2.
        """
        v3_headers = (HEADER_V3, HEADER_MA_V3, HEADER_V3_NONCE)
        if any(callback.header(name) for name in v3_headers):
            nonce = callback.header(HEADER_V3_NONCE)
            if not nonce:
                raise CallbackAuthError("Plivo V3 signature without its nonce")
            expected = self._v3_signatures(callback, nonce)
            candidates = [
                candidate.strip()
                for name in (HEADER_V3, HEADER_MA_V3)
                for candidate in callback.header(name).split(",")
                if candidate.strip()
            ]
            if not candidates:
                raise CallbackAuthError("Plivo V3 nonce without a signature")
            # The Ma- header is signed with the main account's token: it matches
            # when our token is the main account's.
            if not any(
                _same(signature, candidate)
                for signature in expected
                for candidate in candidates
            ):
                raise CallbackAuthError("Plivo V3 signature does not match")
            return

        v2_headers = (HEADER_V2, HEADER_MA_V2, HEADER_V2_NONCE)
        if any(callback.header(name) for name in v2_headers):
            if not self.allow_v2_signatures:
                raise CallbackAuthError(
                    "Plivo V2 signature refused: it covers neither the body nor a time; "
                    "set PLIVO_ALLOW_V2_SIGNATURES=true to accept it"
                )
            nonce = callback.header(HEADER_V2_NONCE)
            if not nonce:
                raise CallbackAuthError("Plivo V2 signature without its nonce")
            candidates = [
                callback.header(name).strip()
                for name in (HEADER_V2, HEADER_MA_V2)
                if callback.header(name).strip()
            ]
            if not candidates:
                raise CallbackAuthError("Plivo V2 nonce without a signature")
            expected = self._v2_signature(callback.url, nonce)
            if not any(_same(expected, candidate) for candidate in candidates):
                raise CallbackAuthError("Plivo V2 signature does not match")
            return

        if not settings.SMS_WEBHOOK_ALLOW_UNSIGNED:
            raise CallbackAuthError("missing Plivo signature headers")

    def _v2_signature(self, url: str, nonce: str) -> str:
        # V2 signs scheme://netloc/path + nonce: no query string, no body.
        return self._sign(_url_without_query(url) + nonce)

    def _v3_signatures(self, callback: Callback, nonce: str) -> list[str]:
        """The V3 signature over the signed string as UTF-8, and as Plivo's own SDK
        computes it for non-ASCII text (UTF-8 bytes read back as Latin-1, then encoded
        as UTF-8 again). Which of the two Plivo's servers sign is not documented; both
        are keyed by our token, so accepting either admits nothing forged."""
        signed = self._v3_string(callback, nonce)
        signatures = [self._sign(signed)]
        if not signed.isascii():
            signatures.append(self._sign(signed.encode("utf-8").decode("latin-1")))
        return signatures

    def _v3_string(self, callback: Callback, nonce: str) -> str:
        base = _url_without_query(callback.url)
        query = parse_qs(urlsplit(callback.url).query, keep_blank_values=True)
        if callback.method.upper() == "GET":
            # GET: Plivo's parameters are in the URL query, next to our own.
            signed = f"{base}?{_sorted_query(query)}" if query else base
        else:
            params = _signed_form(callback)
            if not params:
                signed = f"{base}?{_sorted_query(query)}" if query else base
            else:
                prefix = f"{_sorted_query(query)}." if query else ""
                joined = "".join(
                    key + value
                    for key in sorted(params)
                    for value in sorted(params[key])
                )
                signed = f"{base}?{prefix}{joined}"
        return f"{signed}.{nonce}"

    def _sign(self, message: str) -> str:
        digest = hmac.new(
            self.auth_token.encode(), message.encode(), hashlib.sha256
        ).digest()
        return base64.b64encode(digest).decode("ascii")

    def parse_status_callback(self, callback: Callback) -> list[StatusEvent]:
        """One StatusEvent from a status callback; ``reference`` is our ``ref``."""
        params = _callback_params(callback)
        message_uuid = params.get("MessageUUID", "").strip()
        raw_status = params.get("Status", "").strip()
        missing = [
            name
            for name, value in (("MessageUUID", message_uuid), ("Status", raw_status))
            if not value
        ]
        if missing:
            raise CallbackParseError(
                f"Plivo status callback lacks {', '.join(missing)}"
            )
        error_code = params.get("ErrorCode", "").strip()
        if not error_code.strip("0"):
            # Blank, or "000" (success in the message detail record).
            error_code = ""
        units = params.get("Units", "").strip()
        return [
            StatusEvent(
                status=STATUS_MAP.get(raw_status.lower(), DeliveryStatus.UNKNOWN),
                raw_status=raw_status,
                provider_message_id=message_uuid,
                reference=callback.query.get("ref", ""),
                recipient=_e164(params.get("To", "")),
                error_code=error_code,
                error_reason=ERROR_REASONS.get(error_code, ""),
                price=_price(params),
                # Plivo bills most accounts in USD but India-registered ones in INR,
                # and the callback does not say which: leave the currency unknown.
                currency="",
                segments=int(units) if units.isdigit() else None,
                occurred_at=_occurred_at(params),
                opt_out_signal=error_code == OPT_OUT_ERROR_CODE,
                payload=dict(params),
            )
        ]

    def parse_inbound_callback(self, callback: Callback) -> list[InboundSms]:
        """The one message of an inbound (MO) callback."""
        params = _callback_params(callback)
        sender = params.get("From", "").strip()
        if not sender:
            raise CallbackParseError("Plivo inbound callback lacks From")
        intent = params.get("MessageIntent", "").strip().lower()
        return [
            InboundSms(
                from_number=_e164(sender),
                to_number=_e164(params.get("To", "")),
                # MMS carries its text in Body.
                text=params.get("Text") or params.get("Body", ""),
                provider_message_id=params.get("MessageUUID", "").strip(),
                keyword_hint=intent if intent in KEYWORD_INTENTS else "",
                payload=dict(params),
            )
        ]


# --- Helpers -------------------------------------------------------------------------


MAX_QUEUE_SECONDS = 3 * 60 * 60
"""Plivo expires what is still queued after 3 hours by itself (error 420)."""


def _message_expiry(expires_at: datetime | None) -> int | None:
    """Seconds until ``expires_at`` as ``message_expiry``; None (Plivo's own 3-hour
    queue limit, which is stricter) for a later deadline or none."""
    if expires_at is None:
        return None
    seconds = int((expires_at - datetime.now(UTC)).total_seconds())
    if seconds >= MAX_QUEUE_SECONDS:
        return None
    return max(seconds, 1)


def _plivo_number(number: str) -> str | None:
    """Our E.164 number as Plivo's digits-only form, or None if it is not one."""
    digits = _PLIVO_STRIPPED.sub("", number)
    return digits if digits.isdigit() and digits.isascii() else None


def _plivo_source(sender: str) -> str:
    """A sender number without "+"; an alphanumeric sender ID unchanged."""
    return _plivo_number(sender) or sender.strip()


def _e164(value: str) -> str:
    """A number from a callback with "+"; short codes and sender IDs as received.

    E.164 numbers have at least seven digits with their country code; short codes
    have fewer, and must not pass for international numbers.
    """
    value = value.strip()
    digits = _PLIVO_STRIPPED.sub("", value)
    if digits.isdigit() and digits.isascii() and len(digits) >= 7:
        return f"+{digits}"
    return value


def _failed(message: OutboundSms, error: SendError) -> SendResult:
    return SendResult(reference=message.reference, to=message.to, error=error)


def _as_list(value: object) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def _http_error(response) -> SendError:
    """Classify a Plivo error answer (``{"api_id": ..., "error": ...}``).

    Plivo's statuses mean what HTTP says: 400 a bad parameter, 401 bad credentials,
    403 no permission for the destination's country, 429 too many requests.
    """
    error = json_object(response).get("error")
    reason = error if isinstance(error, str) else ""
    if isinstance(error, Mapping):
        reason = "; ".join(f"{key}: {value}" for key, value in error.items())
    return classify_status(response, reason=reason or body_excerpt(response))


def _same(expected: str, candidate: str) -> bool:
    return hmac.compare_digest(expected.encode(), candidate.encode("utf-8", "replace"))


def _url_without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _sorted_query(params: Mapping[str, list[str]]) -> str:
    """Plivo V3's rendering of query parameters: k=v by sorted key, then value."""
    return "&".join(
        f"{key}={value}" for key in sorted(params) for value in sorted(params[key])
    )


def _content_type(callback: Callback) -> str:
    return callback.content_type.split(";", 1)[0].strip().lower()


def _signed_form(callback: Callback) -> dict[str, list[str]]:
    """All form values of a POST body (repeats kept), as V3 signs them."""
    if not callback.body:
        return {}
    if _content_type(callback) != FORM_CONTENT_TYPE:
        raise CallbackAuthError("Plivo V3 signs form parameters; body is not a form")
    try:
        text = callback.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CallbackAuthError("form body is not UTF-8") from exc
    return parse_qs(text, keep_blank_values=True)


def _callback_params(callback: Callback) -> dict[str, str]:
    """Plivo's parameters: the query for GET, the form body for POST."""
    if callback.method.upper() == "GET":
        return dict(callback.query)
    if _content_type(callback) != FORM_CONTENT_TYPE:
        raise CallbackParseError(
            f"Plivo callbacks are form-encoded, got {callback.content_type or 'no content type'!r}"
        )
    try:
        return dict(callback.form)
    except UnicodeDecodeError as exc:
        raise CallbackParseError(f"form body is not UTF-8: {exc}") from exc


def _decimal(value: str | None) -> Decimal | None:
    if not value or not value.strip():
        return None
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _price(params: Mapping[str, str]) -> Decimal | None:
    """TotalAmount, or TotalRate (per unit) times Units when the total is missing."""
    amount = _decimal(params.get("TotalAmount"))
    if amount is not None:
        return amount
    rate = _decimal(params.get("TotalRate"))
    units = params.get("Units", "").strip()
    if rate is not None and units.isdigit():
        return rate * int(units)
    return rate


def _occurred_at(params: Mapping[str, str]) -> datetime | None:
    """The latest timestamp the callback carries, as an aware UTC datetime."""
    for name in ("DeliveryReportTime", "SentTime", "QueuedTime", "MessageTime"):
        value = params.get(name, "").strip()
        if not value:
            continue
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            # A bad timestamp is no reason to refuse (and lose) the status itself.
            logger.debug("Ignoring unparsable Plivo %s %r", name, value)
            continue
        # Plivo documents "YYYY-mm-dd HH:MM:SS.ffffff" with no offset: read it as UTC.
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    return None
