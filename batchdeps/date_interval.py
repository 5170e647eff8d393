"""Spans of whole days: a Date, an ISO Week, a Month, a Year, or a Custom span.

Every interval is half-open, `[date_a, date_b)`: `Month(2026, 11)` runs from 2026-11-01
up to, not including, 2026-12-01. The text forms are Luigi's:

    2026           Year(2026)
    2026-11        Month(2026, 11)
    2026-W47       Week(2026, 47)       ISO 8601 week: Monday to Sunday
    2026-11-20     Date(2026, 11, 20)
    2026-11-01-2026-11-08   Custom(2026-11-01, 2026-11-08): seven days, the 8th excluded

`parse()` tries them in that order; `str()` gives the text back, so
`parse(str(i)) == i` for every interval.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator
from typing import Any

_ONE_DAY = _dt.timedelta(days=1)


class DateInterval:
    """Days from `date_a` (included) to `date_b` (excluded); the base of the kinds below."""

    __slots__ = ("date_a", "date_b")

    #: The text form this kind reads, as a regular expression over the whole string.
    pattern: re.Pattern[str] | None = None

    def __init__(self, date_a: _dt.date, date_b: _dt.date) -> None:
        for end in (date_a, date_b):
            if isinstance(end, _dt.datetime) or not isinstance(end, _dt.date):
                raise TypeError(f"a date interval is bounded by dates, got {end!r}")
        if date_b <= date_a:
            raise ValueError(f"a date interval ends after it starts: {date_a} to {date_b}")
        self.date_a = date_a
        self.date_b = date_b

    # -- what is in it -------------------------------------------------------------------
    def dates(self) -> list[_dt.date]:
        """Every day of the interval, in order."""
        return [self.date_a + _ONE_DAY * n for n in range((self.date_b - self.date_a).days)]

    def hours(self) -> Iterator[_dt.datetime]:
        """Every hour of the interval (24 per day), in order."""
        for day in self.dates():
            for hour in range(24):
                yield _dt.datetime.combine(day, _dt.time(hour))

    def __contains__(self, day: object) -> bool:
        """Whether a date (or the date of a datetime) is one of the interval's days."""
        if isinstance(day, _dt.datetime):
            day = day.date()
        return isinstance(day, _dt.date) and self.date_a <= day < self.date_b

    def contains(self, day: _dt.date) -> bool:
        return day in self

    def __iter__(self) -> Iterator[_dt.date]:
        return iter(self.dates())

    def __len__(self) -> int:
        """The number of days."""
        return (self.date_b - self.date_a).days

    # -- neighbours ------------------------------------------------------------------------
    def prev(self) -> DateInterval:
        """The interval of the same kind just before this one (May -> April)."""
        return self.from_date(self.date_a - _ONE_DAY)

    def next(self) -> DateInterval:
        """The interval of the same kind just after this one (2026 -> 2027)."""
        return self.from_date(self.date_b)

    @classmethod
    def from_date(cls, day: _dt.date) -> DateInterval:
        """The interval of this kind holding `day` (`Month.from_date(2026-06-06)` is 2026-06)."""
        raise NotImplementedError(f"{cls.__name__} has no from_date()")

    # -- text ------------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> DateInterval | None:
        """The interval `text` writes in this kind's form; None if it is not that form.

        Raises ValueError for the right form with an impossible value (`2026-13`).
        """
        if cls.pattern is None:
            raise NotImplementedError(f"{cls.__name__} has no text form")
        match = cls.pattern.fullmatch(text)
        if match is None:
            return None
        return cls._from_match(*(int(g) for g in match.groups()))

    @classmethod
    def _from_match(cls, *numbers: int) -> DateInterval:
        return cls(*numbers)  # type: ignore[arg-type]

    def to_string(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return self.to_string()

    # -- comparison: intervals of one kind, by their bounds ------------------------------
    def _key(self, other: object) -> tuple[tuple[_dt.date, _dt.date], tuple[_dt.date, _dt.date]]:
        if type(other) is not type(self):
            raise TypeError(f"cannot order a {type(self).__name__} and a {type(other).__name__}")
        assert isinstance(other, DateInterval)
        return (self.date_a, self.date_b), (other.date_a, other.date_b)

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self) and isinstance(other, DateInterval)
                and (self.date_a, self.date_b) == (other.date_a, other.date_b))

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.date_a, self.date_b))

    def __lt__(self, other: object) -> bool:
        mine, theirs = self._key(other)
        return mine < theirs

    def __le__(self, other: object) -> bool:
        mine, theirs = self._key(other)
        return mine <= theirs

    def __gt__(self, other: object) -> bool:
        mine, theirs = self._key(other)
        return mine > theirs

    def __ge__(self, other: object) -> bool:
        mine, theirs = self._key(other)
        return mine >= theirs

    def __reduce__(self) -> tuple[Any, ...]:
        return (parse, (self.to_string(),))


class Date(DateInterval):
    """One day, written YYYY-MM-DD."""

    __slots__ = ()
    pattern = re.compile(r"(\d{4})-(\d\d)-(\d\d)")

    def __init__(self, year: int, month: int, day: int) -> None:
        start = _dt.date(year, month, day)
        super().__init__(start, start + _ONE_DAY)

    @classmethod
    def from_date(cls, day: _dt.date) -> Date:
        return cls(day.year, day.month, day.day)

    def to_string(self) -> str:
        return self.date_a.isoformat()


class Week(DateInterval):
    """An ISO 8601 week, Monday to Sunday, written YYYY-Www.

    The week's year is the ISO year, which differs from the calendar year around New Year:
    Monday 2008-12-29 is in 2009-W01, Sunday 2010-01-03 in 2009-W53.
    """

    __slots__ = ()
    pattern = re.compile(r"(\d{4})-W(\d\d)")

    def __init__(self, year: int, week: int) -> None:
        try:
            start = _dt.date.fromisocalendar(year, week, 1)
        except ValueError:
            raise ValueError(f"{year} has no ISO week {week}") from None
        super().__init__(start, start + _ONE_DAY * 7)

    @classmethod
    def from_date(cls, day: _dt.date) -> Week:
        year, week, _ = day.isocalendar()
        return cls(year, week)

    def to_string(self) -> str:
        year, week, _ = self.date_a.isocalendar()
        return f"{year:04d}-W{week:02d}"


class Month(DateInterval):
    """A calendar month, written YYYY-MM."""

    __slots__ = ()
    pattern = re.compile(r"(\d{4})-(\d\d)")

    def __init__(self, year: int, month: int) -> None:
        start = _dt.date(year, month, 1)
        end = _dt.date(year + 1, 1, 1) if month == 12 else _dt.date(year, month + 1, 1)
        super().__init__(start, end)

    @classmethod
    def from_date(cls, day: _dt.date) -> Month:
        return cls(day.year, day.month)

    def to_string(self) -> str:
        return f"{self.date_a.year:04d}-{self.date_a.month:02d}"


class Year(DateInterval):
    """A calendar year, written YYYY."""

    __slots__ = ()
    pattern = re.compile(r"(\d{4})")

    def __init__(self, year: int) -> None:
        super().__init__(_dt.date(year, 1, 1), _dt.date(year + 1, 1, 1))

    @classmethod
    def from_date(cls, day: _dt.date) -> Year:
        return cls(day.year)

    def to_string(self) -> str:
        return f"{self.date_a.year:04d}"


class Custom(DateInterval):
    """Any span of days, written START-END with END excluded (Luigi's form):
    `2026-11-01-2026-11-08` is the seven days from the 1st to the 7th.

    `next()` and `prev()` give the span of the same length just after or before.
    """

    __slots__ = ()
    pattern = re.compile(r"(\d{4})-(\d\d)-(\d\d)-(\d{4})-(\d\d)-(\d\d)")

    @classmethod
    def _from_match(cls, *numbers: int) -> Custom:
        return cls(_dt.date(*numbers[:3]), _dt.date(*numbers[3:]))

    def next(self) -> Custom:
        return Custom(self.date_b, self.date_b + (self.date_b - self.date_a))

    def prev(self) -> Custom:
        return Custom(self.date_a - (self.date_b - self.date_a), self.date_a)

    def to_string(self) -> str:
        return f"{self.date_a.isoformat()}-{self.date_b.isoformat()}"


#: The kinds `parse()` tries, in Luigi's order.
KINDS: tuple[type[DateInterval], ...] = (Year, Month, Week, Date, Custom)


def parse(text: str) -> DateInterval:
    """The interval `text` writes in any of the forms above.

    Raises:
        ValueError: `text` is none of the forms, or names a day, week or month that does
            not exist.
    """
    stripped = text.strip()
    for kind in KINDS:
        try:
            interval = kind.parse(stripped)
        except ValueError as exc:
            raise ValueError(f"{stripped!r} is not a valid {kind.__name__.lower()}: {exc}") \
                from None
        if interval is not None:
            return interval
    raise ValueError(f"{stripped!r} is not a date interval: write a year (2026), a month "
                     "(2026-11), an ISO week (2026-W47), a day (2026-11-20) or a span "
                     "START-END with END excluded (2026-11-01-2026-11-08)")
