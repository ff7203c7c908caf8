"""Forms of the campaign action pages in the admin (see campaigns/admin/actions.py)."""

import re
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from django import forms
from django.conf import settings
from django.utils import dateformat, timezone

from contacts.phones import InvalidPhoneNumber, parse_phone

from ..sending.windows import SendWindow, WindowError

#: Most numbers one test send may go to: a test is for the team, not an audience.
MAX_TEST_NUMBERS = 10
WEEKDAYS = [
    (0, "Mon"),
    (1, "Tue"),
    (2, "Wed"),
    (3, "Thu"),
    (4, "Fri"),
    (5, "Sat"),
    (6, "Sun"),
]
_SEPARATORS = re.compile(r"[\n,;]+")


@lru_cache(maxsize=1)
def time_zone_choices() -> list[tuple[str, str]]:
    zones = set(available_timezones()) | {settings.TIME_ZONE}
    return [(zone, zone.replace("_", " ")) for zone in sorted(zones)]


class TestSendForm(forms.Form):
    fieldsets = [(None, {"fields": ["numbers"]})]

    numbers = forms.CharField(
        label="Phone numbers",
        widget=forms.Textarea(
            attrs={"rows": 3, "cols": 40, "placeholder": "+1 415 555 0123"}
        ),
        help_text="One per line or separated by commas. Numbers without a country "
        "code are read as {region} numbers.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["numbers"]
        field.help_text = field.help_text.format(region=_default_region() or "US")

    def clean_numbers(self) -> list[str]:
        """The numbers in E.164, each once, in the order given."""
        raw = [part.strip() for part in _SEPARATORS.split(self.cleaned_data["numbers"])]
        given = [part for part in raw if part]
        if not given:
            raise forms.ValidationError("Enter at least one phone number.")
        numbers: list[str] = []
        invalid: list[str] = []
        for text in given:
            try:
                number = parse_phone(text, _default_region())
            except InvalidPhoneNumber as error:
                invalid.append(f"“{text}” ({error.reason})")
                continue
            if number.e164 not in numbers:
                numbers.append(number.e164)
        if invalid:
            raise forms.ValidationError(
                f"Not a valid phone number: {'; '.join(invalid)}."
            )
        if len(numbers) > MAX_TEST_NUMBERS:
            raise forms.ValidationError(
                f"A test goes to at most {MAX_TEST_NUMBERS} numbers; "
                f"you entered {len(numbers)}."
            )
        return numbers


def _default_region() -> str | None:
    return getattr(settings, "PHONE_DEFAULT_REGION", None) or None


#: The schedule page's sending-hours fieldset and help: the window in which messages
#: may go out (``Campaign.send_window``), not hours in which they may not.
SENDING_HOURS_TITLE = "Sending hours (optional)"
SENDING_HOURS_HELP = (
    "Messages go out only between these times, in each recipient's local time"
)


class ScheduleForm(forms.Form):
    """When to send, and the optional sending hours (``Campaign.send_window``)."""

    fieldsets = [
        ("When", {"fields": ["date", "time", "time_zone"]}),
        (
            SENDING_HOURS_TITLE,
            {
                "fields": [("window_start", "window_end"), "weekdays"],
                "description": "An end at or before the start runs past midnight. "
                "Leave both times empty to send at any hour.",
            },
        ),
    ]

    date = forms.DateField(
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    time = forms.TimeField(
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
    )
    time_zone = forms.ChoiceField(
        choices=time_zone_choices,
        help_text="The date and time above are read in this time zone.",
    )
    window_start = forms.TimeField(
        required=False,
        label="Send only from",
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    window_end = forms.TimeField(
        required=False,
        label="until",
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text=SENDING_HOURS_HELP + ".",
    )
    weekdays = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS,
        coerce=int,
        required=False,
        label="On",
        # The admin's own class for a row of choices side by side.
        widget=forms.CheckboxSelectMultiple(attrs={"class": "radiolist inline"}),
        help_text="The days on which the sending hours start.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        self._clean_moment(data)
        self._clean_window(data)
        return data

    def _clean_moment(self, data: dict[str, Any]) -> None:
        day, clock, zone_name = (
            data.get("date"),
            data.get("time"),
            data.get("time_zone"),
        )
        if day is None or clock is None or not zone_name:
            return  # the field errors already say what is missing
        zone = ZoneInfo(zone_name)
        naive = datetime.combine(day, clock.replace(second=0, microsecond=0))
        # fold=0: a time the clock shows twice (when it falls back) means the first.
        at = naive.replace(tzinfo=zone, fold=0)
        if not _exists(naive, zone):
            self.add_error("time", _skipped_time_error(naive, zone, zone_name))
            return
        if at <= timezone.now():
            self.add_error(
                None,
                f"{dateformat.format(at, 'j F Y, H:i T')} has already passed. "
                "Pick a time in the future, or use “Send now” to send straight away.",
            )
            return
        data["at"] = at

    def _clean_window(self, data: dict[str, Any]) -> None:
        start, end = data.get("window_start"), data.get("window_end")
        data["send_window"] = None
        if start is None and end is None:
            return
        if start is None or end is None:
            missing = "window_start" if start is None else "window_end"
            self.add_error(
                missing,
                "Give both a start and an end time for the sending hours, or neither.",
            )
            return
        weekdays = data.get("weekdays") or []
        if not weekdays:
            self.add_error("weekdays", "Pick at least one day for the sending hours.")
            return
        try:
            window = SendWindow(
                start=start.replace(second=0, microsecond=0),
                end=end.replace(second=0, microsecond=0),
                weekdays=weekdays,
                # Recipients whose zone is unknown follow the schedule's zone.
                fallback_time_zone=data.get("time_zone") or settings.TIME_ZONE,
            )
        except WindowError as error:
            self.add_error(None, str(error))
            return
        data["send_window"] = window.to_dict()
        data["send_window_description"] = window.describe()

    @classmethod
    def initial_for(
        cls,
        *,
        scheduled_at: datetime | None,
        send_window: Any,
        time_zone: str = "",
    ) -> dict:
        """Initial values: the campaign's current schedule, in the zone it was picked
        in (``time_zone``; the server's when empty or unknown), and sending hours."""
        zone_name = time_zone if time_zone in dict(time_zone_choices()) else ""
        zone_name = zone_name or settings.TIME_ZONE
        initial: dict[str, Any] = {
            "time_zone": zone_name,
            "weekdays": [0, 1, 2, 3, 4, 5, 6],
        }
        if scheduled_at is not None:
            local = scheduled_at.astimezone(ZoneInfo(zone_name))
            initial.update(
                date=local.date(), time=local.time().replace(second=0, microsecond=0)
            )
        if send_window:
            try:
                window = SendWindow.from_dict(send_window)
            except WindowError:
                return initial
            initial.update(
                window_start=window.start,
                window_end=window.end,
                weekdays=sorted(window.weekdays),
            )
        return initial


def _exists(naive: datetime, zone: tzinfo) -> bool:
    """Whether the wall-clock time ``naive`` happens in ``zone`` (not skipped when
    the clocks jump forward)."""
    at = naive.replace(tzinfo=zone, fold=0)
    return at.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive


def _skipped_time_error(naive: datetime, zone: tzinfo, zone_name: str) -> str:
    """What happened to a time the clocks skip, and the first time that exists.

    Gaps are not always an hour (Lord Howe Island moves 30 minutes), so the gap is
    measured: the offsets before and after it, and the first minute that exists.
    """
    before = naive.replace(tzinfo=zone, fold=0).utcoffset() or timedelta(0)
    after = naive.replace(tzinfo=zone, fold=1).utcoffset() or timedelta(0)
    gap = abs(after - before)
    first = naive
    # At most the length of the gap (a day for the longest ones), minute by minute.
    for _ in range(2 * 24 * 60):
        first += timedelta(minutes=1)
        if _exists(first, zone):
            break
    jump_from = first - gap
    when = dateformat.format(naive.date(), "j F Y")
    if jump_from.date() == first.date():
        start, end = f"{jump_from:%H:%M}", f"{first:%H:%M}"
    else:  # a skipped day (Pacific/Apia, 30 December 2011)
        start = dateformat.format(jump_from, "j F, H:i")
        end = dateformat.format(first, "j F, H:i")
    return (
        f"{naive:%H:%M} does not exist on {when} in {zone_name}: the clocks jump "
        f"forward {_duration(gap)} that night, from {start} to {end}. "
        f"Pick {end} or later."
    )


def _duration(span: timedelta) -> str:
    minutes = round(span.total_seconds() / 60)
    hours, minutes = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append("an hour" if hours == 1 else f"{hours} hours")
    if minutes:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " and ".join(parts) or "0 minutes"


class RetryForm(forms.Form):
    fieldsets = [(None, {"fields": ["include_unknown"]})]

    include_unknown = forms.BooleanField(
        required=False,
        label="Also retry messages whose fate is unknown (they may have gone out once)",
        help_text="A sender stopped while handing these to the provider; the "
        "provider may have sent them, so retrying can text someone twice.",
    )
