"""PostgreSQL array literals for the sending path's set-based statements.

Claims, hand-overs and recording pass a thousand ids (and texts) at a time as array
parameters. psycopg quotes a Python list element by element, which cost the sender
~20 ms of its main thread per thousand messages (bench/vendor_send.py throughput,
cProfile); the same array written as one literal and cast in SQL (``%s::bigint[]``)
costs ~2 ms and is a single string for the driver to quote.
"""

from collections.abc import Iterable


def int_array(values: Iterable[int]) -> str:
    """``{1,2,3}``: cast with ``::bigint[]`` or ``::int[]``."""
    return "{" + ",".join(str(int(value)) for value in values) + "}"


def text_array(values: Iterable[str]) -> str:
    """Every element double-quoted, its backslashes and quotes escaped (so commas,
    braces, spaces and the word NULL stay text): cast with ``::text[]``."""
    return "{" + ",".join(_quoted(value) for value in values) + "}"


def bool_array(values: Iterable[bool]) -> str:
    """``{t,f}``: cast with ``::boolean[]``."""
    return "{" + ",".join("t" if value else "f" for value in values) + "}"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
