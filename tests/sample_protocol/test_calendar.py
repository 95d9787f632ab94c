from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sample_protocol.calendar import BusinessCalendar, deadline, default_calendar
from sample_protocol.errors import CalendarError

D = dt.date
SETTINGS = settings(max_examples=60, deadline=None)
dates = st.dates(min_value=D(2015, 1, 1), max_value=D(2030, 12, 31))


def _write(tmp_path, doc, name="overrides.json"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


# ----------------------------------------------------------------------- known dates


def test_known_deadlines():
    assert deadline(D(2025, 3, 19)) == D(2025, 4, 7)  # Nauryz holidays 21-25 March
    assert deadline(D(2026, 12, 15)) == D(2026, 12, 30)  # Independence Day 16 December


def test_moved_working_sunday_and_day_off():
    cal = default_calendar()
    assert D(2025, 1, 5).weekday() == 6
    assert cal.is_business_day(D(2025, 1, 5))  # worked in exchange for Friday 3 January
    assert not cal.is_business_day(D(2025, 1, 3))
    assert not cal.is_business_day(D(2025, 1, 4))  # an ordinary Saturday
    assert cal.is_business_day(D(2025, 1, 6))
    assert cal.add_business_days(D(2025, 1, 2), 1) == D(2025, 1, 5)


def test_add_business_days_conventions():
    cal = default_calendar()
    saturday = D(2025, 3, 22)
    assert cal.add_business_days(saturday, 0) == saturday
    assert cal.add_business_days(D(2025, 3, 20), 1) == D(2025, 3, 26)
    assert cal.add_business_days(D(2025, 3, 26), -1) == D(2025, 3, 20)
    assert cal.add_business_days(D(2025, 4, 7), -10) == D(2025, 3, 19)


def test_business_days_between_sign_convention():
    cal = default_calendar()
    assert cal.business_days_between(D(2025, 3, 19), D(2025, 4, 7)) == 10
    assert cal.business_days_between(D(2025, 4, 7), D(2025, 3, 19)) == -10
    assert cal.business_days_between(D(2025, 3, 21), D(2025, 3, 21)) == 0
    assert cal.business_days_between(D(2025, 3, 21), D(2025, 3, 25)) == 0  # all days off


def test_holidays_in():
    cal = default_calendar()
    days = cal.holidays_in(2025)
    assert days[D(2025, 3, 21)].startswith("Nowruz")
    assert D(2025, 1, 3) in days  # the moved day off
    assert D(2025, 1, 5) not in days
    assert list(days) == sorted(days)
    extra = BusinessCalendar(extra_holidays=[D(2025, 4, 1)], extra_working_days=[D(2025, 3, 25)])
    moved = extra.holidays_in(2025)
    assert D(2025, 4, 1) in moved and D(2025, 3, 25) not in moved
    assert D(2026, 1, 1) in cal.holidays_in(2026)


def test_default_calendar_is_cached_and_immutable():
    assert default_calendar() is default_calendar()
    cal = default_calendar()
    with pytest.raises(AttributeError):
        cal.extra_holidays = frozenset()
    assert cal == BusinessCalendar()
    assert hash(cal) == hash(BusinessCalendar())
    assert BusinessCalendar(extra_holidays=[D(2025, 4, 1)]) != cal


# ----------------------------------------------------------------------- overrides


def test_override_adds_holiday_and_shifts_deadline(tmp_path):
    path = _write(tmp_path, {"extra_holidays": ["2025-03-27"], "comment": "decree 123"})
    cal = BusinessCalendar.from_file(path)
    assert cal.extra_holidays == frozenset({D(2025, 3, 27)})
    assert not cal.is_business_day(D(2025, 3, 27))
    assert deadline(D(2025, 3, 19), calendar=cal) == D(2025, 4, 8)
    assert deadline(D(2025, 3, 19)) == D(2025, 4, 7)  # the default is untouched


def test_override_adds_working_day(tmp_path):
    path = _write(tmp_path, {"extra_working_days": ["2025-03-29"]})
    cal = BusinessCalendar.from_file(path)
    assert cal.is_business_day(D(2025, 3, 29))  # a Saturday
    assert deadline(D(2025, 3, 19), calendar=cal) == D(2025, 4, 4)


@pytest.mark.parametrize(
    ("content", "code", "fragment"),
    [
        ("{not json", "calendar_file_json", "line 1"),
        ("[]", "calendar_file_format", "JSON object"),
        ({"extra_holiday": ["2025-01-01"]}, "calendar_file_format", "'extra_holiday'"),
        ({"extra_holidays": "2025-01-01"}, "calendar_file_format", "extra_holidays"),
        ({"extra_holidays": ["2025-01-01", "2025-02-30"]}, "calendar_bad_date", "[1]"),
        ({"extra_working_days": ["01.02.2025"]}, "calendar_bad_date", "'01.02.2025'"),
        ({"extra_working_days": [20250101]}, "calendar_bad_date", "20250101"),
        (
            {"extra_holidays": ["2025-05-02"], "extra_working_days": ["2025-05-02"]},
            "calendar_conflict",
            "2025-05-02",
        ),
        ({"extra_holidays": ["1985-05-02"]}, "calendar_out_of_range", "1985-05-02"),
    ],
)
def test_bad_override_files(tmp_path, content, code, fragment):
    path = _write(tmp_path, content)
    with pytest.raises(CalendarError) as err:
        BusinessCalendar.from_file(path)
    assert err.value.code == code
    assert str(path) in str(err.value)
    assert fragment in str(err.value)
    assert isinstance(err.value, ValueError)


def test_missing_override_file(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(CalendarError) as err:
        BusinessCalendar.from_file(path)
    assert err.value.code == "calendar_file_unreadable"
    assert "absent.json" in str(err.value)


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call",
    [
        lambda: deadline("2025-03-19"),  # type: ignore[arg-type]
        lambda: deadline(dt.datetime(2025, 3, 19, 10, 0)),
        lambda: default_calendar().is_business_day(None),  # type: ignore[arg-type]
        lambda: BusinessCalendar(extra_holidays=["2025-01-01"]),  # type: ignore[list-item]
        lambda: default_calendar().business_days_between(D(2025, 1, 1), 5),  # type: ignore[arg-type]
    ],
)
def test_non_dates_are_refused(call):
    with pytest.raises(CalendarError) as err:
        call()
    assert err.value.code == "calendar_bad_date"
    assert "expected a datetime.date" in str(err.value)


@pytest.mark.parametrize("days", [0, -3, True, 2.5, "10"])
def test_deadline_needs_a_positive_count(days):
    with pytest.raises(CalendarError) as err:
        deadline(D(2025, 3, 19), days)
    assert err.value.code == "calendar_bad_count"
    assert "business_days" in str(err.value)


def test_out_of_range_and_bad_calendar():
    with pytest.raises(CalendarError) as err:
        default_calendar().is_business_day(D(1985, 1, 1))
    assert err.value.code == "calendar_out_of_range"
    with pytest.raises(CalendarError) as err:
        default_calendar().add_business_days(D(2100, 12, 30), 5)
    assert err.value.code == "calendar_out_of_range"
    with pytest.raises(CalendarError) as err:
        default_calendar().holidays_in(1900)
    assert err.value.code == "calendar_out_of_range"
    with pytest.raises(CalendarError) as err:
        deadline(D(2025, 3, 19), calendar="KZ")  # type: ignore[arg-type]
    assert err.value.code == "calendar_bad_argument"


# ----------------------------------------------------------------------- properties


@SETTINGS
@given(dates, st.integers(1, 30))
def test_deadline_is_a_later_business_day(received, days):
    due = deadline(received, days)
    assert due > received
    assert default_calendar().is_business_day(due)
    assert default_calendar().business_days_between(received, due) == days


@SETTINGS
@given(dates, st.integers(0, 20))
def test_deadline_is_monotone(received, gap):
    later = received + dt.timedelta(days=gap)
    assert deadline(later) >= deadline(received)


@SETTINGS
@given(dates, st.integers(-60, 60))
def test_between_inverts_add(start, n):
    cal = default_calendar()
    assert cal.business_days_between(start, cal.add_business_days(start, n)) == n


@SETTINGS
@given(dates, st.sets(dates.filter(lambda d: d.year == 2025), max_size=5))
def test_extra_holidays_never_make_a_deadline_earlier(received, extra):
    cal = BusinessCalendar(extra_holidays=extra)
    due = deadline(received, calendar=cal)
    assert due >= deadline(received)
    assert due not in extra
