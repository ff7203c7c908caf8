"""Base SMS provider backend."""

from collections.abc import Iterator, Sequence
from itertools import islice
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..encoding import analyze
from ..messages import (
    Callback,
    InboundSms,
    OutboundSms,
    SendError,
    SendErrorKind,
    SendResult,
    StatusEvent,
)


class BaseSmsBackend:
    """Base class for SMS provider backends.

    A backend is the only code that knows a vendor's wire format. Subclasses implement
    ``send_batch()``, and the callback methods the vendor supports. Options come from
    ``SMS_PROVIDERS[alias]["OPTIONS"]``: a subclass pops the ones it knows before calling
    ``super().__init__()``; anything left over is a configuration error.
    """

    max_recipients_per_request: int = 1
    """How many recipients one API request may carry."""
    supports_per_recipient_text: bool = False
    """Whether one request may carry a different text for each recipient."""
    supports_client_reference: bool = False
    """Whether the vendor echoes our per-message reference in its callbacks."""
    supports_callback_url: bool = False
    """Whether each send may name the URL its delivery receipts go to."""
    default_rate: float = 1.0
    """Messages per second the vendor allows an account by default."""
    replay_headers: tuple[str, ...] = ()
    """The callback headers that make one signed delivery unique (signature, nonce,
    timestamp, token): the webhook handler remembers their values for the freshness
    window, so a replayed signature is answered without being applied again."""

    max_text_length: int | None = None
    """Most characters one text may have: the vendor refuses a longer one (None: no
    limit the vendor documents)."""
    max_unicode_length: int | None = None
    """Most characters (UTF-16 units) of a text that needs UCS-2, when the vendor
    documents a tighter limit for those."""
    text_limit_source: str = ""
    """Where the vendor states its limits (shown with a refusal)."""

    def __init__(
        self,
        *,
        alias: str,
        rate: float | None = None,
        webhook_max_age: int | None = None,
        **options: object,
    ) -> None:
        if options:
            raise ImproperlyConfigured(
                f"Unknown OPTIONS for SMS_PROVIDERS[{alias!r}]: {', '.join(sorted(options))}"
            )
        self.alias = alias
        self.rate = float(rate) if rate else self.default_rate
        self.webhook_max_age = int(
            webhook_max_age if webhook_max_age else settings.SMS_WEBHOOK_MAX_AGE
        )
        """Seconds a callback signature stays acceptable, and how long accepted
        signatures and events are remembered (SMS_PROVIDERS[alias]["OPTIONS"]
        ``webhook_max_age``, else SMS_WEBHOOK_MAX_AGE)."""

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} alias={self.alias!r}>"

    # --- Sending -------------------------------------------------------------------

    def text_problem(self, text: str) -> str:
        """Why the vendor would refuse ``text`` for its length ("" when it would not),
        naming the limit: the one rule the composer, the API, ``send_campaign`` and
        the send path all apply."""
        name = type(self).vendor_name()
        if self.max_text_length is not None and len(text) > self.max_text_length:
            return (
                f"The text is {len(text)} characters; {name} accepts at most "
                f"{self.max_text_length}."
            )
        if self.max_unicode_length is not None:
            info = analyze(text)
            if not info.is_gsm and info.length > self.max_unicode_length:
                return (
                    f"The text is {info.length} characters of Unicode (it has "
                    f"characters outside GSM-7, e.g. {info.non_gsm_characters[0]!r}); "
                    f"{name} accepts at most {self.max_unicode_length} of those."
                )
        return ""

    @classmethod
    def vendor_name(cls) -> str:
        return cls.__module__.rsplit(".", 1)[-1].capitalize()

    def send_messages(self, messages: Sequence[OutboundSms]) -> list[SendResult]:
        """Send any number of messages, in as few requests as the vendor allows.

        Returns one result per message. Errors are results, not exceptions: one bad
        number or one failed request never loses the others' outcomes. A text too
        long for the vendor is refused here, before any request: in a bulk request
        it would make the vendor refuse every recipient's message with it.
        """
        results: dict[int, SendResult] = {}
        sendable: list[tuple[int, OutboundSms]] = []
        for index, message in enumerate(messages):
            if problem := self.text_problem(message.text):
                results[index] = SendResult(
                    reference=message.reference,
                    to=message.to,
                    error=SendError(SendErrorKind.PERMANENT, "text_too_long", problem),
                )
            else:
                sendable.append((index, message))
        if len(sendable) == len(messages):
            out: list[SendResult] = []
            for chunk in self.split_requests(messages):
                out.extend(self.send_batch(chunk))
            return out
        sent: list[SendResult] = []
        for chunk in self.split_requests([message for _, message in sendable]):
            sent.extend(self.send_batch(chunk))
        by_reference = {result.reference: result for result in sent}
        for index, message in sendable:
            results[index] = by_reference[message.reference]
        return [results[index] for index in range(len(messages))]

    def send_batch(self, messages: Sequence[OutboundSms]) -> list[SendResult]:
        """Send at most ``max_recipients_per_request`` messages in one request."""
        raise NotImplementedError(
            "subclasses of BaseSmsBackend must override send_batch()"
        )

    def open_connections(self, count: int) -> int:
        """Open up to ``count`` connections to the vendor before a send starts, so the
        first requests leave on time; return how many opened. Backends without a
        connection pool open none."""
        return 0

    def split_requests(
        self, messages: Sequence[OutboundSms]
    ) -> Iterator[list[OutboundSms]]:
        """Split messages into requests the vendor accepts: at most
        ``max_recipients_per_request`` each, one text per request where required."""
        size = self.max_recipients_per_request
        if self.supports_per_recipient_text or size == 1:
            groups = [list(messages)]
        else:
            # One text per request: group recipients by text (and sender), keeping order.
            by_key: dict[tuple[str, str], list[OutboundSms]] = {}
            for message in messages:
                by_key.setdefault((message.text, message.sender), []).append(message)
            groups = list(by_key.values())
        for group in groups:
            iterator = iter(group)
            while chunk := list(islice(iterator, size)):
                yield chunk

    # --- Callbacks -----------------------------------------------------------------

    def verify_callback(self, callback: Callback) -> None:
        """Raise CallbackAuthError unless the callback is authentic and fresh."""
        raise NotImplementedError(f"{type(self).__name__} cannot verify callbacks")

    def callback_signature(self, callback: Callback) -> str:
        """What identifies this signed delivery of a (verified) callback: the values
        of ``replay_headers``, or "" when it carries none (unsigned, Basic auth)."""
        values = [callback.header(name) for name in self.replay_headers]
        return "\n".join(values) if any(values) else ""

    def parse_status_callback(self, callback: Callback) -> list[StatusEvent]:
        """Delivery statuses in a (verified) callback; CallbackParseError if malformed."""
        raise NotImplementedError(
            f"{type(self).__name__} does not receive delivery reports"
        )

    def parse_inbound_callback(self, callback: Callback) -> list[InboundSms]:
        """Inbound messages in a (verified) callback; CallbackParseError if malformed."""
        raise NotImplementedError(
            f"{type(self).__name__} does not receive inbound messages"
        )

    def callback_answer(self, kind: str) -> tuple[str, bytes] | None:
        """(content type, body) to answer an accepted callback of ``kind`` with, when
        the vendor documents one; None for the webhook view's own JSON."""
        return None

    def status_callback_url(self, reference: str = "") -> str:
        """Our public URL for this provider's delivery receipts, or "" without PUBLIC_BASE_URL."""
        return self._webhook_url("status", reference)

    def inbound_callback_url(self) -> str:
        return self._webhook_url("inbound")

    def _webhook_url(self, kind: str, reference: str = "") -> str:
        base = settings.PUBLIC_BASE_URL
        if not base:
            return ""
        url = f"{base}/webhooks/{self.alias}/{kind}/"
        return f"{url}?{urlencode({'ref': reference})}" if reference else url

    # --- Helpers for subclasses ----------------------------------------------------

    @staticmethod
    def require(alias: str, **values: object) -> None:
        """Fail at start-up, naming the variables, when required credentials are missing."""
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise ImproperlyConfigured(
                f"SMS provider {alias!r} needs {', '.join(missing)} (set them in the environment or .env)"
            )
