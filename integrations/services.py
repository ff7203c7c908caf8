"""Publishing events (the outbox) and managing endpoints.

:func:`publish` is the one way an event is recorded. Each owner of a change calls it
inside the transaction that makes the change, so the event exists if and only if the
change was committed: a delivery receipt moving a message
(campaigns.sending.receipts), an inbound text stored (webhooks.services), an opt-out
or opt-in (contacts.services). The worker delivers later (integrations.delivery).
"""

import ipaddress
import json
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from .events import EventType
from .models import Delivery, Event, WebhookEndpoint, new_secret

Data = dict | Callable[[], dict]


#: Seconds a process trusts its answer to "does any active endpoint want this type?".
SUBSCRIBERS_TTL_SECONDS = 5.0
# (when it was read, on the monotonic clock; the event types some active endpoint wants)
_wanted: tuple[float, frozenset[str]] = (-SUBSCRIBERS_TTL_SECONDS, frozenset())


def subscribed(event_type: str) -> bool:
    """Whether an active endpoint wants ``event_type``.

    Read at most every :data:`SUBSCRIBERS_TTL_SECONDS` per process, and forgotten when
    this process saves or deletes an endpoint (:func:`subscribers_forget`). Most
    installations have no endpoint: every receipt, inbound text, opt-out and click
    then costs no query for its events. An endpoint saved in another process gets
    events from a few seconds after it was saved.
    """
    global _wanted
    read_at, wanted = _wanted
    now = time.monotonic()
    if now - read_at >= SUBSCRIBERS_TTL_SECONDS:
        wanted = frozenset(
            event
            for events in WebhookEndpoint.objects.filter(is_active=True).values_list(
                "events", flat=True
            )
            for event in events or ()
        )
        _wanted = (now, wanted)
    return event_type in wanted


def subscribers_forget(**kwargs) -> None:
    """Read the endpoints again at the next event (an endpoint was saved or deleted)."""
    global _wanted
    _wanted = (-SUBSCRIBERS_TTL_SECONDS, frozenset())


def _subscribers(event_type: str) -> list[int]:
    """The active endpoints that want ``event_type`` (a handful of rows: read whole
    instead of a JSON containment query, which SQLite lacks)."""
    if not subscribed(event_type):
        return []
    # The ids are read fresh, not kept with the types: an endpoint deleted in another
    # process would otherwise fail the caller's transaction (a STOP, a receipt).
    return [
        pk
        for pk, events in WebhookEndpoint.objects.filter(is_active=True).values_list(
            "pk", "events"
        )
        if event_type in (events or ())
    ]


def _body(event: Event, data: dict) -> str:
    return json.dumps(
        {
            "id": event.public_id,
            "type": event.type,
            "created": event.created_at,
            "data": data,
        },
        cls=DjangoJSONEncoder,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def publish(event_type: str, data: Data, *, at: datetime | None = None) -> Event | None:
    """Record an event for every active endpoint subscribed to it, in the caller's
    transaction. ``data`` may be a callable, built only when someone subscribes.

    Returns the event, or None when nobody listens (nothing is written).
    """
    return next(iter(publish_many(event_type, [data], at=at)), None)


def publish_many(
    event_type: str, datas: Iterable[Data], *, at: datetime | None = None
) -> list[Event]:
    """:func:`publish` for several events of one type, in order, in a few statements."""
    EventType(event_type)  # a typo is a bug, not an event nobody gets
    endpoints = _subscribers(event_type)
    if not endpoints:
        return []
    now = at or timezone.now()
    events = []
    for data in datas:
        event = Event(type=event_type, created_at=now)
        event.body = _body(event, data() if callable(data) else data)
        events.append(event)
    if not events:
        return []
    with transaction.atomic():
        events = Event.objects.bulk_create(events)
        Delivery.objects.bulk_create(
            Delivery(endpoint_id=endpoint, event=event, created_at=now)
            for event in events
            for endpoint in endpoints
        )
    return events


# --- Endpoints ------------------------------------------------------------------------


def validate_endpoint_url(url: str) -> None:
    """HTTPS to a public host. Plain HTTP and local or private addresses only with
    WEBHOOK_ALLOW_LOCAL_URLS (development, tests): the server would otherwise POST
    contact data in clear, or to services on its own network."""
    if settings.WEBHOOK_ALLOW_LOCAL_URLS:
        return
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ValidationError("Use an https:// URL.", code="insecure_url")
    host = (parts.hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise ValidationError(
            "The URL must point to a public host.", code="private_url"
        )
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    if not address.is_global:
        raise ValidationError(
            "The URL must point to a public address.", code="private_url"
        )


def validate_event_types(events: Iterable[str]) -> list[str]:
    chosen = set(events)
    unknown = sorted(chosen - set(EventType.values))
    if unknown:
        raise ValidationError(
            f"Unknown event type(s): {', '.join(unknown)}; choose from "
            f"{', '.join(EventType.values)}.",
            code="unknown_event",
        )
    if not chosen:
        raise ValidationError("Choose at least one event type.", code="no_events")
    return [event for event in EventType.values if event in chosen]


def endpoint_create(
    *,
    url: str,
    events: Iterable[str],
    description: str = "",
    is_active: bool = True,
    created_by=None,
    created_by_key=None,
) -> WebhookEndpoint:
    """A new endpoint with a new secret (``endpoint.secret``: show it once)."""
    validate_endpoint_url(url)
    return WebhookEndpoint.objects.create(
        url=url,
        events=validate_event_types(events),
        description=description,
        is_active=is_active,
        created_by=created_by,
        created_by_key=created_by_key,
    )


def endpoint_roll_secret(*, endpoint: WebhookEndpoint) -> str:
    """Give the endpoint a new secret at once; return it (show it once)."""
    endpoint.secret = new_secret()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret=endpoint.secret)
    return endpoint.secret


def deliveries_resend(*, deliveries: Iterable[Delivery]) -> int:
    """Send these deliveries' events again, after whatever their endpoints are
    waiting for. The originals stay in the log as they were."""
    now = timezone.now()
    created = Delivery.objects.bulk_create(
        Delivery(
            endpoint_id=delivery.endpoint_id,
            event_id=delivery.event_id,
            resend_of=delivery,
            created_at=now,
        )
        for delivery in deliveries
    )
    return len(created)


def delivery_log_prune(*, days: float | None = None, chunk: int = 10_000) -> int:
    """Forget deliveries settled (delivered or given up) more than ``days``
    (WEBHOOK_LOG_DAYS) ago, and the events left without any; a chunk at a time.
    Waiting deliveries are never pruned. Returns how many deliveries went."""
    days = settings.WEBHOOK_LOG_DAYS if days is None else days
    before = timezone.now() - timedelta(days=days)
    settled = Delivery.objects.filter(created_at__lt=before).exclude(
        status=Delivery.Status.PENDING
    )
    removed = 0
    while ids := list(settled.values_list("pk", flat=True)[:chunk]):
        removed += Delivery.objects.filter(pk__in=ids).delete()[0]
    orphans = Event.objects.filter(created_at__lt=before, deliveries__isnull=True)
    while ids := list(orphans.values_list("pk", flat=True)[:chunk]):
        Event.objects.filter(pk__in=ids).delete()
    return removed
