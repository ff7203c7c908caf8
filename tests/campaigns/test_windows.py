# ruff: noqa: RUF001  (window descriptions use en dashes, as users see them)
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, strategies as st

from django.core.exceptions import ValidationError

from campaigns.sending.windows import (
    SendWindow,
    WindowError,
    earliest_opening,
    is_open,
    next_opening,
    open_zones,
    validate_send_window,
    window_closes_at,
)

NEW_YORK = "America/New_York"
LOS_ANGELES = "America/Los_Angeles"
LONDON = "Europe/London"
WEEKDAYS = frozenset(range(5))
EVERY_DAY = frozenset(range(7))


def window(
    start: str,
    end: str,
    weekdays: frozenset[int] = EVERY_DAY,
    fallback: str = "UTC",
) -> SendWindow:
    return SendWindow(
        start=time.fromisoformat(start),
        end=time.fromisoformat(end),
        weekdays=weekdays,
        fallback_time_zone=fallback,
    )


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


OFFICE_HOURS = window("09:00", "20:00", WEEKDAYS)


# --- Edges, weekdays and zones ---------------------------------------------------


def test_start_is_inclusive_and_end_is_exclusive():
    # Monday 3 June 2024.
    assert not is_open(OFFICE_HOURS, NEW_YORK, local(NEW_YORK, 2024, 6, 3, 8, 59, 59))
    assert is_open(OFFICE_HOURS, NEW_YORK, local(NEW_YORK, 2024, 6, 3, 9, 0))
    assert is_open(OFFICE_HOURS, NEW_YORK, local(NEW_YORK, 2024, 6, 3, 19, 59, 59))
    assert not is_open(OFFICE_HOURS, NEW_YORK, local(NEW_YORK, 2024, 6, 3, 20, 0))


def test_weekend_is_closed_for_a_monday_to_friday_window():
    saturday_noon = local(NEW_YORK, 2024, 6, 8, 12, 0)
    assert not is_open(OFFICE_HOURS, NEW_YORK, saturday_noon)
    assert next_opening(OFFICE_HOURS, NEW_YORK, saturday_noon) == local(
        NEW_YORK, 2024, 6, 10, 9, 0
    )


def test_one_utc_instant_is_open_in_new_york_and_closed_in_los_angeles():
    at = utc(2024, 1, 15, 14, 0)  # 09:00 in New York, 06:00 in Los Angeles.
    assert is_open(OFFICE_HOURS, NEW_YORK, at)
    assert not is_open(OFFICE_HOURS, LOS_ANGELES, at)
    assert open_zones(OFFICE_HOURS, [NEW_YORK, LOS_ANGELES, NEW_YORK], at) == {NEW_YORK}
    assert next_opening(OFFICE_HOURS, LOS_ANGELES, at) == utc(2024, 1, 15, 17, 0)


def test_next_opening_is_the_instant_itself_in_utc_when_open():
    at = local(NEW_YORK, 2024, 6, 3, 12, 30)
    opening = next_opening(OFFICE_HOURS, NEW_YORK, at)
    assert opening == at
    assert opening.tzinfo is UTC


def test_next_opening_before_the_start_is_later_that_day_and_after_the_end_tomorrow():
    assert next_opening(
        OFFICE_HOURS, NEW_YORK, local(NEW_YORK, 2024, 6, 3, 7, 0)
    ) == local(NEW_YORK, 2024, 6, 3, 9, 0)
    assert next_opening(
        OFFICE_HOURS, NEW_YORK, local(NEW_YORK, 2024, 6, 3, 20, 0)
    ) == local(NEW_YORK, 2024, 6, 4, 9, 0)
    # Friday evening waits for Monday.
    assert next_opening(
        OFFICE_HOURS, NEW_YORK, local(NEW_YORK, 2024, 6, 7, 21, 0)
    ) == local(NEW_YORK, 2024, 6, 10, 9, 0)


def test_window_closes_at_is_the_end_of_the_open_window_and_none_when_closed():
    assert window_closes_at(
        OFFICE_HOURS, NEW_YORK, local(NEW_YORK, 2024, 6, 3, 12, 0)
    ) == local(NEW_YORK, 2024, 6, 3, 20, 0)
    assert (
        window_closes_at(OFFICE_HOURS, NEW_YORK, local(NEW_YORK, 2024, 6, 3, 20, 0))
        is None
    )


def test_a_naive_instant_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(OFFICE_HOURS, NEW_YORK, datetime(2024, 6, 3, 12, 0))


# --- Overnight and all-day windows -----------------------------------------------


def test_overnight_window_runs_into_the_next_day_from_the_day_it_starts():
    friday_night = window("22:00", "02:00", frozenset({4}))
    # Friday 7 June 2024 22:00 to Saturday 02:00.
    assert is_open(friday_night, LONDON, local(LONDON, 2024, 6, 7, 22, 0))
    assert is_open(friday_night, LONDON, local(LONDON, 2024, 6, 8, 1, 59))
    assert not is_open(friday_night, LONDON, local(LONDON, 2024, 6, 8, 2, 0))
    assert window_closes_at(
        friday_night, LONDON, local(LONDON, 2024, 6, 7, 23, 0)
    ) == local(LONDON, 2024, 6, 8, 2, 0)


def test_overnight_window_is_closed_after_midnight_when_the_previous_day_is_not_selected():
    friday_night = window("22:00", "02:00", frozenset({4}))
    # Early Friday belongs to Thursday's window, and Saturday night to Saturday's.
    assert not is_open(friday_night, LONDON, local(LONDON, 2024, 6, 7, 1, 0))
    assert not is_open(friday_night, LONDON, local(LONDON, 2024, 6, 8, 23, 0))
    assert next_opening(friday_night, LONDON, local(LONDON, 2024, 6, 8, 2, 0)) == local(
        LONDON, 2024, 6, 14, 22, 0
    )


def test_equal_start_and_end_is_open_for_twenty_four_hours():
    mondays = window("00:00", "00:00", frozenset({0}))
    assert is_open(mondays, NEW_YORK, local(NEW_YORK, 2024, 6, 3, 0, 0))
    assert is_open(mondays, NEW_YORK, local(NEW_YORK, 2024, 6, 3, 23, 59, 59))
    assert not is_open(mondays, NEW_YORK, local(NEW_YORK, 2024, 6, 4, 0, 0))

    from_nine = window("09:00", "09:00", frozenset({0}))
    assert is_open(from_nine, NEW_YORK, local(NEW_YORK, 2024, 6, 4, 8, 59))
    assert not is_open(from_nine, NEW_YORK, local(NEW_YORK, 2024, 6, 3, 8, 59))


# --- Daylight saving time --------------------------------------------------------


def test_office_hours_follow_new_york_daylight_saving_in_utc():
    assert next_opening(OFFICE_HOURS, NEW_YORK, utc(2024, 1, 15, 0, 0)) == utc(
        2024, 1, 15, 14, 0
    )
    assert next_opening(OFFICE_HOURS, NEW_YORK, utc(2024, 7, 15, 0, 0)) == utc(
        2024, 7, 15, 13, 0
    )


def test_start_skipped_by_new_york_spring_forward_opens_at_the_next_valid_instant():
    # Sunday 10 March 2024: clocks jump from 02:00 EST (07:00 UTC) to 03:00 EDT.
    early = window("02:30", "05:00")
    assert not is_open(early, NEW_YORK, utc(2024, 3, 10, 6, 59, 59))
    assert is_open(early, NEW_YORK, utc(2024, 3, 10, 7, 0))
    assert next_opening(early, NEW_YORK, utc(2024, 3, 10, 5, 0)) == utc(
        2024, 3, 10, 7, 0
    )
    # The next day 02:30 exists again.
    assert next_opening(early, NEW_YORK, utc(2024, 3, 10, 9, 0)) == local(
        NEW_YORK, 2024, 3, 11, 2, 30
    )


def test_end_skipped_by_new_york_spring_forward_closes_at_the_jump():
    saturday_night = window("22:00", "02:30", frozenset({5}))
    assert window_closes_at(
        saturday_night, NEW_YORK, local(NEW_YORK, 2024, 3, 9, 23, 0)
    ) == utc(2024, 3, 10, 7, 0)


def test_ambiguous_start_on_new_york_fall_back_uses_the_first_occurrence():
    # Sunday 3 November 2024: 01:00-02:00 happens twice, first EDT then EST.
    early = window("01:30", "05:00")
    first_0130_edt = utc(2024, 11, 3, 5, 30)
    assert next_opening(early, NEW_YORK, utc(2024, 11, 3, 4, 0)) == first_0130_edt
    # Once open it stays open through the repeated hour, although the clock reads
    # 01:15 again.
    assert is_open(early, NEW_YORK, local(NEW_YORK, 2024, 11, 3, 1, 15, fold=1))


def test_ambiguous_end_on_new_york_fall_back_closes_at_the_first_occurrence():
    saturday_night = window("20:00", "01:30", frozenset({5}))
    at = local(NEW_YORK, 2024, 11, 2, 23, 0)
    assert window_closes_at(saturday_night, NEW_YORK, at) == utc(2024, 11, 3, 5, 30)
    # 01:15 EST comes after the close although the clock shows an earlier time.
    assert not is_open(
        saturday_night, NEW_YORK, local(NEW_YORK, 2024, 11, 3, 1, 15, fold=1)
    )


def test_office_hours_follow_london_summer_time_in_utc():
    # Monday 25 March (GMT) and Monday 1 April 2024 (BST).
    assert next_opening(OFFICE_HOURS, LONDON, utc(2024, 3, 25, 0, 0)) == utc(
        2024, 3, 25, 9, 0
    )
    assert next_opening(OFFICE_HOURS, LONDON, utc(2024, 4, 1, 0, 0)) == utc(
        2024, 4, 1, 8, 0
    )


def test_start_skipped_by_london_spring_forward_opens_at_the_next_valid_instant():
    # Sunday 31 March 2024: clocks jump from 01:00 GMT to 02:00 BST (01:00 UTC).
    early = window("01:30", "03:00")
    assert not is_open(early, LONDON, utc(2024, 3, 31, 0, 59))
    assert next_opening(early, LONDON, utc(2024, 3, 30, 23, 0)) == utc(
        2024, 3, 31, 1, 0
    )


def test_ambiguous_start_on_london_fall_back_uses_the_first_occurrence():
    # Sunday 27 October 2024: 01:00-02:00 happens twice, first BST then GMT.
    early = window("01:30", "03:00")
    assert next_opening(early, LONDON, utc(2024, 10, 26, 23, 0)) == utc(
        2024, 10, 27, 0, 30
    )
    assert is_open(early, LONDON, local(LONDON, 2024, 10, 27, 1, 15, fold=1))


# --- Unknown zones and the fallback ----------------------------------------------


@pytest.mark.parametrize("zone", ["", "Not/AZone", "../etc/passwd", "America"])
def test_empty_or_unknown_zone_follows_the_fallback_zone(zone):
    tokyo_hours = window("09:00", "20:00", WEEKDAYS, fallback="Asia/Tokyo")
    at = utc(2024, 6, 3, 0, 0)  # 09:00 in Tokyo, 20:00 the day before in New York.
    assert is_open(tokyo_hours, zone, at)
    assert open_zones(tokyo_hours, [zone, NEW_YORK], at) == {zone}
    assert next_opening(tokyo_hours, zone, utc(2024, 6, 2, 12, 0)) == at


def test_fallback_zone_defaults_to_the_project_time_zone(settings):
    settings.TIME_ZONE = "Asia/Tokyo"
    assert window("09:00", "20:00").fallback_time_zone == "UTC"
    no_zone = SendWindow(start=time(9), end=time(20), weekdays=EVERY_DAY)
    assert no_zone.fallback_time_zone == "Asia/Tokyo"
    from_json = SendWindow.from_dict(
        {"start": "09:00", "end": "20:00", "weekdays": [0]}
    )
    assert from_json.fallback_time_zone == "Asia/Tokyo"


# --- Several zones ---------------------------------------------------------------


def test_earliest_opening_is_the_first_zone_to_open():
    at = utc(2024, 1, 15, 12, 0)  # 07:00 in New York, 04:00 in Los Angeles.
    assert earliest_opening(OFFICE_HOURS, [LOS_ANGELES, NEW_YORK], at) == utc(
        2024, 1, 15, 14, 0
    )


def test_earliest_opening_is_now_when_a_zone_is_open_and_none_without_zones():
    at = utc(2024, 1, 15, 15, 0)
    assert earliest_opening(OFFICE_HOURS, [LOS_ANGELES, NEW_YORK], at) == at
    assert earliest_opening(OFFICE_HOURS, [], at) is None


# --- Storage and validation ------------------------------------------------------


def test_dict_round_trip_keeps_the_window():
    data = {
        "start": "09:00",
        "end": "20:00",
        "weekdays": [4, 0, 1, 2, 3],
        "time_zone": NEW_YORK,
    }
    loaded = SendWindow.from_dict(data)
    assert loaded == window("09:00", "20:00", WEEKDAYS, fallback=NEW_YORK)
    assert loaded.to_dict() == {**data, "weekdays": [0, 1, 2, 3, 4]}
    assert SendWindow.from_dict(loaded.to_dict()) == loaded


def test_single_digit_hours_are_accepted():
    assert (
        SendWindow.from_dict(
            {"start": "9:00", "end": "0:00", "weekdays": [0], "time_zone": "UTC"}
        ).to_dict()["start"]
        == "09:00"
    )


VALID = {"start": "09:00", "end": "20:00", "weekdays": [0, 1], "time_zone": "UTC"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"start": "9am"}, "start must be a time as HH:MM, not '9am'"),
        ({"end": "20.00"}, "end must be a time as HH:MM, not '20.00'"),
        ({"start": 900}, "start must be a time as HH:MM, not 900"),
        ({"start": "24:00"}, "start must be between 00:00 and 23:59"),
        ({"end": "12:60"}, "end must be between 00:00 and 23:59"),
        ({"start": None}, "start is required"),
        ({"weekdays": []}, "weekdays must name at least one day"),
        ({"weekdays": None}, "weekdays is required"),
        ({"weekdays": [0, 7]}, r"integers 0 \(Monday\) to 6 \(Sunday\), not 7"),
        ({"weekdays": ["1"]}, r"integers 0 \(Monday\) to 6 \(Sunday\), not '1'"),
        ({"weekdays": [True]}, r"integers 0 \(Monday\) to 6 \(Sunday\), not True"),
        ({"weekdays": "01234"}, "weekdays must be a list of integers"),
        ({"weekdays": 5}, "weekdays must be a list of integers"),
        ({"weekdays": [[1]]}, "weekdays must be a list of integers"),
        ({"time_zone": "Mars/Olympus_Mons"}, "Unknown time zone 'Mars/Olympus_Mons'"),
        ({"time_zone": 5}, "time_zone must be a string, not 5"),
        ({"weekday": [1]}, r"Unknown send window field\(s\): weekday"),
    ],
)
def test_from_dict_explains_what_is_wrong(change, message):
    with pytest.raises(WindowError, match=message):
        SendWindow.from_dict({**VALID, **change})


def test_from_dict_refuses_a_non_object():
    with pytest.raises(WindowError, match="must be an object"):
        SendWindow.from_dict(["09:00", "20:00"])


def test_window_error_is_a_value_error():
    with pytest.raises(ValueError, match="Unknown time zone"):
        SendWindow.from_dict({**VALID, "time_zone": "Nowhere"})


def test_model_validator_reports_the_problem_and_accepts_no_window():
    validate_send_window(None)
    validate_send_window({})
    validate_send_window(VALID)
    with pytest.raises(ValidationError, match="Unknown time zone 'Nowhere'"):
        validate_send_window({**VALID, "time_zone": "Nowhere"})


@pytest.mark.parametrize(
    ("start", "message"),
    [
        (time(9, 0, 30), "whole minute"),
        (time(9, tzinfo=UTC), "without a time zone"),
        ("09:00", "must be a datetime.time"),
    ],
)
def test_constructor_refuses_times_that_cannot_be_stored(start, message):
    with pytest.raises(WindowError, match=message):
        SendWindow(
            start=start, end=time(20), weekdays=WEEKDAYS, fallback_time_zone="UTC"
        )


@pytest.mark.parametrize(
    ("start", "end", "weekdays", "text"),
    [
        ("09:00", "20:00", WEEKDAYS, "09:00–20:00 Mon–Fri, recipient's local time"),
        ("22:00", "02:00", {4, 5}, "22:00–02:00 Fri, Sat, recipient's local time"),
        ("09:00", "17:00", EVERY_DAY, "09:00–17:00 every day, recipient's local time"),
        (
            "09:00",
            "17:00",
            {0, 2, 4},
            "09:00–17:00 Mon, Wed, Fri, recipient's local time",
        ),
        (
            "09:00",
            "17:00",
            {0, 1, 2, 4},
            "09:00–17:00 Mon–Wed, Fri, recipient's local time",
        ),
        ("09:00", "17:00", {5, 6, 0}, "09:00–17:00 Sat–Mon, recipient's local time"),
        ("00:00", "00:00", {6}, "All day Sun, recipient's local time"),
        ("09:00", "09:00", {6}, "24 hours from 09:00 Sun, recipient's local time"),
    ],
)
def test_describe_reads_like_a_schedule(start, end, weekdays, text):
    assert window(start, end, frozenset(weekdays)).describe() == text


# --- Properties ------------------------------------------------------------------

ZONES = [
    NEW_YORK,
    LONDON,
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Asia/Kolkata",
    "America/St_Johns",
    "Pacific/Apia",  # skipped 30 December 2011 entirely
    "",
    "Not/AZone",
]
minutes = st.integers(min_value=0, max_value=24 * 60 - 1).map(
    lambda m: time(m // 60, m % 60)
)
windows = st.builds(
    SendWindow,
    start=minutes,
    end=minutes,
    weekdays=st.frozensets(st.integers(0, 6), min_size=1),
    fallback_time_zone=st.sampled_from(["UTC", NEW_YORK, "Pacific/Apia"]),
)
# Random instants seldom land near a clock change, so half are drawn around one.
CLOCK_CHANGES = [
    utc(2024, 3, 10, 7, 0),  # New York and St John's spring forward (hours apart)
    utc(2024, 11, 3, 6, 0),  # New York falls back
    utc(2024, 3, 31, 1, 0),  # London springs forward
    utc(2024, 10, 27, 1, 0),  # London falls back
    utc(2024, 4, 6, 15, 0),  # Lord Howe falls back 30 minutes
    utc(2024, 10, 5, 15, 30),  # Lord Howe springs forward 30 minutes
    utc(2011, 12, 30, 10, 0),  # Apia skips a day
]
instants = st.one_of(
    st.datetimes(
        min_value=datetime(1990, 1, 1),
        max_value=datetime(2060, 1, 1),
        timezones=st.just(UTC),
    ),
    st.builds(
        lambda change, seconds: change + timedelta(seconds=seconds),
        st.sampled_from(CLOCK_CHANGES),
        st.integers(min_value=-36 * 3600, max_value=36 * 3600),
    ),
)


@given(window=windows, zone=st.sampled_from(ZONES), at=instants)
@example(window("02:30", "05:00"), NEW_YORK, utc(2024, 3, 10, 6, 0))
@example(window("01:30", "01:45"), NEW_YORK, utc(2024, 11, 3, 5, 40))
@example(window("09:00", "20:00", frozenset({4})), "Pacific/Apia", utc(2011, 12, 29))
def test_next_opening_is_never_earlier_and_always_open(window, zone, at):
    opening = next_opening(window, zone, at)
    assert opening >= at
    assert is_open(window, zone, opening)
    assert (opening == at) == is_open(window, zone, at)
    just_before = opening - timedelta(seconds=1)
    if just_before >= at:
        assert not is_open(window, zone, just_before)
    closes = window_closes_at(window, zone, opening)
    assert closes is not None
    assert closes > opening
