"""messaging.schedule.next_allowed_time: windows, days and DST."""

from datetime import UTC, datetime

import pytest

from messaging.schedule import next_allowed_time, parse_hhmm

NY = "America/New_York"


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def test_inside_the_window_it_is_now():
    now = utc(2026, 1, 7, 15, 0)  # Wed 10:00 in New York
    assert next_allowed_time(now, NY, "09:00", "17:00", [1, 2, 3, 4, 5]) == now


def test_before_the_window_it_waits_for_the_start():
    now = utc(2026, 1, 7, 12, 0)  # Wed 07:00 EST
    assert next_allowed_time(now, NY, "09:00", "17:00") == utc(2026, 1, 7, 14, 0)


def test_after_the_window_it_waits_for_tomorrow():
    now = utc(2026, 1, 7, 23, 0)  # Wed 18:00 EST
    assert next_allowed_time(now, NY, "09:00", "17:00") == utc(2026, 1, 8, 14, 0)


def test_the_end_is_exclusive():
    now = utc(2026, 1, 7, 22, 0)  # 17:00 EST exactly
    assert next_allowed_time(now, NY, "09:00", "17:00") == utc(2026, 1, 8, 14, 0)


def test_friday_evening_waits_for_monday_on_weekdays():
    now = utc(2026, 1, 9, 23, 0)  # Fri 18:00 EST
    assert next_allowed_time(now, NY, "09:00", "17:00", [1, 2, 3, 4, 5]) == utc(2026, 1, 12, 14, 0)


def test_zero_is_sunday():
    now = utc(2026, 1, 10, 12, 0)  # Sat 07:00 EST
    assert next_allowed_time(now, NY, None, None, [0]) == utc(2026, 1, 11, 5, 0)


def test_an_empty_day_list_means_every_day():
    now = utc(2026, 1, 10, 12, 0)  # Saturday
    assert next_allowed_time(now, NY, "09:00", "17:00", []) == utc(2026, 1, 10, 14, 0)


def test_no_window_and_no_days_is_always_allowed():
    now = utc(2026, 1, 10, 3, 17)
    assert next_allowed_time(now, "UTC") == now


def test_spring_forward_keeps_the_local_start():
    # 2026-03-08: clocks go 02:00 -> 03:00 in New York. Before: EST (-5), after: EDT (-4).
    sat_evening = utc(2026, 3, 7, 23, 0)  # Sat 18:00 EST
    assert next_allowed_time(sat_evening, NY, "09:00", "17:00") == utc(2026, 3, 8, 13, 0)


def test_a_start_inside_the_skipped_hour_opens_when_the_clock_jumps():
    now = utc(2026, 3, 8, 5, 0)  # Sun 00:00 EST
    assert next_allowed_time(now, NY, "02:30", "17:00") == utc(2026, 3, 8, 7, 0)  # 03:00 EDT


def test_fall_back_uses_the_first_of_the_repeated_hour():
    # 2026-11-01: clocks go 02:00 -> 01:00; 01:30 happens twice, first at EDT (-4).
    now = utc(2026, 11, 1, 4, 0)  # 00:00 EDT
    assert next_allowed_time(now, NY, "01:30", "17:00") == utc(2026, 11, 1, 5, 30)


def test_fall_back_day_window_end_is_local():
    now = utc(2026, 11, 1, 21, 59)  # 16:59 EST (after the change, -5)
    assert next_allowed_time(now, NY, "09:00", "17:00") == now
    assert next_allowed_time(utc(2026, 11, 1, 22, 0), NY, "09:00", "17:00") == utc(
        2026, 11, 2, 14, 0
    )


def test_a_window_crossing_midnight_belongs_to_its_start_day():
    # Friday only, 22:00-06:00: Saturday 03:00 is still Friday's window.
    sat_3am = utc(2026, 1, 10, 8, 0)  # Sat 03:00 EST
    assert next_allowed_time(sat_3am, NY, "22:00", "06:00", [5]) == sat_3am
    sat_7am = utc(2026, 1, 10, 12, 0)
    assert next_allowed_time(sat_7am, NY, "22:00", "06:00", [5]) == utc(2026, 1, 17, 3, 0)


def test_a_window_crossing_midnight_opens_in_the_evening():
    wed_noon = utc(2026, 1, 7, 17, 0)
    assert next_allowed_time(wed_noon, NY, "22:00", "06:00") == utc(2026, 1, 8, 3, 0)


def test_other_zones_work_the_same():
    now = utc(2026, 6, 1, 0, 0)  # Mon 09:00 in Tokyo (+9, no DST)
    assert next_allowed_time(now, "Asia/Tokyo", "10:00", "18:00") == utc(2026, 6, 1, 1, 0)


@pytest.mark.parametrize("value", ["9:00", "24:00", "09:60", "0900", "", None, "09:00:00"])
def test_bad_times_are_rejected(value):
    with pytest.raises(ValueError):
        parse_hhmm(value)


def test_bad_zone_and_day_are_rejected():
    with pytest.raises(ValueError):
        next_allowed_time(utc(2026, 1, 1), "Nowhere/City")
    with pytest.raises(ValueError):
        next_allowed_time(utc(2026, 1, 1), "UTC", None, None, [7])


def test_naive_now_is_rejected():
    with pytest.raises(ValueError):
        next_allowed_time(datetime(2026, 1, 1), "UTC")
