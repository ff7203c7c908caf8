"""Replay protection: a signed callback is applied once, however often it arrives.

Two things are remembered for the provider's freshness window (``webhook_max_age``):

- the signature it carried (``backend.callback_signature``): a captured signature
  replayed within the window, even with another body where the scheme does not cover
  the body (Plivo V2), is recognised;
- the event itself (URL and body): a vendor that retries with a fresh signature, or a
  replay of a scheme without one (Sinch Basic auth), is recognised too.

Either one seen before means "already received": the vendor is answered 200 (so it
stops retrying) and nothing is applied again.

They live in the database, not the cache: the default cache is per process, so with
several gunicorn workers a replay sent to another worker would pass; and the row is
written in the same transaction that applies the event, so a callback whose apply
failed (503) is forgotten with it and the vendor's retry is applied, not dropped. The
primary key makes "seen?" and "remember" one atomic statement: two copies arriving
at once on two workers both try the insert and exactly one gets the row.
"""

import hashlib
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection
from django.utils import timezone

from providers.messages import Callback

from .models import SeenCallback


def callback_keys(*, alias: str, callback: Callback, signature: str) -> list[str]:
    """The digests that identify this callback: its signature (when it has one) and
    its event (method, path and query, body)."""
    parts = urlsplit(callback.url)
    event = b"\n".join(
        [
            b"event",
            alias.encode(),
            callback.method.upper().encode(),
            f"{parts.path}?{parts.query}".encode("utf-8", "surrogateescape"),
            callback.body,
        ]
    )
    keys = [_digest(event)]
    if signature:
        keys.append(
            _digest(f"signature\n{alias}\n{signature}".encode("utf-8", "replace"))
        )
    return keys


def callback_first_seen(*, keys: list[str], keep_for: int) -> bool:
    """Remember these digests until ``keep_for`` seconds (plus the clock skew) from now;
    True when none of them had been seen, False for a replay.

    Call it inside the transaction that applies the callback: if that rolls back, so
    does the memory of it.
    """
    sql, params = remember_sql(keys=keys, keep_for=keep_for)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = len(cursor.fetchall())
    return inserted == len(keys)


def remember_sql(*, keys: list[str], keep_for: int) -> tuple[str, list]:
    """The statement that remembers ``keys`` and returns a row for each one that was
    new (all of them: first seen), for callback_first_seen and for statements that
    remember and store a callback at once (webhooks.queue)."""
    expires = timezone.now() + timedelta(
        seconds=keep_for + settings.SMS_WEBHOOK_CLOCK_SKEW
    )
    table = connection.ops.quote_name(SeenCallback._meta.db_table)
    values = ", ".join(["(%s, %s)"] * len(keys))
    params = []
    for key in keys:
        params += [key, connection.ops.adapt_datetimefield_value(expires)]
    return (
        f"INSERT INTO {table} (digest, expires_at) VALUES {values} "
        "ON CONFLICT (digest) DO NOTHING RETURNING digest",
        params,
    )


def seen_callbacks_prune() -> int:
    """Forget what is past its window, in one statement; returns how many rows went."""
    deleted, _ = SeenCallback.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted


def _digest(data: bytes) -> str:
    # 128 bits: collisions are out of reach, and the key stays half the size.
    return hashlib.sha256(data).hexdigest()[:32]
