"""Structured logs: ``LOG_FORMAT=json`` writes one JSON object a line.

Each line has ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, the
fields passed with ``extra=`` under their own names, and ``exception`` with the
traceback when there is one. Phone numbers are masked everywhere ("+14*******23", as
the providers log them), and fields whose name looks like a secret (token, password,
signature, authorization…) are replaced by "[redacted]".
"""

import json
import logging
import re
from datetime import UTC, datetime

from providers.backends.http import mask_numbers

# What every LogRecord carries: not an extra field.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_SECRET_NAME = re.compile(
    r"pass|secret|token|auth|signature|cookie|api_?key|credential", re.IGNORECASE
)
# Credentials written into a message by mistake ("Authorization: Bearer …").
_SECRET_VALUE = re.compile(r"\b(Bearer|Token|Basic)\s+[\w\-.~+/=]+", re.IGNORECASE)
REDACTED = "[redacted]"


def clean_text(text: str) -> str:
    """``text`` fit for a log line: numbers masked, credentials redacted."""
    return _SECRET_VALUE.sub(rf"\1 {REDACTED}", mask_numbers(text))


def _clean(name: str, value: object, depth: int = 0) -> object:
    if _SECRET_NAME.search(name):
        return REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth < 4 and isinstance(value, dict):
        return {str(k): _clean(str(k), v, depth + 1) for k, v in value.items()}
    if depth < 4 and isinstance(value, list | tuple | set | frozenset):
        return [_clean(name, v, depth + 1) for v in value]
    return clean_text(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for a log collector."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": clean_text(record.getMessage()),
        }
        for name, value in record.__dict__.items():
            if name not in _RECORD_FIELDS and not name.startswith("_"):
                entry.setdefault(name, _clean(name, value))
        if record.exc_info:
            entry["exception"] = clean_text(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = clean_text(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)
