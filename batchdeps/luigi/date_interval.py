"""Luigi's date intervals: Date, Week, Month, Year and Custom spans of days.

An interval holds `date_a` (included) and `date_b` (excluded); iterating gives its dates.
Written as Luigi writes them: `2026-11-24`, `2026-W48`, `2026-11`, `2026`, and
`2026-11-01-2026-11-08` for a custom span (the second date excluded).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["Custom", "Date", "DateInterval", "Month", "Week", "Year", "parse_interval"]


class DateInterval:
    """The days from `date_a` up to but not including `date_b`."""

    def __init__(self, date_a: datetime.date, date_b: datetime.date) -> None:
        self.date_a = date_a
        self.date_b = date_b

    def dates(self) -> list[datetime.date]:
        """The days of the interval, in order."""
        return [self.date_a + datetime.timedelta(days=i)
                for i in range((self.date_b - self.date_a).days)]

    def hours(self) -> list[datetime.datetime]:
        """Every hour of the interval, as datetimes."""
        return [datetime.datetime.combine(day, datetime.time()) + datetime.timedelta(hours=h)
                for day in self.dates() for h in range(24)]

    def __iter__(self) -> Iterator[datetime.date]:
        return iter(self.dates())

    def __len__(self) -> int:
        return (self.date_b - self.date_a).days

    def __contains__(self, date: object) -> bool:
        return isinstance(date, datetime.date) and self.date_a <= date < self.date_b

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return self.to_string()

    def to_string(self) -> str:
        raise NotImplementedError

    def prev(self) -> DateInterval:
        """The interval of the same kind just before this one."""
        return self.from_date(self.date_a - datetime.timedelta(days=1))

    def next(self) -> DateInterval:
        """The interval of the same kind just after this one."""
        return self.from_date(self.date_b)

    @classmethod
    def from_date(cls, d: datetime.date) -> DateInterval:
        raise NotImplementedError(f"{cls.__name__} cannot be made from one date")

    @classmethod
    def parse(cls, s: str) -> DateInterval | None:
        raise NotImplementedError

    def _key(self) -> tuple[Any, ...]:
        return (type(self).__name__ if type(self) is not Custom else "Custom",
                self.date_a, self.date_b)

    def __hash__(self) -> int:
        return hash(repr(self))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DateInterval) and self._key() == other._key()

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __lt__(self, other: DateInterval) -> bool:
        return (self.date_a, self.date_b) < (other.date_a, other.date_b)

    def __le__(self, other: DateInterval) -> bool:
        return (self.date_a, self.date_b) <= (other.date_a, other.date_b)

    def __gt__(self, other: DateInterval) -> bool:
        return (self.date_a, self.date_b) > (other.date_a, other.date_b)

    def __ge__(self, other: DateInterval) -> bool:
        return (self.date_a, self.date_b) >= (other.date_a, other.date_b)


class Date(DateInterval):
    """One day: `2026-11-24`."""

    def __init__(self, y: int, m: int, d: int) -> None:
        day = datetime.date(y, m, d)
        super().__init__(day, day + datetime.timedelta(days=1))

    def to_string(self) -> str:
        return self.date_a.strftime("%Y-%m-%d")

    @classmethod
    def from_date(cls, d: datetime.date) -> Date:
        return cls(d.year, d.month, d.day)

    @classmethod
    def parse(cls, s: str) -> Date | None:
        if re.fullmatch(r"\d\d\d\d-\d\d-\d\d", s):
            return cls.from_date(datetime.datetime.strptime(s, "%Y-%m-%d").date())
        return None


class Week(DateInterval):
    """An ISO week, Monday to Sunday: `2026-W48`."""

    def __init__(self, y: int, w: int) -> None:
        first = datetime.date.fromisocalendar(y, w, 1)
        super().__init__(first, first + datetime.timedelta(days=7))

    def to_string(self) -> str:
        year, week, _ = self.date_a.isocalendar()
        return f"{year}-W{week:02d}"

    @classmethod
    def from_date(cls, d: datetime.date) -> Week:
        year, week, _ = d.isocalendar()
        return cls(year, week)

    @classmethod
    def parse(cls, s: str) -> Week | None:
        match = re.fullmatch(r"(\d\d\d\d)-W(\d\d)", s)
        return cls(int(match.group(1)), int(match.group(2))) if match else None


class Month(DateInterval):
    """A calendar month: `2026-11`."""

    def __init__(self, y: int, m: int) -> None:
        first = datetime.date(y, m, 1)
        after = datetime.date(y + m // 12, m % 12 + 1, 1)
        super().__init__(first, after)

    def to_string(self) -> str:
        return self.date_a.strftime("%Y-%m")

    @classmethod
    def from_date(cls, d: datetime.date) -> Month:
        return cls(d.year, d.month)

    @classmethod
    def parse(cls, s: str) -> Month | None:
        match = re.fullmatch(r"(\d\d\d\d)-(\d\d)", s)
        return cls(int(match.group(1)), int(match.group(2))) if match else None


class Year(DateInterval):
    """A calendar year: `2026`."""

    def __init__(self, y: int) -> None:
        super().__init__(datetime.date(y, 1, 1), datetime.date(y + 1, 1, 1))

    def to_string(self) -> str:
        return self.date_a.strftime("%Y")

    @classmethod
    def from_date(cls, d: datetime.date) -> Year:
        return cls(d.year)

    @classmethod
    def parse(cls, s: str) -> Year | None:
        return cls(int(s)) if re.fullmatch(r"\d\d\d\d", s) else None


class Custom(DateInterval):
    """Any span: `2026-11-01-2026-11-08` (the second date excluded)."""

    def to_string(self) -> str:
        return f"{self.date_a:%Y-%m-%d}-{self.date_b:%Y-%m-%d}"

    @classmethod
    def parse(cls, s: str) -> Custom | None:
        match = re.fullmatch(r"(\d\d\d\d-\d\d-\d\d)-(\d\d\d\d-\d\d-\d\d)", s)
        if not match:
            return None
        first, after = (datetime.datetime.strptime(part, "%Y-%m-%d").date()
                        for part in match.groups())
        return cls(first, after)


def parse_interval(s: str) -> DateInterval:
    """The interval `s` writes, tried as a year, month, week, day, then a custom span."""
    for cls in (Year, Month, Week, Date, Custom):
        found = cls.parse(s)
        if found is not None:
            return found
    raise ValueError(f"{s!r} is not a date interval (2026-11-24, 2026-W48, 2026-11, 2026, "
                     "or 2026-11-01-2026-11-08)")
