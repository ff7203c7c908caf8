"""SMS backend that writes each message to a stream (stdout by default) instead of sending.

For local development, like ``django.core.mail.backends.console``. Every message is
accepted and gets a generated id. Phone numbers are masked unless the ``mask_numbers``
option is off, because stdout usually ends up in the same place as the logs.
"""

import sys
import threading
import uuid
from collections.abc import Sequence
from typing import TextIO

from ..encoding import analyze
from ..messages import OutboundSms, SendResult, mask_phone
from .base import BaseSmsBackend

SEPARATOR = "-" * 79


class SmsBackend(BaseSmsBackend):
    development_only = True
    max_recipients_per_request = 1000
    supports_per_recipient_text = True
    supports_client_reference = True
    default_rate = 1000.0

    def __init__(
        self,
        *,
        alias: str,
        stream: TextIO | None = None,
        mask_numbers: bool = True,
        **options: object,
    ) -> None:
        super().__init__(alias=alias, **options)
        self._stream = stream
        self.mask_numbers = mask_numbers
        self._lock = threading.RLock()

    @property
    def stream(self) -> TextIO:
        # Without a configured stream, look sys.stdout up on every write: get_provider()
        # keeps one instance per process, and sys.stdout may have been replaced since
        # (pytest's capture, a management command redirecting output).
        return self._stream if self._stream is not None else sys.stdout

    def send_batch(self, messages: Sequence[OutboundSms]) -> list[SendResult]:
        results = []
        with self._lock:
            stream = self.stream
            for message in messages:
                stream.write(self._format(message))
                stream.write(f"\n{SEPARATOR}\n")
                results.append(
                    SendResult(
                        reference=message.reference,
                        to=message.to,
                        provider_message_id=f"console-{uuid.uuid4().hex}",
                    )
                )
            stream.flush()
        return results

    def _format(self, message: OutboundSms) -> str:
        info = analyze(message.text)
        to = mask_phone(message.to) if self.mask_numbers else message.to
        encoding = f"{info.encoding} ({info.length} units, {info.segments} segment{'s' if info.segments != 1 else ''})"
        return (
            f"To: {to}\n"
            f"From: {message.sender or '(default sender)'}\n"
            f"Reference: {message.reference}\n"
            f"Encoding: {encoding}\n"
            f"\n{message.text}"
        )
