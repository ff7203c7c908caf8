"""Limits on what a contact may carry."""

import json
from typing import Any

from django.core.exceptions import ValidationError

MAX_ATTRIBUTES_BYTES = 4096
"""A contact's attributes, as compact UTF-8 JSON, at most this many bytes."""
MAX_ATTRIBUTE_KEYS = 50
"""A contact has at most this many attributes."""


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
