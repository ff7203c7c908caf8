"""Limits on what a contact may carry."""

import json
import re
from typing import Any

from django.core.exceptions import ValidationError

MAX_ATTRIBUTES_BYTES = 4096
"""A contact's attributes, as compact UTF-8 JSON, at most this many bytes."""
MAX_ATTRIBUTE_KEYS = 50
"""A contact has at most this many attributes."""

_NON_WORD = re.compile(r"\W+")


def attribute_key(column: str) -> str:
    """The attribute a file's column fills: its name in lower case, runs of other
    characters as one underscore ("Shoe size" → "shoe_size", "City" → "city").

    The one rule for every import (the admin's wizard, the API's CSV) and for the
    composer's "did you mean" hint, so a column never becomes two attributes.
    """
    return _NON_WORD.sub("_", column.strip().lower()).strip("_")


def attributes_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a contact's attributes, or None if it can.

    Attributes are read into memory for every message sent (personalization), so
    a few large contacts would swell every sending worker.
    """
    if not isinstance(value, dict):
        return f"Attributes must be a JSON object, not {type(value).__name__}."
    if len(value) > MAX_ATTRIBUTE_KEYS:
        return (
            f"A contact can have at most {MAX_ATTRIBUTE_KEYS} attributes "
            f"({len(value)} given)."
        )
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_ATTRIBUTES_BYTES:
        return (
            f"A contact's attributes can take at most {MAX_ATTRIBUTES_BYTES:,} bytes "
            f"as JSON ({size:,} given)."
        )
    return None


def validate_attributes(value: Any) -> None:
    problem = attributes_problem(value)
    if problem is not None:
        raise ValidationError(problem, code="attributes_too_large")
