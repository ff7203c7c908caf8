"""SMS backend for the Sinch SMS REST API ("XMS" batches), over plain ``requests``.

Options (``SMS_PROVIDERS["sinch"]["OPTIONS"]``):

=======================  ================================  ===========================
option                   environment variable              meaning
=======================  ================================  ===========================
``service_plan_id``      SINCH_SERVICE_PLAN_ID (required)  service plan in the API path
``api_token``            SINCH_API_TOKEN (required)        Bearer token of the plan
``number``               SINCH_NUMBER (required)           default sender (``from``)
``api_url``              SINCH_API_URL                     region host, default
                                                           https://us.sms.api.sinch.com
``webhook_secret``       SINCH_WEBHOOK_SECRET              HMAC secret for callbacks
``callback_username``    SINCH_CALLBACK_USERNAME           HTTP Basic credentials Sinch
``callback_password``    SINCH_CALLBACK_PASSWORD           sends with callbacks
``rate``                 SINCH_RATE                        messages/s of the plan
=======================  ================================  ===========================

Sending: one ``POST {api_url}/xms/v1/{service_plan_id}/batches`` per batch of up to
1000 recipients, over the shared HTTP layer (``http.HttpClient``: pooled keep-alive
connections, no transport retries; the ``sinch`` SDK would retry 429s by itself). Different texts in one batch go out as a ``${text}`` body with
per-recipient ``parameters``. The batch ``id`` is every recipient's provider message id:
Sinch's delivery reports name the batch and the recipient.

Callbacks: Sinch posts every callback type (delivery reports and inbound messages) as
JSON to one URL; ``callback_type()`` tells the webhook view which parser to call.
Sinch leaves callbacks unsigned unless the account manager enables HMAC signing
(``webhook_secret``) or Basic credentials on the callback URL (``callback_username`` /
``callback_password``). With neither configured, callbacks count as unsigned.
"""

import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

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
)
from .base import BaseSmsBackend
from .http import (
    HttpClient,
    SendFailed,
    body_excerpt,
    classify_status,
    json_body,
    json_object,
    mask_numbers,
)

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://us.sms.api.sinch.com"

# (connect, read) seconds. Sinch answers a batch once it is queued, not sent, so even
# 1000 recipients come back quickly; past this the batch is "maybe sent".
TIMEOUT = (5.0, 30.0)

# The placeholder that carries the part of a batch's texts that differs per recipient.
TEXT_PARAMETER = "part"

MAX_EXPIRY = timedelta(days=3)
"""``expire_at``: "Default and max is 3 days after send_at" (SMS API, Batches)."""

MAX_PARAMETER_LENGTH = 160
"""Characters one parameter value may have (Sinch SMS guide, "Parameterization":
values up to 160 characters). Texts whose differing part is longer go out as one
batch per text instead."""

SIGNATURE_HEADER = "x-sinch-webhook-signature"
NONCE_HEADER = "x-sinch-webhook-signature-nonce"
TIMESTAMP_HEADER = "x-sinch-webhook-signature-timestamp"
ALGORITHM_HEADER = "x-sinch-webhook-signature-algorithm"
SIGNATURE_HEADERS = (SIGNATURE_HEADER, NONCE_HEADER, TIMESTAMP_HEADER)

RECIPIENT_REPORT = "recipient_delivery_report_sms"
BATCH_REPORT = "delivery_report_sms"
INBOUND_TEXT = "mo_text"

# Sinch's statuses, compared lower-cased: the wire capitalises them, the SDKs upper-case.
# What each means is Sinch's "Delivery report statuses" table
# (https://developers.sinch.com/docs/sms/api-reference/sms/tag/Delivery-reports/).
STATUS_MAP = {
    "queued": DeliveryStatus.SUBMITTED,  # intermediate: queued within Sinch
    "dispatched": DeliveryStatus.SENT,  # intermediate: accepted by the SMSC
    "delivered": DeliveryStatus.DELIVERED,
    "failed": DeliveryStatus.UNDELIVERED,  # final: failed to be delivered
    # Final, and before reaching the SMSC: nothing went out ("failed", which
    # "Retry failed" sends again; see RESENDABLE_ABORTS for the automatic retry).
    "aborted": DeliveryStatus.FAILED,
    "cancelled": DeliveryStatus.FAILED,
    "rejected": DeliveryStatus.REJECTED,  # final: rejected by the SMSC
    "expired": DeliveryStatus.EXPIRED,  # final: expired before delivery to the SMSC
    # Final: "deleted by a remote SMSC ... an invalid MSISDN or opted out
    # subscriber". The report does not say which, so it is not taken for an opt-out:
    # a consent withdrawal is recorded only when the person or a vendor says so.
    "deleted": DeliveryStatus.UNDELIVERED,
    # Final: "delivered to the SMSC but no Delivery Receipt has been received or a
    # Delivery Receipt that couldn't be interpreted was received".
    "unknown": DeliveryStatus.UNCONFIRMED,
}

PROGRESS_CODES = frozenset({0, 400, 401})
"""Codes that report progress, not an error: 0 comes with "Delivered", 400 is
"Queued", 401 "Dispatched" (Sinch's delivery report error codes table)."""

NOT_RESENDABLE_ABORTS = frozenset({405, 410, 411, 412, 413})
"""Aborts the same batch would meet again (unmatched parameter, unmatched default
originator, too many parts, unprovisioned region, account blocked or out of
credit): the message is left "failed" for an operator instead of being retried.
Every other abort (402 unroutable, 403 internal error, 404 "temporary delivery
failure", 406 internal expiry, 408 internal reject, or no code) never reached the
SMSC and is sent again automatically."""

# Sinch's own delivery report codes; other codes are the operators' SMPP codes, which
# Sinch does not name.
REPORT_CODES = {
    400: "Queued",
    401: "Dispatched",
    402: "Message unroutable",
    403: "Internal error",
    404: "Temporary delivery failure",
    405: "Unmatched parameter",
    406: "Internal expiry",
    407: "Cancelled",
    408: "Internal reject",
    410: "Unmatched default originator",
    411: "Exceeded parts limit",
    412: "Unprovisioned region",
    413: "Blocked (account blocked or out of credit)",
}

# E.164 numbers have at least 7 digits with the country code; anything shorter that
# Sinch names as our number is a short code and keeps its form.
MIN_MSISDN_DIGITS = 7


def _now() -> float:
    """The clock signatures are checked against (tests replace it)."""
    return time.time()


def to_sinch_number(number: str) -> str:
    """Our "+E.164" as Sinch's MSISDN (digits only); sender IDs pass unchanged."""
    digits = number.removeprefix("+")
    return digits if digits.isdigit() else number


def from_sinch_number(value: str) -> str:
    """A Sinch MSISDN as "+E.164"; short codes and sender IDs as received."""
    value = value.strip()
    digits = value.removeprefix("+")
    if digits.isdigit() and len(digits) >= MIN_MSISDN_DIGITS:
        return f"+{digits}"
    return value


class SmsBackend(BaseSmsBackend):
    """Sinch SMS REST API ("XMS") with service-plan credentials."""

    max_recipients_per_request = 1000
    supports_per_recipient_text = True
    supports_client_reference = True
    """Per batch: ``client_reference`` names the batch's first message."""
    supports_callback_url = True
    default_rate = 10.0
    # Basic auth sends the same credentials every time: nothing to remember there.
    replay_headers = SIGNATURE_HEADERS

    # "body ... max 2000 characters" (SMS API reference, Batches: send, issue 13
    # row 14; an older, 2022 spec said 1600).
    max_text_length = 2000
    text_limit_source = (
        "https://developers.sinch.com/docs/sms/api-reference/sms/batches (body)"
    )

    def __init__(
        self,
        *,
        alias: str,
        service_plan_id: str = "",
        api_token: str = "",
        number: str = "",
        api_url: str = DEFAULT_API_URL,
        webhook_secret: str = "",
        callback_username: str = "",
        callback_password: str = "",
        **options: Any,
    ) -> None:
        # A missing sender is not caught by Sinch at send time: the batch is accepted
        # and every message is aborted later (code 410), so insist on it up front.
        self.require(
            alias,
            SINCH_SERVICE_PLAN_ID=service_plan_id,
            SINCH_API_TOKEN=api_token,
            SINCH_NUMBER=number,
        )
        if bool(callback_username) != bool(callback_password):
            raise ImproperlyConfigured(
                f"SMS provider {alias!r} needs both SINCH_CALLBACK_USERNAME and "
                "SINCH_CALLBACK_PASSWORD, or neither"
            )
        super().__init__(alias=alias, **options)
        self.service_plan_id = service_plan_id
        self.number = number
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self.webhook_secret = webhook_secret
        self.callback_username = callback_username
        self.callback_password = callback_password
        self.batches_url = f"{self.api_url}/xms/v1/{service_plan_id}/batches"
        self.http = HttpClient(
            vendor="Sinch",
            timeout=TIMEOUT,
            headers={"Authorization": f"Bearer {api_token}"},
        )

    # --- Sending -------------------------------------------------------------------

    def open_connections(self, count: int) -> int:
        return self.http.open_connections(self.batches_url, count)

    def send_batch(self, messages: Sequence[OutboundSms]) -> list[SendResult]:
        results: dict[int, SendResult] = {}
        groups = [
            part
            for group in self._request_groups(messages)
            for part in _template_groups(group)
        ]
        for group in groups:
            outcomes = self._send_request([message for _, message in group])
            results.update(
                (index, outcome)
                for (index, _), outcome in zip(group, outcomes, strict=True)
            )
        return [results[index] for index in range(len(messages))]

    def _request_groups(
        self, messages: Sequence[OutboundSms]
    ) -> list[list[tuple[int, OutboundSms]]]:
        """Split a batch into requests with one sender and each recipient at most once.

        ``from`` is per batch, and a recipient twice in one batch could get only one
        per-recipient text and could not be told apart in delivery reports (batch id +
        recipient), so a repeated recipient goes into the next request.
        """
        groups: list[tuple[tuple, set[str], list[tuple[int, OutboundSms]]]] = []
        for index, message in enumerate(messages):
            # expire_at is per batch too.
            sender = (message.sender or self.number, message.expires_at)
            fitting = next(
                (
                    candidate
                    for candidate in groups
                    if candidate[0] == sender and message.to not in candidate[1]
                ),
                None,
            )
            if fitting is None:
                fitting = (sender, set(), [])
                groups.append(fitting)
            fitting[1].add(message.to)
            fitting[2].append((index, message))
        return [group for _, _, group in groups]

    def build_payload(self, messages: Sequence[OutboundSms]) -> dict[str, Any]:
        """The JSON body of one batch: one sender, each recipient once."""
        first = messages[0]
        recipients = [to_sinch_number(message.to) for message in messages]
        payload: dict[str, Any] = {
            "from": to_sinch_number(first.sender or self.number),
            "to": recipients,
        }
        texts = [message.text for message in messages]
        if len(set(texts)) == 1:
            payload["body"] = first.text
        else:
            # Sinch's own personalisation: the text the recipients share, with
            # ${part} for what differs, and each recipient's part as a parameter
            # keyed by its MSISDN exactly as in "to". No "default" on purpose: a
            # recipient Sinch could not match then fails (code 405) instead of being
            # sent a text missing its part.
            template = _common_template(texts)
            if template is None:
                raise ValueError("texts of one batch must share a template")
            prefix, suffix, parts = template
            payload["body"] = f"{prefix}${{{TEXT_PARAMETER}}}{suffix}"
            payload["parameters"] = {
                TEXT_PARAMETER: dict(zip(recipients, parts, strict=True))
            }
        payload["type"] = "mt_text"
        if (
            first.expires_at is not None
            and first.expires_at - datetime.now(UTC) < MAX_EXPIRY
        ):
            # Sinch stops trying at expire_at (default and most: 3 days).
            payload["expire_at"] = (
                first.expires_at.astimezone(UTC).isoformat(timespec="milliseconds")
            ).replace("+00:00", "Z")
        payload["delivery_report"] = "per_recipient"
        # With HMAC signing, Sinch sends callbacks to the service plan's callback URL
        # and a per-batch callback_url cannot override it (sinch SDK README, "Sinch
        # events"): set that URL in the dashboard instead. Both of our URLs accept
        # every callback type, whichever Sinch uses.
        if not self.webhook_secret and (callback_url := self.status_callback_url()):
            payload["callback_url"] = callback_url
        # Sinch keeps one client_reference per batch; the first message's lets the
        # webhooks find the batch even before the batch id is stored.
        payload["client_reference"] = first.reference
        return payload

    def _send_request(self, messages: Sequence[OutboundSms]) -> list[SendResult]:
        payload = self.build_payload(messages)
        try:
            response = self.http.post_json(self.batches_url, payload)
        except SendFailed as failure:
            # A batch whose answer was lost may have been queued: its
            # client_reference lets the receipts find it.
            error = failure.error
        else:
            if response.ok:
                return self._accepted(messages, response)
            error = self._error_from_response(response)
        logger.warning(
            "Sinch batch of %d message(s) for provider %r failed: %s %s (%s)",
            len(messages),
            self.alias,
            error.code,
            mask_numbers(error.reason),
            error.kind,
        )
        return [
            SendResult(reference=message.reference, to=message.to, error=error)
            for message in messages
        ]

    def _accepted(
        self, messages: Sequence[OutboundSms], response: requests.Response
    ) -> list[SendResult]:
        batch_id = str(json_object(response).get("id") or "")
        if not batch_id:
            # Sinch took the batch (2xx), so reporting a failure would invite a
            # duplicate send; the client_reference in the receipts still finds it.
            logger.warning(
                "Sinch accepted a batch for provider %r without a batch id (HTTP %s)",
                self.alias,
                response.status_code,
            )
        return [
            SendResult(
                reference=message.reference, to=message.to, provider_message_id=batch_id
            )
            for message in messages
        ]

    def _error_from_response(self, response: requests.Response) -> SendError:
        code, reason = _error_detail(response)
        error = classify_status(response, code=code, reason=reason)
        if response.status_code == 404:
            # 404 on the batches endpoint: unknown service plan or wrong region.
            # No batch would pass until the settings are fixed.
            return SendError(SendErrorKind.MISCONFIGURED, error.code, error.reason)
        return error

    # --- Callbacks: authenticity -----------------------------------------------------

    def verify_callback(self, callback: Callback) -> None:
        if self.webhook_secret:
            self._verify_signature(callback)
        elif self.callback_username:
            self._verify_basic_auth(callback)
        elif not settings.SMS_WEBHOOK_ALLOW_UNSIGNED:
            raise CallbackAuthError(
                "Sinch callbacks cannot be verified: set SINCH_WEBHOOK_SECRET (HMAC "
                "signing) or SINCH_CALLBACK_USERNAME and SINCH_CALLBACK_PASSWORD "
                "(Basic auth on the callback URL), as enabled by your Sinch account "
                "manager"
            )

    def _verify_signature(self, callback: Callback) -> None:
        signature, nonce, timestamp = (callback.header(h) for h in SIGNATURE_HEADERS)
        if not (signature or nonce or timestamp):
            if settings.SMS_WEBHOOK_ALLOW_UNSIGNED:
                return
            raise CallbackAuthError("missing Sinch webhook signature")
        if not (signature and nonce and timestamp):
            raise CallbackAuthError("incomplete Sinch webhook signature headers")
        algorithm = callback.header(ALGORITHM_HEADER)
        # Sinch's SDKs implement SHA-256 only; refuse rather than guess another.
        if algorithm and algorithm.lower() != "hmacsha256":
            raise CallbackAuthError(f"unsupported signature algorithm {algorithm!r}")
        signed = b".".join([callback.body, nonce.encode(), timestamp.encode()])
        digest = hmac.new(self.webhook_secret.encode(), signed, hashlib.sha256)
        expected = base64.b64encode(digest.digest())
        if not hmac.compare_digest(expected, signature.strip().encode()):
            raise CallbackAuthError("Sinch webhook signature does not match")
        try:
            signed_at = int(timestamp)
        except ValueError:
            raise CallbackAuthError("malformed Sinch webhook timestamp") from None
        age = _now() - signed_at
        skew = settings.SMS_WEBHOOK_CLOCK_SKEW
        if age > self.webhook_max_age + skew:
            raise CallbackAuthError("stale Sinch webhook signature")
        if age < -skew:
            raise CallbackAuthError("Sinch webhook signature is from the future")

    def _verify_basic_auth(self, callback: Callback) -> None:
        authorization = callback.header("Authorization")
        if not authorization:
            if settings.SMS_WEBHOOK_ALLOW_UNSIGNED:
                return
            raise CallbackAuthError("missing Basic credentials")
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise CallbackAuthError("callback credentials are not Basic auth")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise CallbackAuthError("malformed Basic credentials") from None
        username, _, password = decoded.partition(b":")
        # Compare both parts every time, so timing says nothing about which was wrong.
        user_ok = hmac.compare_digest(username, self.callback_username.encode())
        password_ok = hmac.compare_digest(password, self.callback_password.encode())
        if not (user_ok and password_ok):
            raise CallbackAuthError("wrong Basic credentials")

    # --- Callbacks: content --------------------------------------------------------

    def callback_type(self, callback: Callback) -> str:
        """The callback's ``type``: "recipient_delivery_report_sms",
        "delivery_report_sms", "mo_text", ... (Sinch posts all kinds to one URL)."""
        return _callback_type(_json_object(callback))

    def callback_kind(self, callback: Callback, *, default: str = "status") -> str:
        """Which parser the callback needs: "status" or "inbound" (for the webhook
        views, which may have received it at either URL); ``default`` for types this
        backend does not know, whose parser then refuses them."""
        kind = self.callback_type(callback)
        if "delivery_report" in kind:
            return "status"
        if kind.startswith("mo_"):
            return "inbound"
        return default

    def parse_status_callback(self, callback: Callback) -> list[StatusEvent]:
        data = _json_object(callback)
        kind = _callback_type(data)
        if kind == RECIPIENT_REPORT:
            return [_recipient_report_event(data)]
        if kind == BATCH_REPORT:
            return _batch_report_events(data)
        raise CallbackParseError(f"not a Sinch delivery report (type {kind!r})")

    def parse_inbound_callback(self, callback: Callback) -> list[InboundSms]:
        data = _json_object(callback)
        kind = _callback_type(data)
        if kind != INBOUND_TEXT:
            raise CallbackParseError(f"not a Sinch inbound text (type {kind!r})")
        return [
            InboundSms(
                from_number=from_sinch_number(_required_str(data, "from")),
                to_number=from_sinch_number(_required_str(data, "to")),
                text=_required_str(data, "body", allow_empty=True),
                provider_message_id=_optional_str(data, "id"),
                received_at=_parse_time(data.get("received_at")),
                payload=data,
            )
        ]


# --- Helpers ---------------------------------------------------------------------------


def _common_template(texts: Sequence[str]) -> tuple[str, str, list[str]] | None:
    """(prefix, suffix, parts) such that each text is prefix + part + suffix, with
    every part within Sinch's parameter limit; None when no such split exists, or
    when the shared text holds "${", which Sinch would read as a placeholder."""
    first = texts[0]
    prefix_length = len(first)
    for text in texts[1:]:
        limit = min(prefix_length, len(text))
        common = 0
        while common < limit and text[common] == first[common]:
            common += 1
        prefix_length = common
    shortest = min(len(text) for text in texts)
    suffix_length = 0
    while suffix_length < shortest - prefix_length and all(
        text[-1 - suffix_length] == first[-1 - suffix_length] for text in texts
    ):
        suffix_length += 1
    prefix = first[:prefix_length]
    suffix = first[len(first) - suffix_length :] if suffix_length else ""
    parts = [text[prefix_length : len(text) - suffix_length] for text in texts]
    if any(len(part) > MAX_PARAMETER_LENGTH for part in parts):
        return None
    if "${" in prefix + suffix or prefix.endswith("$"):
        return None
    return prefix, suffix, parts


def _template_groups(
    group: list[tuple[int, OutboundSms]],
) -> list[list[tuple[int, OutboundSms]]]:
    """One request for the group when its texts share a template Sinch can fill in;
    otherwise one request per distinct text (identical texts need no parameters)."""
    texts = [message.text for _, message in group]
    if len(set(texts)) == 1 or _common_template(texts) is not None:
        return [group]
    by_text: dict[str, list[tuple[int, OutboundSms]]] = {}
    for item in group:
        by_text.setdefault(item[1].text, []).append(item)
    return list(by_text.values())


def _error_detail(response: requests.Response) -> tuple[str, str]:
    """The vendor's (code, text) from an error response, whatever its shape."""
    body = json_body(response)
    if isinstance(body, dict):
        # The SMS API's own shape: {"code": "...", "text": "..."}.
        if body.get("code") or body.get("text"):
            return (
                str(body.get("code") or response.status_code),
                str(body.get("text") or response.reason or ""),
            )
        # Sinch's gateway sometimes answers in Google's shape instead.
        error = body.get("error")
        if isinstance(error, dict):
            code = error.get("status") or error.get("code") or response.status_code
            return str(code), str(error.get("message") or response.reason or "")
    return str(response.status_code), body_excerpt(response) or str(
        response.reason or ""
    )


def _json_object(callback: Callback) -> dict[str, Any]:
    data = callback.json()
    if not isinstance(data, dict):
        raise CallbackParseError("Sinch callback body is not a JSON object")
    return data


def _callback_type(data: Mapping[str, Any]) -> str:
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        raise CallbackParseError("Sinch callback has no 'type'")
    return kind


def _required_str(
    data: Mapping[str, Any], key: str, *, allow_empty: bool = False
) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not (value or allow_empty):
        raise CallbackParseError(f"Sinch callback lacks {key!r}")
    return value


def _optional_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _parse_time(value: object) -> datetime | None:
    """An ISO-8601 time as an aware datetime; None when absent or unreadable.

    Times are extras: a receipt with an odd timestamp still carries its status.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _report_code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _status_event(
    *,
    raw_status: str,
    code: object,
    batch_id: str,
    recipient: str,
    reference: str,
    occurred_at: datetime | None = None,
    segments: int | None = None,
    payload: Mapping[str, Any],
) -> StatusEvent:
    number = _report_code(code)
    is_error = number is not None and number not in PROGRESS_CODES
    status = STATUS_MAP.get(raw_status.lower(), DeliveryStatus.UNKNOWN)
    return StatusEvent(
        status=status,
        raw_status=raw_status,
        provider_message_id=batch_id,
        reference=reference,
        recipient=from_sinch_number(recipient),
        error_code=str(number) if is_error else "",
        error_reason=_error_reason(raw_status, number)
        if is_error or raw_status.lower() == "deleted"
        else "",
        segments=segments,
        occurred_at=occurred_at,
        resend=raw_status.lower() == "aborted" and number not in NOT_RESENDABLE_ABORTS,
        payload=payload,
    )


def _error_reason(raw_status: str, number: int | None) -> str:
    if number in REPORT_CODES:
        return REPORT_CODES[number]
    if raw_status.lower() == "deleted":
        return "Deleted by the remote SMSC (invalid number or opted-out subscriber)"
    return ""


def _recipient_report_event(data: dict[str, Any]) -> StatusEvent:
    parts = data.get("number_of_message_parts")
    return _status_event(
        raw_status=_required_str(data, "status"),
        code=data.get("code"),
        batch_id=_required_str(data, "batch_id"),
        recipient=_required_str(data, "recipient"),
        reference=_optional_str(data, "client_reference"),
        # When the operator reported the status, else when Sinch wrote the report.
        occurred_at=_parse_time(data.get("operator_status_at"))
        or _parse_time(data.get("at")),
        segments=parts
        if isinstance(parts, int) and not isinstance(parts, bool)
        else None,
        payload=data,
    )


def _batch_report_events(data: dict[str, Any]) -> list[StatusEvent]:
    """One event per recipient named in a "full" batch report.

    A "summary" report only counts recipients per status: nothing to attribute.
    """
    batch_id = _required_str(data, "batch_id")
    reference = _optional_str(data, "client_reference")
    statuses = data.get("statuses")
    if not isinstance(statuses, list):
        raise CallbackParseError("Sinch batch report lacks 'statuses'")
    events = []
    for entry in statuses:
        if not isinstance(entry, dict):
            raise CallbackParseError("Sinch batch report has a malformed status entry")
        raw_status = _required_str(entry, "status")
        recipients = entry.get("recipients") or []
        if not isinstance(recipients, list) or not all(
            isinstance(recipient, str) and recipient for recipient in recipients
        ):
            raise CallbackParseError("Sinch batch report has malformed recipients")
        for recipient in recipients:
            events.append(
                _status_event(
                    raw_status=raw_status,
                    code=entry.get("code"),
                    batch_id=batch_id,
                    recipient=recipient,
                    reference=reference,
                    # Thousands of recipients may share one report: keep each
                    # event's payload to what concerns it.
                    payload={
                        "type": BATCH_REPORT,
                        "batch_id": batch_id,
                        "client_reference": reference,
                        "status": raw_status,
                        "code": entry.get("code"),
                        "recipient": recipient,
                    },
                )
            )
    return events
