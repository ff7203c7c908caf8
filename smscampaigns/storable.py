"""Text the database can hold: PostgreSQL refuses NUL in text and JSON, and no
driver encodes an unpaired surrogate (which JSON's \\ud800 escapes can produce).

Input that carries them is the sender's error (a callback is refused with 400, an
imported row is an error of its own), never a 5xx or a lost batch.
"""

from collections.abc import Mapping
from typing import Any


def unstorable_text(value: Any) -> str:
    """What in ``value`` (text, or lists and mappings of it, keys included) no
    database column can hold, named for an error message; "" when nothing."""
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character"
        if any("\ud800" <= char <= "\udfff" for char in value):
            return "an unpaired surrogate character"
        return ""
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = unstorable_text(key) or unstorable_text(item)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for item in value:
            found = unstorable_text(item)
            if found:
                return found
    return ""


def storable(text: str) -> str:
    """``text`` with what the database refuses written out visibly instead (``\\x00``,
    ``\\ud800``), for reports and rejected-input logs."""
    if not unstorable_text(text):
        return text
    return (
        text.replace("\x00", "\\x00")
        .encode("utf-8", "backslashreplace")
        .decode("utf-8")
    )


def storable_bytes(data: bytes) -> str:
    """Raw bytes as text the database can hold: UTF-8 where it decodes, ``\\xNN``
    escapes for every other byte and for NUL. Nothing is dropped."""
    return storable(data.decode("utf-8", "backslashreplace"))
