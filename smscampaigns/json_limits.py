"""JSON with a nesting limit, for every body we parse (API requests, callbacks).

``json.loads`` raises RecursionError on ~100,000 nested brackets, and a value nested
hundreds deep passes the parser only to exhaust the stack of whatever walks it next.
:func:`loads` refuses both with :class:`JsonTooDeep` (a ValueError), so callers
answer 400 like for any malformed body.
"""

import json
from typing import Any

from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings

MAX_DEPTH = 32
"""Arrays and objects inside one another: no payload of ours needs more than ~5."""


class JsonTooDeep(ValueError):
    pass


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH, **kwargs: Any) -> Any:
    """``json.loads`` that raises JsonTooDeep past ``max_depth`` levels."""
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels.") from None
    check_depth(value, max_depth=max_depth)
    return value


def check_depth(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise JsonTooDeep if ``value`` nests lists and dicts past ``max_depth``.

    Iterative, so checking a deep value cannot itself overflow the stack.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels.")
        stack.extend((child, depth + 1) for child in children)


def _strict_constant(name: str) -> Any:
    raise ValueError(f"Out of range float values are not JSON compliant: {name!r}")


class LimitedJSONParser(JSONParser):
    """DRF's JSON parser with the nesting limit: too deep is a 400, never a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            text = stream.read().decode(encoding)
            strict = (
                {"parse_constant": _strict_constant} if api_settings.STRICT_JSON else {}
            )
            return loads(text, **strict)
        except ValueError as exc:  # UnicodeDecodeError and JsonTooDeep included
            raise ParseError(f"JSON parse error - {exc}") from exc


class PayloadTooLarge(APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class LargeJSONParser(BaseParser):
    """JSON for one endpoint that needs more than DATA_UPLOAD_MAX_MEMORY_SIZE (the
    10,000-record contact import), up to ``max_bytes``.

    Not a JSONParser subclass on purpose: DRF reads those through ``request.body``,
    which enforces the global cap; this one reads the stream itself, bounded.
    """

    media_type = "application/json"
    renderer_class = JSONRenderer

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read(self.max_bytes + 1)
        if len(body) > self.max_bytes:
            raise PayloadTooLarge(
                f"The request body is larger than {self.max_bytes:,} bytes."
            )
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            strict = (
                {"parse_constant": _strict_constant} if api_settings.STRICT_JSON else {}
            )
            return loads(body.decode(encoding), **strict)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
