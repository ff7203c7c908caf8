"""The frequency cap: at most so many marketing messages per person in a period.

``SMS_FREQUENCY_CAP`` ("2 per 7 days"; "off" by default) applies to every campaign
whose own ``frequency_cap`` is empty; a campaign may name another cap or "off". A
campaign message beyond its cap is skipped when a dispatcher claims it (reason
"frequency cap", see campaigns.sending.claims), so a campaign scheduled for next
week is judged on what its recipients got by then, not at launch.

What counts toward the cap, the one definition the claims, the composer's count and
the segments' "no marketing message in the last N days" all use: a campaign message
(``Message.Kind.CAMPAIGN``, ad-hoc bulk sends included) to the same contact that was
handed to a provider within the period and went out (or may have: "unknown"), or
that is being handed over right now. Keyword replies, confirmations and test sends
are other kinds: they never count and are never capped.

Two campaigns claiming the same person at the same instant may both pass (each sees
the other's message not yet claimed); the cap is a courtesy limit, not a lock.
"""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError

#: The word that turns the cap off (a campaign's override, or the setting).
OFF = "off"

_UNITS = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}
_CAP = re.compile(
    r"^\s*(?P<count>\d+)\s*(?:per|/|every|in)\s*(?P<amount>\d+)?\s*"
    r"(?P<unit>minute|hour|day|week)s?\s*$",
    re.IGNORECASE,
)
#: Most messages a cap may allow: a larger number is surely a typo.
MAX_COUNT = 1000
#: Longest period a cap may span (the look-back of every claim).
MAX_PERIOD = timedelta(days=366)


@dataclass(frozen=True)
class FrequencyCap:
    count: int
    period: timedelta

    def __str__(self) -> str:
        unit, amount = "minute", self.period // _UNITS["minute"]
        for name in ("week", "day", "hour"):
            if self.period % _UNITS[name] == timedelta(0):
                unit, amount = name, self.period // _UNITS[name]
                break
        if amount == 1:
            return f"{self.count} per {unit}"
        return f"{self.count} per {amount} {unit}s"


@lru_cache(maxsize=64)
def parse_cap(text: str) -> FrequencyCap | None:
    """``"2 per 7 days"`` → FrequencyCap(2, 7 days); ``"off"`` or "" → None.

    Also "1 per day", "3 per 24 hours", "5 per 2 weeks", "2/7 days". Raises
    ValueError, saying what is accepted, for anything else.
    """
    text = (text or "").strip()
    if not text or text.lower() == OFF:
        return None
    match = _CAP.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a frequency cap: write it as “2 per 7 days” (a number "
            "of messages per a number of minutes, hours, days or weeks), or “off”."
        )
    count = int(match["count"])
    period = int(match["amount"] or 1) * _UNITS[match["unit"].lower()]
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(
            f"{text!r}: a cap allows from 1 to {MAX_COUNT} messages (use “off” for none)."
        )
    if not timedelta(0) < period <= MAX_PERIOD:
        raise ValueError(f"{text!r}: the period must be from 1 minute to 366 days.")
    return FrequencyCap(count, period)


def validate_frequency_cap(value: str) -> None:
    """A campaign's override: empty (the setting), "off", or a cap."""
    try:
        parse_cap(value)
    except ValueError as error:
        raise ValidationError(str(error), code="invalid_frequency_cap") from None


def default_cap() -> FrequencyCap | None:
    """``settings.SMS_FREQUENCY_CAP``, checked at start-up (smscampaigns.settings)."""
    return parse_cap(getattr(settings, "SMS_FREQUENCY_CAP", "") or "")


def effective_cap(override: str) -> FrequencyCap | None:
    """The cap a campaign with ``override`` as its ``frequency_cap`` applies."""
    if override and override.strip():
        return parse_cap(override)
    return default_cap()


def cap_description(override: str) -> str:
    """In words, for the admin's pages: "2 per 7 days (the default)", "Off"."""
    cap = effective_cap(override)
    text = str(cap) if cap else "Off"
    return text if override and override.strip() else f"{text} (the default)"


# --- What counts --------------------------------------------------------------------


def counted_statuses() -> list[str]:
    """Statuses of a campaign message that count once it was handed over: it went
    out, or may have (a crash left it unknown). Being handed over now counts too."""
    from .models import Message

    status = Message.Status
    return [
        status.SENDING,
        status.SUBMITTED,
        status.SENT,
        status.DELIVERED,
        status.UNCONFIRMED,
        status.UNKNOWN,
    ]


def counted_messages(*, since: datetime):
    """Campaign messages that count toward a cap whose period began at ``since``
    (all contacts; filter by contact)."""
    from django.db.models import Q

    from .models import Message

    return Message.objects.filter(
        Q(handed_at__gte=since) | Q(status=Message.Status.SENDING),
        kind=Message.Kind.CAMPAIGN,
        status__in=counted_statuses(),
    ).order_by()


def has_messages_q(*, since: datetime, at_least: int = 1):
    """A filter on contacts: those with ``at_least`` counted messages since
    ``since``. An EXISTS … LIMIT 1 OFFSET n-1 per contact on the contact index of
    messages: it stops at the n-th message instead of counting them all."""
    from django.db.models import Exists, OuterRef, Q

    messages = counted_messages(since=since).filter(contact=OuterRef("pk"))
    return Q(Exists(messages[at_least - 1 : at_least]))


def capped_q(cap: FrequencyCap, *, now: datetime):
    """Contacts a campaign with ``cap`` would skip if it texted them at ``now``."""
    return has_messages_q(since=now - cap.period, at_least=cap.count)


def capped_sql(*, message_alias: str, qn) -> str:
    """The claim's test, in SQL, of the message row ``message_alias``: is its
    contact at the cap? Two parameters: the start of the period, then the cap's
    count minus one (the OFFSET). Same rule as :func:`counted_messages`."""
    from .models import Message

    table = qn(Message._meta.db_table)
    statuses = ", ".join(f"'{status}'" for status in counted_statuses())
    return f"""EXISTS (
        SELECT 1 FROM {table} r
        WHERE r.{qn("contact_id")} = {message_alias}.{qn("contact_id")}
          AND r.{qn("kind")} = '{Message.Kind.CAMPAIGN}'
          AND r.{qn("status")} IN ({statuses})
          AND (r.{qn("handed_at")} >= %s OR r.{qn("status")} = '{Message.Status.SENDING}')
        LIMIT 1 OFFSET %s
    )"""
