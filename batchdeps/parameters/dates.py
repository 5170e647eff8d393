"""Calendar parameters: dates, months, years, date-times to the hour/minute/second, and
date intervals. Each reads an inclusive range `A..B` (one task per value), except where
noted.

Luigi's `interval` and `start` are kept: `DateParameter(interval=7)` rounds a date down to
every 7th day counted from `start` (default 1970-01-01), and a range steps by 7 days.
"""

from __future__ import annotations

import datetime as _dt
import re
import warnings
from typing import Any

from .. import date_interval as _di
from .base import _NO_DEFAULT, MAX_RANGE_VALUES, Parameter

_EPOCH = _dt.datetime(1970, 1, 1)


def _ymd(value: _dt.date) -> str:
    """YYYY-MM-DD with a four-digit year (strftime drops the zeros of years below 1000)."""
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


class DateParameter(Parameter):
    """A calendar date, written YYYY-MM-DD."""

    type_name = "date"
    supports_range = True

    def __init__(self, default: Any = _NO_DEFAULT, description: str | None = "", *,
                 interval: int = 1, start: _dt.date | None = None, **kwargs: Any) -> None:
        super().__init__(default, description, **kwargs)
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise TypeError(f"{type(self).__name__} interval must be a positive integer, "
                            f"got {interval!r}")
        self.interval = interval
        self.start = start if start is not None else _EPOCH.date()

    def _range_length(self, first: _dt.date, last: _dt.date) -> int:
        return (last - first).days // self.interval + 1

    def _range_value(self, first: _dt.date, index: int) -> _dt.date:
        return first + _dt.timedelta(days=index * self.interval)

    def _range_example(self) -> str:
        return "2026-11-01..2026-11-24"

    def parse(self, text: str) -> _dt.date:
        stripped = text.strip()
        try:
            return self._round(_dt.date.fromisoformat(stripped))
        except ValueError:
            pass
        try:  # what Luigi reads besides: month and day without their zeros (2026-1-5)
            return self._round(_dt.datetime.strptime(stripped, "%Y-%m-%d").date())
        except ValueError:
            raise ValueError("expected a date as YYYY-MM-DD") from None

    def _check(self, value: Any) -> _dt.date:
        if isinstance(value, _dt.datetime):
            raise ValueError("expected a date, got a datetime")
        if not isinstance(value, _dt.date):
            raise ValueError(f"expected a date, got {type(value).__name__}")
        return self._round(value)

    def _round(self, value: _dt.date) -> _dt.date:
        """`value` rounded down to the parameter's interval (itself when interval is 1)."""
        if self.interval == 1:
            return value
        return value - _dt.timedelta(days=(value - self.start).days % self.interval)

    def serialize(self, value: Any) -> str:
        return _ymd(value)


def _add_months(day: _dt.date, months: int) -> _dt.date:
    index = day.year * 12 + day.month - 1 + months
    return _dt.date(index // 12, index % 12 + 1, 1)


def _months_between(first: _dt.date, last: _dt.date) -> int:
    return (last.year - first.year) * 12 + last.month - first.month


class MonthParameter(DateParameter):
    """A month, written YYYY-MM; the value is the month's first day (a `datetime.date`).

    From code it takes a date (its month) or a `date_interval.Month`.
    """

    type_name = "month"
    _FORM = re.compile(r"(\d{4})-(\d{1,2})")

    def parse(self, text: str) -> _dt.date:
        match = self._FORM.fullmatch(text.strip())
        if match is None:
            raise ValueError("expected a month as YYYY-MM")
        return self._round(_dt.date(int(match[1]), int(match[2]), 1))

    def _check(self, value: Any) -> _dt.date:
        if isinstance(value, _di.Month):
            value = value.date_a
        if not isinstance(value, _dt.date):
            raise ValueError(f"expected a date or a Month, got {type(value).__name__}")
        return self._round(value)

    def _round(self, value: _dt.date) -> _dt.date:
        months = _months_between(self.start, value)
        return _add_months(self.start.replace(day=1), months - months % self.interval)

    def _range_length(self, first: _dt.date, last: _dt.date) -> int:
        return _months_between(first, last) // self.interval + 1

    def _range_value(self, first: _dt.date, index: int) -> _dt.date:
        return _add_months(first, index * self.interval)

    def _range_example(self) -> str:
        return "2026-01..2026-06"

    def serialize(self, value: Any) -> str:
        return f"{value.year:04d}-{value.month:02d}"


class YearParameter(DateParameter):
    """A year, written YYYY; the value is its first day (a `datetime.date`).

    From code it takes a date (its year) or a `date_interval.Year`.
    """

    type_name = "year"
    _FORM = re.compile(r"\d{4}")

    def parse(self, text: str) -> _dt.date:
        stripped = text.strip()
        if self._FORM.fullmatch(stripped) is None:
            raise ValueError("expected a year as YYYY")
        return self._round(_dt.date(int(stripped), 1, 1))

    def _check(self, value: Any) -> _dt.date:
        if isinstance(value, _di.Year):
            value = value.date_a
        if not isinstance(value, _dt.date):
            raise ValueError(f"expected a date or a Year, got {type(value).__name__}")
        return self._round(value)

    def _round(self, value: _dt.date) -> _dt.date:
        return _dt.date(value.year - (value.year - self.start.year) % self.interval, 1, 1)

    def _range_length(self, first: _dt.date, last: _dt.date) -> int:
        return (last.year - first.year) // self.interval + 1

    def _range_value(self, first: _dt.date, index: int) -> _dt.date:
        return first.replace(year=first.year + index * self.interval)

    def _range_example(self) -> str:
        return "2020..2026"

    def serialize(self, value: Any) -> str:
        return f"{value.year:04d}"


class DateTimeParameter(Parameter):
    """A date and time, written YYYY-MM-DDTHH:MM[:SS].

    `step` is the spacing of the values of a range `A..B` (default one hour).
    """

    type_name = "datetime"
    supports_range = True

    def __init__(self, default: Any = _NO_DEFAULT, description: str | None = "",
                 step: _dt.timedelta = _dt.timedelta(hours=1), **kwargs: Any) -> None:
        super().__init__(default, description, **kwargs)
        if not isinstance(step, _dt.timedelta) or step <= _dt.timedelta(0):
            raise TypeError(f"DateTimeParameter step must be a positive timedelta, got {step!r}")
        self.step = step

    def _range_length(self, first: _dt.datetime, last: _dt.datetime) -> int:
        return (last - first) // self.step + 1

    def _range_value(self, first: _dt.datetime, index: int) -> _dt.datetime:
        return first + self.step * index

    def _range_example(self) -> str:
        return "2026-11-01T00:00..2026-11-01T23:00"

    def parse(self, text: str) -> _dt.datetime:
        try:
            return _dt.datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError("expected a date-time as YYYY-MM-DDTHH:MM:SS") from None

    def _check(self, value: Any) -> _dt.datetime:
        if not isinstance(value, _dt.datetime):
            raise ValueError(f"expected a datetime, got {type(value).__name__}")
        return value

    def serialize(self, value: Any) -> str:
        return str(value.isoformat())


class _ClockParameter(DateTimeParameter):
    """A date-time to a unit (hour, minute, second), written in Luigi's compact form;
    values are rounded down to every `interval` units counted from `start` (1970-01-01)."""

    unit = _dt.timedelta(hours=1)
    forms: tuple[str, ...] = ()
    example = ""

    def __init__(self, default: Any = _NO_DEFAULT, description: str | None = "", *,
                 interval: int = 1, start: _dt.datetime | None = None, **kwargs: Any) -> None:
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise TypeError(f"{type(self).__name__} interval must be a positive integer, "
                            f"got {interval!r}")
        super().__init__(default, description, step=self.unit * interval, **kwargs)
        self.interval = interval
        self.start = start if start is not None else _EPOCH

    def parse(self, text: str) -> _dt.datetime:
        stripped = text.strip()
        for form in self.forms:
            try:
                return self._round(_dt.datetime.strptime(stripped, form))
            except ValueError:
                continue
        raise ValueError(f"expected a date-time as {self.example}")

    def _check(self, value: Any) -> _dt.datetime:
        if not isinstance(value, _dt.date):
            raise ValueError(f"expected a datetime, got {type(value).__name__}")
        if not isinstance(value, _dt.datetime):
            value = _dt.datetime.combine(value, _dt.time())
        if value.tzinfo is not None:
            raise ValueError("expected a datetime without a time zone")
        return self._round(value)

    def _round(self, value: _dt.datetime) -> _dt.datetime:
        value = value.replace(microsecond=0)
        return value - (value - self.start) % self.step

    def _range_example(self) -> str:
        return f"{self.example}..{self.example}"

    def serialize(self, value: Any) -> str:
        text = f"{_ymd(value)}T{value.hour:02d}"
        if self.unit < _dt.timedelta(hours=1):
            text += f"{value.minute:02d}"
        if self.unit < _dt.timedelta(minutes=1):
            text += f"{value.second:02d}"
        return text


class DateHourParameter(_ClockParameter):
    """A date-time to the hour, written YYYY-MM-DDTHH (`2026-11-20T19`)."""

    type_name = "datehour"
    unit = _dt.timedelta(hours=1)
    forms = ("%Y-%m-%dT%H",)
    example = "2026-11-20T19"


class DateMinuteParameter(_ClockParameter):
    """A date-time to the minute, written YYYY-MM-DDTHHMM (`2026-11-20T1907`; Luigi's
    older `2026-11-20T19H07` is read too, with Luigi's DeprecationWarning)."""

    type_name = "dateminute"
    unit = _dt.timedelta(minutes=1)
    forms = ("%Y-%m-%dT%H%M", "%Y-%m-%dT%HH%M")
    example = "2026-11-20T1907"

    def parse(self, text: str) -> _dt.datetime:
        value = super().parse(text)
        if "H" in text.strip().partition("T")[2]:
            warnings.warn('Using "H" between hours and minutes is deprecated, omit it '
                          "instead.", DeprecationWarning, stacklevel=3)
        return value


class DateSecondParameter(_ClockParameter):
    """A date-time to the second, written YYYY-MM-DDTHHMMSS (`2026-11-20T190738`)."""

    type_name = "datesecond"
    unit = _dt.timedelta(seconds=1)
    forms = ("%Y-%m-%dT%H%M%S",)
    example = "2026-11-20T190738"


class DateIntervalParameter(Parameter):
    """A `date_interval.DateInterval`: a year (2026), a month (2026-11), an ISO week
    (2026-W47), a day (2026-11-20) or a span START-END with END excluded
    (2026-11-01-2026-11-08: seven days).

    A range `A..B` of two intervals of one kind gives every interval of that kind from A
    to B, both included (`2026-W01..2026-W10`: ten weeks).
    """

    type_name = "interval"
    supports_range = True

    def parse(self, text: str) -> _di.DateInterval:
        return _di.parse(text)

    def _check(self, value: Any) -> _di.DateInterval:
        if isinstance(value, _di.DateInterval):
            return value
        if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
            return _di.Date.from_date(value)  # a TOML date in the config: that day
        raise ValueError(f"expected a date interval, got {type(value).__name__}")

    def _range_values(self, first: _di.DateInterval,
                      last: _di.DateInterval) -> list[_di.DateInterval]:
        values = [first]
        following = first.next()
        while following <= last:
            if len(values) >= MAX_RANGE_VALUES:
                raise ValueError(f"the range holds more than the {MAX_RANGE_VALUES:,} "
                                 "values allowed")
            values.append(following)
            following = following.next()
        return values

    def _range_example(self) -> str:
        return "2026-W01..2026-W10"

    def serialize(self, value: Any) -> str:
        return str(value)
