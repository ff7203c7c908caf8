"""Plain data passed between the apps and the provider backends.

Nothing here knows Django models or a vendor's wire format: backends turn these into
requests and turn vendor callbacks into these.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from urllib.parse import parse_qs, urlsplit


def mask_phone(number: str) -> str:
    """A number fit for logs: country code and last two digits, "+14*******23".

    Full numbers are personal data and never go into logs.
    """
    if len(number) <= 5:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 5) + number[-2:]


class DeliveryStatus(StrEnum):
    """Our delivery statuses, as a vendor callback can report them (same values as Message.Status)."""

    SUBMITTED = "submitted"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    UNCONFIRMED = "unconfirmed"
    """Final: the carrier took the message but never confirmed its delivery (Sinch
    "Unknown": no delivery receipt, or one that could not be read)."""
    UNKNOWN = "unknown"
    """The vendor's status says nothing new (or is one we do not know): keep the current status."""


@dataclass(frozen=True, slots=True)
class OutboundSms:
    """One text to one recipient."""

    to: str
    """E.164 with the leading "+"."""
    text: str
    reference: str
    """Our client reference for this message (a UUID string), echoed back where the vendor allows."""
    sender: str = ""
    """Sender number or ID; empty means the backend's configured default."""
    expires_at: datetime | None = None
    """When the vendor should give up delivering it (the campaign's send-by time):
    Vonage ``ttl``, Sinch ``expire_at``, Plivo ``message_expiry``. None: the vendor's
    default."""


class SendErrorKind(StrEnum):
    """What a failed send means for the message: the closed set every backend picks
    from, and the only thing the send path reads (never a vendor's code string)."""

    THROTTLED = "throttled"
    """The vendor refused for now because we went too fast (429): nothing was sent.
    Slow down and send again."""
    NOT_SENT = "not_sent"
    """Nothing reached the vendor, or the vendor answered that it did not take the
    message (refused connection, DNS, TLS handshake, connect timeout, most 5xx):
    safe to send again later."""
    MAYBE_SENT = "maybe_sent"
    """The request left us and no usable answer came back (read timeout, connection
    dropped after the request was written, 504): the vendor may have it. Never sent
    again automatically: the message becomes "unknown" until a receipt settles it."""
    PERMANENT = "permanent"
    """The vendor refused this message for good (invalid number, text too long)."""
    MISCONFIGURED = "misconfigured"
    """Our settings are wrong (credentials refused, unknown account or endpoint): no
    message can go through until an operator fixes them. Nothing was sent."""


@dataclass(frozen=True, slots=True)
class SendError:
    kind: SendErrorKind
    """What the failure means; see SendErrorKind."""
    code: str
    """The vendor's error code or HTTP status, as text (for people, never for logic)."""
    reason: str
    retry_after: float | None = None
    """Seconds the vendor asked us to wait, when it said."""

    def __post_init__(self) -> None:
        # A typo'd or free-text kind would silently change what happens to the
        # message: refuse it where it is made.
        if not isinstance(self.kind, SendErrorKind):
            try:
                object.__setattr__(self, "kind", SendErrorKind(self.kind))
            except ValueError:
                raise ValueError(
                    f"SendError kind must be one of {', '.join(SendErrorKind)}, got {self.kind!r}"
                ) from None

    @property
    def retryable(self) -> bool:
        """Whether sending the message again later is safe and may succeed."""
        return self.kind in (SendErrorKind.THROTTLED, SendErrorKind.NOT_SENT)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one OutboundSms in a send call."""

    reference: str
    to: str
    provider_message_id: str = ""
    """The vendor's id for this message. For Sinch the batch id (receipts name batch + recipient).
    Empty when the vendor accepted a batch without saying which id is whose (Plivo bulk):
    the delivery receipt then names it."""
    error: SendError | None = None

    @property
    def accepted(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One delivery status a vendor reported for one message."""

    status: DeliveryStatus
    raw_status: str
    provider_message_id: str = ""
    reference: str = ""
    """Our client reference, when the vendor echoes it (Vonage client_ref, Sinch client_reference,
    Plivo: the ``ref`` query parameter of our callback URL)."""
    recipient: str = ""
    """E.164 with "+", when the callback names it."""
    error_code: str = ""
    error_reason: str = ""
    price: Decimal | None = None
    currency: str = ""
    segments: int | None = None
    occurred_at: datetime | None = None
    opt_out_signal: bool = False
    """The vendor says the recipient has opted out or blocked us (Plivo error 200)."""
    resend: bool = False
    """The vendor says the message never left it (status "failed": Sinch "Aborted",
    Vonage "undeliverable" or "rejected" as throttled), for a reason that may pass:
    nothing reached a carrier, so sending it again is safe and may succeed. The
    campaign side retries it under the same attempt limit and backoff as a send
    error."""
    payload: Mapping = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboundSms:
    """A text someone sent to one of our numbers."""

    from_number: str
    """E.164 with "+"."""
    to_number: str
    """Our number, E.164 with "+" (or the short code / sender ID as received)."""
    text: str
    provider_message_id: str = ""
    received_at: datetime | None = None
    keyword_hint: str = ""
    """The vendor's own keyword reading, lower case: "optout", "optin", "help" (Plivo
    MessageIntent) or the first word (Vonage sms.keyword); empty when none."""
    payload: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class Callback:
    """An HTTP request a vendor made to one of our webhook URLs, as received."""

    method: str
    url: str
    """The public URL the vendor called, scheme, host, port, path and query included."""
    headers: Mapping[str, str]
    """Header names in any case; see header()."""
    body: bytes = b""
    content_type: str = ""

    def header(self, name: str) -> str:
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return ""

    @cached_property
    def query(self) -> dict[str, str]:
        """Query parameters of the URL (last value wins), blank values kept."""
        return {
            k: v[-1]
            for k, v in parse_qs(
                urlsplit(self.url).query, keep_blank_values=True
            ).items()
        }

    @cached_property
    def form(self) -> dict[str, str]:
        """Form-encoded body parameters (last value wins), blank values kept."""
        text = self.body.decode("utf-8", errors="strict")
        return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}

    def json(self):
        """The body parsed as JSON; raises CallbackParseError when it is not."""
        from smscampaigns import json_limits

        from .exceptions import CallbackParseError

        try:
            return json_limits.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CallbackParseError(f"body is not valid JSON: {exc}") from exc
