"""JSON from outside (vendor callbacks) parsed with a nesting limit.

``json.loads`` recurses once per level: 10^5 nested arrays end in a RecursionError,
which nothing upstream expects (a 500), and a few hundred levels that do parse make
every later walk of the value (storing it, logging it) recurse as deep again. No
vendor callback nests more than a handful of levels.
"""

import json
from typing import Any

MAX_DEPTH = 64
"""Levels of arrays and objects accepted by default."""


class JSONTooDeep(ValueError):
    """The document nests arrays and objects deeper than allowed."""


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads``, raising JSONTooDeep (a ValueError) past ``max_depth`` levels."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels") from None
    if _deeper_than(value, max_depth):
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels")
    return value


def _deeper_than(value: Any, max_depth: int) -> bool:
    # Iterative, so checking a deep value cannot itself hit the recursion limit.
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
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
