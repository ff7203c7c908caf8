"""One path for every provider callback, whether it came over HTTP or from the simulator."""

import dataclasses
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, transaction

from providers import get_provider
from providers.exceptions import CallbackAuthError, CallbackParseError
from providers.messages import Callback
from smscampaigns.storable import storable, storable_bytes, unstorable_text

from .models import RejectedCallback
from .queue import callback_enqueue, callback_items_apply, queued_mode
from .replay import callback_first_seen, callback_keys

logger = logging.getLogger(__name__)

# Aliases whose backends never call us back.
NO_CALLBACKS = {"console", "locmem"}


@dataclass(frozen=True)
class Outcome:
    status_code: int
    detail: str
    applied: int = 0
    queued: int = 0
    """Receipts or texts stored for the worker to apply (``SMS_WEBHOOK_APPLY = "queued"``)."""


def handle_callback(
    *, alias: str, kind: str, callback: Callback, queue: bool = True
) -> Outcome:
    """Verify, parse and apply one callback; say what the vendor should be answered.

    With ``SMS_WEBHOOK_APPLY = "queued"`` (and ``queue``) the parsed callback is stored
    and applied by the worker (webhooks.queue); the vendor is answered the same.

    2xx for anything understood (unknown statuses included, so the vendor stops
    retrying) and for a replay or retry of what was already applied (answered, not
    applied again), 4xx for what is forged or malformed (nothing changes), 5xx only
    when the event could not be stored, so the vendor tries again later.
    """
    if alias not in settings.SMS_PROVIDERS or alias in NO_CALLBACKS:
        return Outcome(404, f"no provider {alias!r} takes callbacks here")
    try:
        backend = get_provider(alias)
    except ImproperlyConfigured as exc:
        # Without credentials nothing can be verified; a 5xx makes the vendor retry
        # until the operator fixes the configuration.
        logger.error("%s callback refused: provider misconfigured: %s", alias, exc)
        return Outcome(503, "provider not configured")

    try:
        backend.verify_callback(callback)
    except CallbackAuthError as exc:
        logger.warning("%s %s callback rejected: %s", alias, kind, exc)
        return Outcome(401, f"signature check failed: {exc}")

    # Some vendors (Sinch) send every callback type to one URL: the body says which.
    routed = getattr(backend, "callback_kind", None)
    if routed is not None:
        try:
            kind = routed(callback, default=kind)
        except CallbackParseError as exc:
            return _reject(alias, kind, callback, str(exc))
    try:
        if kind == "status":
            events = backend.parse_status_callback(callback)
        else:
            messages = backend.parse_inbound_callback(callback)
    except CallbackParseError as exc:
        return _reject(alias, kind, callback, str(exc))
    parsed = events if kind == "status" else messages
    unstorable = unstorable_text([dataclasses.asdict(item) for item in parsed])
    if unstorable:
        # The database would refuse it (a 503 the vendor retries for ever): the
        # sender's error, kept for an operator like any malformed callback.
        return _reject(alias, kind, callback, f"callback contains {unstorable}")

    keys = callback_keys(
        alias=alias, callback=callback, signature=backend.callback_signature(callback)
    )
    if queue and queued_mode():
        # Stored with its replay record; the worker applies it (webhooks.queue).
        try:
            queued = callback_enqueue(
                alias=alias,
                kind=kind,
                items=parsed,
                keys=keys,
                keep_for=backend.webhook_max_age,
            )
        except DatabaseError:
            logger.exception("%s %s callback could not be stored", alias, kind)
            return Outcome(503, "could not store the event; try again later")
        if not queued:
            return _already_received(alias, kind)
        return Outcome(200, "ok", queued=len(parsed))
    try:
        # One transaction: the callback is remembered only if it is applied, so a
        # retry after a failed apply goes through, and a replay never does.
        with transaction.atomic():
            if not callback_first_seen(keys=keys, keep_for=backend.webhook_max_age):
                return _already_received(alias, kind)
            applied = callback_items_apply(alias=alias, kind=kind, items=parsed)
    except DatabaseError:
        logger.exception("%s %s callback could not be stored", alias, kind)
        return Outcome(503, "could not store the event; try again later")
    return Outcome(200, "ok", applied)


def _already_received(alias: str, kind: str) -> Outcome:
    logger.info(
        "%s %s callback already received: answered, not applied again", alias, kind
    )
    return Outcome(200, "already received", 0)


def _reject(alias: str, kind: str, callback: Callback, reason: str) -> Outcome:
    logger.warning("%s %s callback malformed: %s", alias, kind, reason)
    keep_rejected(alias=alias, kind=kind, callback=callback, reason=reason)
    return Outcome(400, reason)


def keep_rejected(*, alias: str, kind: str, callback: Callback, reason: str) -> None:
    """Keep a malformed callback's body for an operator to inspect (best effort)."""
    try:
        RejectedCallback.objects.create(
            provider=alias[:32],
            kind=kind[:16],
            reason=storable(reason)[:255],
            content_type=callback.content_type[:100],
            # Bytes-safe: invalid UTF-8 and NUL kept as \xNN escapes, nothing lost.
            body=storable_bytes(callback.body),
        )
    except DatabaseError:
        logger.exception("could not keep a rejected %s callback", alias)


def on_simulated_callback(
    *, alias: str, kind: str, callback: Callback, **kwargs
) -> Outcome:
    """Receiver for providers.signals.callback_received: the simulator's reports take the
    same path as a vendor's HTTP callback."""
    # In process, nothing waits for an answer: applied at once, as a test expects.
    outcome = handle_callback(alias=alias, kind=kind, callback=callback, queue=False)
    if outcome.status_code >= 300:
        raise RuntimeError(
            f"simulated {kind} callback refused: {outcome.status_code} {outcome.detail}"
        )
    return outcome
