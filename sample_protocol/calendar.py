"""Kazakhstan business days: holidays, moved days off and working weekends.

The calendar comes from the ``holidays`` package (``country_holidays('KZ')``), which
models moved days off and working weekends (Sunday 2025-01-05 was a working day). The
government announces transfers during the year, and the package learns of them only in a
later release, so an operator can add extra holidays and extra working days from a JSON
file (:meth:`BusinessCalendar.from_file`)::

    {"extra_holidays": ["2027-01-04"], "extra_working_days": ["2027-01-09"]}

Counting conventions:

* ``add_business_days(d, n)`` is the ``n``-th business day after ``d``; ``d`` itself never
  counts. ``n`` may be negative (the ``|n|``-th business day before ``d``); ``n == 0``
  returns ``d`` unchanged, business day or not.
* ``business_days_between(start, end)`` counts the business days in ``(start, end]`` when
  ``end >= start``, and minus those in ``[end, start)`` otherwise, so that
  ``business_days_between(d, add_business_days(d, n)) == n`` for every ``n``.
* ``deadline(received, k)`` is ``add_business_days(received, k)`` with ``k >= 1``: a body
  that receives a request on ``received`` answers by the end of that day.

Dates outside the years the package covers for Kazakhstan (1991-2100) raise
:class:`CalendarError`, as does anything that is not a ``datetime.date`` (a ``datetime``
included: its day depends on a time zone).

>>> deadline(dt.date(2025, 3, 19))
datetime.date(2025, 4, 7)
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import holidays

from .errors import CalendarError

__all__ = ["BusinessCalendar", "deadline", "default_calendar"]

_EXTRA_HOLIDAY_NAME = "Extra holiday (calendar override)"
_FILE_KEYS = ("comment", "extra_holidays", "extra_working_days")


@functools.cache
def _kz() -> holidays.HolidayBase:
    return holidays.country_holidays("KZ")


def _check_date(value: object, what: str) -> dt.date:
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise CalendarError(
            f"{what}: expected a datetime.date, found {type(value).__name__} {value!r}",
            code="calendar_bad_date",
        )
    return value


def _check_int(value: object, what: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CalendarError(
            f"{what}: expected an integer, found {type(value).__name__} {value!r}",
            code="calendar_bad_count",
        )
    if minimum is not None and value < minimum:
        raise CalendarError(
            f"{what}: expected an integer >= {minimum}, found {value}", code="calendar_bad_count"
        )
    return value


class BusinessCalendar:
    """Kazakhstan working days, with operator overrides.

    Immutable: the overrides are frozen sets fixed at construction. A date may not be both
    an extra holiday and an extra working day.

    >>> cal = BusinessCalendar(extra_holidays=[dt.date(2025, 3, 26)])
    >>> cal.add_business_days(dt.date(2025, 3, 19), 10)
    datetime.date(2025, 4, 8)
    """

    __slots__ = ("_first", "_holidays", "_last", "extra_holidays", "extra_working_days")

    extra_holidays: frozenset[dt.date]
    extra_working_days: frozenset[dt.date]
    _holidays: holidays.HolidayBase
    _first: dt.date
    _last: dt.date

    def __init__(
        self,
        extra_holidays: Iterable[dt.date] = (),
        extra_working_days: Iterable[dt.date] = (),
    ) -> None:
        off = frozenset(_check_date(d, "extra_holidays") for d in extra_holidays)
        on = frozenset(_check_date(d, "extra_working_days") for d in extra_working_days)
        both = sorted(off & on)
        if both:
            raise CalendarError(
                f"extra days: expected each date in one list only, found {both[0].isoformat()} "
                "in both extra_holidays and extra_working_days",
                code="calendar_conflict",
            )
        kz = _kz()
        set_ = object.__setattr__
        set_(self, "extra_holidays", off)
        set_(self, "extra_working_days", on)
        set_(self, "_holidays", kz)
        set_(self, "_first", dt.date(kz.start_year, 1, 1))
        set_(self, "_last", dt.date(kz.end_year, 12, 31))
        for d in sorted(off | on):
            self._in_range(d, "extra days")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"BusinessCalendar is immutable (cannot set {name!r})")

    def __repr__(self) -> str:
        return (
            f"BusinessCalendar(extra_holidays={len(self.extra_holidays)} dates, "
            f"extra_working_days={len(self.extra_working_days)} dates)"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BusinessCalendar):
            return NotImplemented
        return (self.extra_holidays, self.extra_working_days) == (
            other.extra_holidays,
            other.extra_working_days,
        )

    def __hash__(self) -> int:
        return hash((self.extra_holidays, self.extra_working_days))

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_file(cls, path: str | Path) -> BusinessCalendar:
        """Read overrides from a JSON file (keys ``extra_holidays``, ``extra_working_days``,
        each a list of ISO dates, and an optional free-text ``comment``)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CalendarError(
                f"{path}: cannot read calendar overrides: {exc}", code="calendar_file_unreadable"
            ) from exc
        try:
            doc: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalendarError(
                f"{path}: expected JSON, found a syntax error at line {exc.lineno} column "
                f"{exc.colno}: {exc.msg}",
                code="calendar_file_json",
            ) from exc
        if not isinstance(doc, dict):
            raise CalendarError(
                f"{path}: expected a JSON object with keys {', '.join(_FILE_KEYS)}, "
                f"found {type(doc).__name__}",
                code="calendar_file_format",
            )
        unknown = sorted(set(doc) - set(_FILE_KEYS))
        if unknown:
            raise CalendarError(
                f"{path}: expected keys among {', '.join(_FILE_KEYS)}, found unknown key "
                f"{unknown[0]!r}",
                code="calendar_file_format",
            )
        lists = {key: _read_dates(path, key, doc.get(key, [])) for key in _FILE_KEYS[1:]}
        try:
            return cls(lists["extra_holidays"], lists["extra_working_days"])
        except CalendarError as exc:
            raise CalendarError(f"{path}: {exc}", code=exc.code) from exc

    # ------------------------------------------------------------------ queries

    def _in_range(self, d: dt.date, what: str) -> dt.date:
        if not self._first <= d <= self._last:
            raise CalendarError(
                f"{what}: expected a date in {self._first.year}-{self._last.year} (the years the "
                f"Kazakhstan calendar covers), found {d.isoformat()}",
                code="calendar_out_of_range",
            )
        return d

    def is_business_day(self, d: dt.date) -> bool:
        """True when ``d`` is a working day in Kazakhstan (after the overrides)."""
        self._in_range(_check_date(d, "is_business_day"), "is_business_day")
        if d in self.extra_holidays:
            return False
        if d in self.extra_working_days:
            return True
        return bool(self._holidays.is_working_day(d))

    def add_business_days(self, d: dt.date, n: int) -> dt.date:
        """The ``n``-th business day after ``d`` (before it if ``n < 0``; ``d`` if ``n == 0``)."""
        day = self._in_range(_check_date(d, "add_business_days"), "add_business_days")
        n = _check_int(n, "add_business_days: n")
        step = dt.timedelta(days=1 if n > 0 else -1)
        left = abs(n)
        while left:
            day = self._in_range(day + step, "add_business_days")
            if self.is_business_day(day):
                left -= 1
        return day

    def business_days_between(self, start: dt.date, end: dt.date) -> int:
        """Business days in ``(start, end]``; if ``end < start``, minus those in
        ``[end, start)``."""
        start = self._in_range(_check_date(start, "business_days_between: start"), "start")
        end = self._in_range(_check_date(end, "business_days_between: end"), "end")
        if end >= start:
            first, last, sign = start + dt.timedelta(days=1), end, 1
        else:
            first, last, sign = end, start - dt.timedelta(days=1), -1
        count = 0
        day = first
        while day <= last:
            count += self.is_business_day(day)
            day += dt.timedelta(days=1)
        return sign * count

    def holidays_in(self, year: int) -> dict[dt.date, str]:
        """Named days off in ``year`` (public holidays, moved days off, extra holidays),
        sorted by date; days the overrides turn into working days are left out."""
        year = _check_int(year, "holidays_in: year")
        if not self._first.year <= year <= self._last.year:
            raise CalendarError(
                f"holidays_in: expected a year in {self._first.year}-{self._last.year}, "
                f"found {year}",
                code="calendar_out_of_range",
            )
        days = {
            d: str(name)
            for d, name in holidays.country_holidays("KZ", years=year).items()
            if d not in self.extra_working_days
        }
        days.update((d, _EXTRA_HOLIDAY_NAME) for d in self.extra_holidays if d.year == year)
        return dict(sorted(days.items()))


def _read_dates(path: Path, key: str, raw: object) -> list[dt.date]:
    if not isinstance(raw, list):
        raise CalendarError(
            f"{path}: {key}: expected a list of ISO dates, found {type(raw).__name__}",
            code="calendar_file_format",
        )
    out = []
    for i, item in enumerate(raw):
        try:
            if not isinstance(item, str) or len(item) != 10:
                raise ValueError
            out.append(dt.date.fromisoformat(item))
        except ValueError:
            raise CalendarError(
                f"{path}: {key}[{i}]: expected an ISO date YYYY-MM-DD, found {item!r}",
                code="calendar_bad_date",
            ) from None
    return out


@functools.cache
def default_calendar() -> BusinessCalendar:
    """The package's Kazakhstan calendar without overrides (built once)."""
    return BusinessCalendar()


def deadline(
    received: dt.date, business_days: int = 10, calendar: BusinessCalendar | None = None
) -> dt.date:
    """The day a reply is due: ``business_days`` (>= 1) business days after ``received``.

    The rules give state bodies 10 business days to answer a sample request.

    >>> deadline(dt.date(2026, 12, 15))
    datetime.date(2026, 12, 30)
    """
    received = _check_date(received, "deadline: received")
    business_days = _check_int(business_days, "deadline: business_days", minimum=1)
    if calendar is None:
        calendar = default_calendar()
    elif not isinstance(calendar, BusinessCalendar):
        raise CalendarError(
            f"deadline: calendar: expected a BusinessCalendar, found {type(calendar).__name__}",
            code="calendar_bad_argument",
        )
    return calendar.add_business_days(received, business_days)
