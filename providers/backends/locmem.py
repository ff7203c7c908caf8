"""In-memory SMS backend for tests, like ``django.core.mail.backends.locmem``.

Each accepted message is appended to the module-level ``outbox`` list (the root
conftest's ``sms_outbox`` fixture clears it for every test) and gets the id
``locmem-<n>``. Nothing leaves the process.

To exercise retry and error handling, ``fail_next(error, count)`` makes the next
``count`` messages fail with ``error`` instead of being sent. A number that is not
E.164 with a leading "+" is refused as a permanent ``invalid_number`` error, as a vendor
would, so callers that forget to normalise numbers fail in tests.

Callbacks use a JSON format of this backend's own, signed with a key made fresh for
each process (so nobody outside the process can forge one, even if the ``locmem``
alias is reachable in production). Build them with ``status_callback()`` and
``inbound_callback()``:

- status: ``{"reference": ..., "provider_message_id": ..., "status": "delivered",
  "recipient": "+1...", "error_code": "", "error_reason": ""}``, or a list of these.
  ``status`` is one of ``DeliveryStatus``'s values; anything else becomes UNKNOWN.
- inbound: ``{"from": "+1...", "to": "+1...", "text": "STOP", "id": "..."}``, or a
  list of these.

Headers: ``X-Locmem-Timestamp`` (unix seconds) and ``X-Locmem-Signature``, the hex
HMAC-SHA256 of ``"{timestamp}.{body}"``.
"""

import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Sequence

from django.conf import settings

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

outbox: list[OutboundSms] = []
"""Every message a locmem backend accepted, in order."""

_lock = threading.Lock()
_failures: deque[SendError] = deque()
_ids = itertools.count(1)

SIGNING_KEY = secrets.token_bytes(32)
"""Signs this process's locmem callbacks; see status_callback()."""

TIMESTAMP_HEADER = "X-Locmem-Timestamp"
SIGNATURE_HEADER = "X-Locmem-Signature"

_E164 = re.compile(r"\+[1-9]\d{6,14}")


def fail_next(error: SendError, count: int = 1) -> None:
    """Make the next ``count`` messages sent through any locmem backend fail with ``error``.

    Failures are used up one per message, in order, across calls and instances; a
    failed message is not added to the outbox.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    with _lock:
        _failures.extend([error] * count)


def pending_failures() -> int:
    """How many queued failures fail_next() has left."""
    with _lock:
        return len(_failures)


def reset() -> None:
    """Empty the outbox, drop queued failures and restart ids at ``locmem-1``."""
    global _ids
    with _lock:
        outbox.clear()
        _failures.clear()
        _ids = itertools.count(1)


class SmsBackend(BaseSmsBackend):
    development_only = True
    max_recipients_per_request = 1000
    supports_per_recipient_text = True
    supports_client_reference = True
    default_rate = 1000.0
    replay_headers = (TIMESTAMP_HEADER, SIGNATURE_HEADER)

    def send_batch(self, messages: Sequence[OutboundSms]) -> list[SendResult]:
        results = []
        with _lock:
            for message in messages:
                if _failures:
                    error = _failures.popleft()
                elif not _E164.fullmatch(message.to):
                    error = SendError(
                        SendErrorKind.PERMANENT,
                        "invalid_number",
                        "the number is not E.164 with a leading +",
                    )
                else:
                    outbox.append(message)
                    results.append(
                        SendResult(
                            reference=message.reference,
                            to=message.to,
                            provider_message_id=f"locmem-{next(_ids)}",
                        )
                    )
                    continue
                results.append(
                    SendResult(reference=message.reference, to=message.to, error=error)
                )
        return results

    # --- Callbacks -----------------------------------------------------------------

    def verify_callback(self, callback: Callback) -> None:
        timestamp = callback.header(TIMESTAMP_HEADER)
        signature = callback.header(SIGNATURE_HEADER)
        if not timestamp and not signature:
            if settings.SMS_WEBHOOK_ALLOW_UNSIGNED:
                return
            raise CallbackAuthError("missing signature")
        if not timestamp or not signature:
            raise CallbackAuthError("incomplete signature headers")
        try:
            sent_at = int(timestamp)
        except ValueError:
            raise CallbackAuthError("malformed timestamp") from None
        expected = _sign(timestamp, callback.body)
        if not hmac.compare_digest(expected, signature.encode()):
            raise CallbackAuthError("bad signature")
        leeway = settings.SMS_WEBHOOK_CLOCK_SKEW
        age = time.time() - sent_at
        if age > settings.SMS_WEBHOOK_MAX_AGE + leeway or age < -leeway:
            raise CallbackAuthError("stale signature")

    def parse_status_callback(self, callback: Callback) -> list[StatusEvent]:
        events = []
        for item in _items(callback):
            raw_status = _field(item, "status", required=True)
            reference = _field(item, "reference")
            provider_message_id = _field(item, "provider_message_id")
            if not reference and not provider_message_id:
                raise CallbackParseError(
                    "status callback needs a reference or a provider_message_id"
                )
            try:
                status = DeliveryStatus(raw_status)
            except ValueError:
                status = DeliveryStatus.UNKNOWN
            events.append(
                StatusEvent(
                    status=status,
                    raw_status=raw_status,
                    provider_message_id=provider_message_id,
                    reference=reference,
                    recipient=_field(item, "recipient"),
                    error_code=_field(item, "error_code"),
                    error_reason=_field(item, "error_reason"),
                    payload=item,
                )
            )
        return events

    def parse_inbound_callback(self, callback: Callback) -> list[InboundSms]:
        return [
            InboundSms(
                from_number=_field(item, "from", required=True),
                to_number=_field(item, "to", required=True),
                text=_field(item, "text", required=True, blank=True),
                provider_message_id=_field(item, "id"),
                payload=item,
            )
            for item in _items(callback)
        ]


# --- Building callbacks in tests -----------------------------------------------------


def status_callback(
    *,
    reference: str = "",
    provider_message_id: str = "",
    status: str = DeliveryStatus.DELIVERED,
    recipient: str = "",
    error_code: str = "",
    error_reason: str = "",
    alias: str = "locmem",
    timestamp: int | None = None,
) -> Callback:
    """A signed delivery report for one message, as a vendor would POST it."""
    payload = {
        "reference": reference,
        "provider_message_id": provider_message_id,
        "status": str(status),
        "recipient": recipient,
        "error_code": error_code,
        "error_reason": error_reason,
    }
    return signed_callback(payload, kind="status", alias=alias, timestamp=timestamp)


def inbound_callback(
    *,
    from_number: str,
    to_number: str,
    text: str,
    message_id: str = "",
    alias: str = "locmem",
    timestamp: int | None = None,
) -> Callback:
    """A signed inbound text, as a vendor would POST it."""
    payload = {"from": from_number, "to": to_number, "text": text, "id": message_id}
    return signed_callback(payload, kind="inbound", alias=alias, timestamp=timestamp)


def signed_callback(
    payload: object,
    *,
    kind: str,
    alias: str = "locmem",
    timestamp: int | None = None,
) -> Callback:
    """A POST of ``payload`` as JSON to our ``kind`` webhook, signed now (or at ``timestamp``)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return Callback(
        method="POST",
        url=f"{settings.PUBLIC_BASE_URL}/webhooks/{alias}/{kind}/",
        headers={
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: _sign(stamp, body).decode(),
        },
        body=body,
        content_type="application/json",
    )


def _sign(timestamp: str, body: bytes) -> bytes:
    message = timestamp.encode() + b"." + body
    return hmac.new(SIGNING_KEY, message, hashlib.sha256).hexdigest().encode()


def _items(callback: Callback) -> list[dict]:
    data = callback.json()
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(item, dict) for item in items):
        raise CallbackParseError(
            "body must be a JSON object or a non-empty list of them"
        )
    return items


def _field(
    item: dict, name: str, *, required: bool = False, blank: bool = False
) -> str:
    value = item.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise CallbackParseError(f"{name!r} must be a string")
    if required and (name not in item or (not value and not blank)):
        raise CallbackParseError(f"missing required field {name!r}")
    return value
