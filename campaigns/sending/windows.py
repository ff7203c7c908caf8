"""Sending hours: send windows evaluated in each recipient's local time.

A campaign may carry a :class:`SendWindow` such as 09:00-20:00 Monday-Friday. The
window is read on the recipient's wall clock (``Contact.time_zone``, an IANA name
derived from the phone number); an empty or unknown zone uses the window's
``fallback_time_zone``.

How a wall-clock time becomes an instant, on every day including DST changes:
    A local time maps to the first instant at which the zone's clock shows it.
    - Spring forward: a time the clock skips (02:30 in New York on the second
      Sunday of March) maps to the instant the clock jumps past it, so a window
      starting then opens at 03:00 EDT, the next valid instant. An end time in the
      gap likewise closes the window at the jump.
    - Fall back: a time the clock shows twice (01:30 in New York on the first
      Sunday of November) maps to its first occurrence. A window that opens at
      01:30 opens at 01:30 EDT and stays open through the repeated hour; one that
      ends at 01:30 closes at 01:30 EDT and does not reopen when the clock shows
      01:30 again.

Each selected weekday opens one window: ``[start on that day, end)``, where an end
at or before the start falls on the next day (22:00-02:00 on Friday runs from Friday
22:00 to Saturday 02:00) and ``start == end`` means 24 hours from ``start`` (00:00-00:00
is the whole calendar day). The start is inclusive, the end exclusive.

The dispatcher asks :func:`open_zones` which of a campaign's (few, distinct) zones
are open now and claims only messages in those zones; when none is, it sleeps until
:func:`earliest_opening`.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ValidationError

# Every selected weekday opens a window, so one opens within 7 days; the extra day
# covers a date a zone skipped entirely (Pacific/Apia skipped 30 December 2011).
_SEARCH_DAYS = 8
# Ranges use an en dash ("09:00 to 20:00"); written as an escape because ruff
# flags the literal character as a hyphen look-alike.
_EN_DASH = "\u2013"
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
_FIELDS = frozenset({"start", "end", "weekdays", "time_zone"})


class WindowError(ValueError):
    """A send window that cannot be built: the message says what to fix."""


def _default_time_zone() -> str:
    return settings.TIME_ZONE


@lru_cache(maxsize=512)
def _find_zone(name: str) -> ZoneInfo | None:
    # Keys with path tricks ("../x") or an empty name raise ValueError, not
    # ZoneInfoNotFoundError; both simply mean "not a zone".
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


@dataclass(frozen=True, slots=True)
class SendWindow:
    """When a campaign may text a recipient, on the recipient's wall clock."""

    start: time
    end: time
    """Exclusive; at or before ``start`` means the next day."""
    weekdays: frozenset[int]
    """0 = Monday … 6 = Sunday: the days on which a window *starts*."""
    fallback_time_zone: str = field(default_factory=_default_time_zone)
    """Used for recipients whose zone is empty or unknown."""

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, time):
                raise WindowError(f"{name} must be a datetime.time, not {value!r}.")
            if value.tzinfo is not None:
                raise WindowError(
                    f"{name} must be a wall-clock time without a time zone; "
                    "the recipient's zone applies."
                )
            if value.second or value.microsecond:
                raise WindowError(f"{name} must be a whole minute (HH:MM).")
        # Accept any iterable of days so callers may pass a list or a range.
        try:
            weekdays = frozenset(self.weekdays)
        except TypeError:
            raise WindowError(
                "weekdays must be a list of integers 0 (Monday) to 6 (Sunday)."
            ) from None
        if not weekdays:
            raise WindowError("weekdays must name at least one day.")
        for day in weekdays:
            if type(day) is not int or not 0 <= day <= 6:
                raise WindowError(
                    f"weekdays must be integers 0 (Monday) to 6 (Sunday), not {day!r}."
                )
        object.__setattr__(self, "weekdays", weekdays)
        if not isinstance(self.fallback_time_zone, str):
            raise WindowError(
                f"time_zone must be a string, not {self.fallback_time_zone!r}."
            )
        if _find_zone(self.fallback_time_zone) is None:
            raise WindowError(f"Unknown time zone {self.fallback_time_zone!r}.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SendWindow":
        """Build a window from its JSON form (see :meth:`to_dict`).

        ``time_zone`` is optional; missing, null or "" means ``settings.TIME_ZONE``.
        """
        if not isinstance(data, Mapping):
            raise WindowError(
                "A send window must be an object with start, end and weekdays."
            )
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise WindowError(
                f"Unknown send window field(s): {', '.join(map(str, unknown))}."
            )
        weekdays = data.get("weekdays")
        if weekdays is None:
            raise WindowError("weekdays is required, e.g. [0, 1, 2, 3, 4].")
        if isinstance(weekdays, str | bytes) or not isinstance(weekdays, Iterable):
            raise WindowError(
                "weekdays must be a list of integers 0 (Monday) to 6 (Sunday)."
            )
        time_zone = data.get("time_zone")
        return cls(
            start=_parse_clock("start", data.get("start")),
            end=_parse_clock("end", data.get("end")),
            weekdays=weekdays,
            fallback_time_zone=_default_time_zone()
            if time_zone in (None, "")
            else time_zone,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "weekdays": sorted(self.weekdays),
            "time_zone": self.fallback_time_zone,
        }

    def describe(self) -> str:
        """E.g. "09:00-20:00 Mon-Fri, recipient's local time", with en dashes."""
        start, end = self.start.strftime("%H:%M"), self.end.strftime("%H:%M")
        if self.start != self.end:
            hours = f"{start}{_EN_DASH}{end}"
        elif self.start == time(0):
            hours = "All day"
        else:
            hours = f"24 hours from {start}"
        return f"{hours} {_describe_days(self.weekdays)}, recipient's local time"


def validate_send_window(value: object) -> None:
    """Model-field validator for the JSON form: an empty value means no window."""
    if value in (None, {}):
        return
    try:
        SendWindow.from_dict(value)  # type: ignore[arg-type]  # checked inside
    except WindowError as error:
        raise ValidationError(str(error), code="invalid_send_window") from error


def _parse_clock(name: str, value: object) -> time:
    if value is None:
        raise WindowError(f"{name} is required, as HH:MM.")
    match = _CLOCK.match(value) if isinstance(value, str) else None
    if match is None:
        raise WindowError(f"{name} must be a time as HH:MM, not {value!r}.")
    hour, minute = int(match[1]), int(match[2])
    if hour > 23 or minute > 59:
        raise WindowError(f"{name} must be between 00:00 and 23:59, not {value!r}.")
    return time(hour, minute)


def _describe_days(weekdays: frozenset[int]) -> str:
    if len(weekdays) == 7:
        return "every day"
    # Start the scan after a day that is not selected, so a run that wraps the
    # week (Sat, Sun, Mon) reads as one range.
    first = next(d for d in range(7) if (d - 1) % 7 not in weekdays and d in weekdays)
    runs: list[list[int]] = []
    for day in ((first + i) % 7 for i in range(7)):
        if day not in weekdays:
            continue
        if runs and (runs[-1][-1] + 1) % 7 == day:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{_DAY_NAMES[run[0]]}{_EN_DASH}{_DAY_NAMES[run[-1]]}")
        else:
            parts.extend(_DAY_NAMES[d] for d in run)
    return ", ".join(parts)


def _as_utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be a timezone-aware datetime.")
    # Compare in UTC only: an aware local time in a repeated hour never compares
    # equal to an instant in another zone (PEP 495).
    return at.astimezone(UTC)


def _resolve_zone(window: SendWindow, zone: str) -> ZoneInfo:
    found = _find_zone(zone) if zone else None
    if found is None:
        found = _find_zone(window.fallback_time_zone)
        # Validated when the window was built; only a tz database that lost the
        # zone since could get here.
        assert found is not None
    return found


def _instant(zone: ZoneInfo, day: date, wall: time) -> datetime:
    """The first instant (UTC) at which ``zone``'s clock shows ``wall`` on ``day``,
    or the instant the clock jumps past it when a transition skips it."""
    naive = datetime.combine(day, wall)
    # fold=0 is the earlier of two occurrences of an ambiguous time (PEP 495).
    earlier = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if earlier.astimezone(zone).replace(tzinfo=None) == naive:
        return earlier
    # In a gap, fold=0 applies the offset before the jump (an instant after it) and
    # fold=1 the offset after (an instant before it). zoneinfo does not expose its
    # transitions, so bisect between the two for the first second whose local time
    # is past ``naive``; transitions fall on whole seconds.
    before = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    after = earlier
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) // 2
        if middle.astimezone(zone).replace(tzinfo=None) > naive:
            after = middle
        else:
            before = middle
    return after


def _windows(
    window: SendWindow, zone: str, at: datetime
) -> Iterable[tuple[datetime, datetime]]:
    """The (opens, closes) instants, in order, of windows that close after ``at``
    (UTC).

    Windows never overlap: a local time maps to instants monotonically and an
    overnight window ends at or before the next day's start.
    """
    tz = _resolve_zone(window, zone)
    local_day = at.astimezone(tz).date()
    # Start a day back: an overnight or 24-hour window that started yesterday may
    # still be open.
    for offset in range(-1, _SEARCH_DAYS + 1):
        day = local_day + timedelta(days=offset)
        if day.weekday() not in window.weekdays:
            continue
        end_day = day if window.end > window.start else day + timedelta(days=1)
        opens = _instant(tz, day, window.start)
        closes = _instant(tz, end_day, window.end)
        # A window inside a skipped stretch of the clock is empty.
        if closes > at and opens < closes:
            yield opens, closes


def is_open(window: SendWindow, zone: str, at: datetime) -> bool:
    """Whether a recipient in ``zone`` may be texted at the instant ``at``."""
    return window_closes_at(window, zone, at) is not None


def window_closes_at(window: SendWindow, zone: str, at: datetime) -> datetime | None:
    """When the window open at ``at`` closes (UTC), or None if it is closed."""
    at = _as_utc(at)
    for opens, closes in _windows(window, zone, at):
        return closes if opens <= at else None
    return None


def next_opening(window: SendWindow, zone: str, at: datetime) -> datetime:
    """``at`` (in UTC) if the window is open, else the next instant it opens."""
    at = _as_utc(at)
    for opens, _closes in _windows(window, zone, at):
        return max(opens, at)
    # Unreachable for a valid window: every selected weekday opens one, and at most
    # one day in the search can be skipped by its zone.
    raise RuntimeError(f"No opening of {window} within {_SEARCH_DAYS} days.")


def _members(value: str) -> list[str]:
    # A stored time_zone holds one zone, or several space-separated for a number
    # that may be in any of them (contacts.phones); "" follows the fallback zone.
    return value.split() or [""]


def is_open_everywhere(window: SendWindow, value: str, at: datetime) -> bool:
    """Whether the window is open at ``at`` in every zone of a stored ``time_zone``
    (one zone, several space-separated, or "").

    Zones whose windows never overlap (a short window across all of Russia's) would
    keep their recipients waiting for ever: those follow the fallback zone, like a
    number whose zone is unknown (the composer counts both as uncertain).
    """
    members = _members(value)
    if all(is_open(window, zone, at) for zone in members):
        return True
    if len(members) > 1 and _common_opening(window, members, at) is None:
        return is_open(window, "", at)
    return False


def next_opening_everywhere(window: SendWindow, value: str, at: datetime) -> datetime:
    """The first instant at or after ``at`` when the window is open in every zone
    of ``value`` (for zones that never overlap: in the fallback zone)."""
    members = _members(value)
    opening = _common_opening(window, members, at)
    return opening if opening is not None else next_opening(window, "", at)


def _common_opening(
    window: SendWindow, members: list[str], at: datetime
) -> datetime | None:
    """The first instant at or after ``at`` when the window is open in all of
    ``members``; None when their windows never overlap (within the search)."""
    at = _as_utc(at)
    limit = at + timedelta(days=_SEARCH_DAYS)
    candidate = at
    while candidate <= limit:
        # Each zone's next opening from the candidate; when they all say "now" the
        # candidate is open everywhere, else the latest of them is the next try.
        openings = [next_opening(window, zone, candidate) for zone in members]
        latest = max(openings)
        if latest == candidate:
            return candidate
        candidate = latest
    return None


def open_zones(window: SendWindow, zones: Iterable[str], at: datetime) -> set[str]:
    """The stored zone values of ``zones`` that are open at ``at``, as given.

    A value of several zones is open only when the window is open in each of them.
    Empty and unknown zones are returned as given too (they follow the fallback
    zone), so the result can filter ``Message.time_zone IN (...)`` directly.
    """
    return {zone for zone in set(zones) if is_open_everywhere(window, zone, at)}


def earliest_opening(
    window: SendWindow, zones: Iterable[str], at: datetime
) -> datetime | None:
    """The first instant (UTC) at or after ``at`` when any of ``zones`` is open
    (in every zone of a several-zone value).

    ``at`` itself when one already is; None when there are no zones.
    """
    return min(
        (next_opening_everywhere(window, zone, at) for zone in set(zones)),
        default=None,
    )
