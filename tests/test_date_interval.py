"""batchdeps.date_interval: the kinds of interval, their text forms, neighbours, days."""

from __future__ import annotations

import datetime as dt
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchdeps import date_interval as di

D = dt.date


@pytest.mark.parametrize(("text", "kind", "first", "end"), [
    ("2026", di.Year, D(2026, 1, 1), D(2027, 1, 1)),
    ("2026-11", di.Month, D(2026, 11, 1), D(2026, 12, 1)),
    ("2026-12", di.Month, D(2026, 12, 1), D(2027, 1, 1)),
    ("2026-W47", di.Week, D(2026, 11, 16), D(2026, 11, 23)),
    ("2009-W01", di.Week, D(2008, 12, 29), D(2009, 1, 5)),
    ("2009-W53", di.Week, D(2009, 12, 28), D(2010, 1, 4)),
    ("2026-11-20", di.Date, D(2026, 11, 20), D(2026, 11, 21)),
    ("2026-11-01-2026-11-08", di.Custom, D(2026, 11, 1), D(2026, 11, 8)),
])
def test_each_form_parses_to_its_kind_half_open(text: str, kind: type, first: dt.date,
                                                end: dt.date) -> None:
    interval = di.parse(text)
    assert type(interval) is kind
    assert (interval.date_a, interval.date_b) == (first, end)
    assert str(interval) == text
    assert interval.dates()[0] == first and interval.dates()[-1] == end - dt.timedelta(1)
    assert len(interval) == (end - first).days == len(list(interval))


@pytest.mark.parametrize(("text", "message"), [
    ("2026-13", "not a valid month"), ("2026-W54", "no ISO week 54"),
    ("2026-02-30", "not a valid date"), ("2026-11-08-2026-11-01", "ends after it starts"),
    ("Nov 2026", "not a date interval"), ("", "not a date interval"),
])
def test_bad_text_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        di.parse(text)


def test_prev_and_next_cross_year_ends() -> None:
    assert str(di.Week(2026, 53 - 1).next()) == "2026-W53"
    assert str(di.Week(2026, 53).next()) == "2027-W01"
    assert str(di.Week(2027, 1).prev()) == "2026-W53"
    assert str(di.Month(2026, 12).next()) == "2027-01"
    assert str(di.Month(2026, 1).prev()) == "2025-12"
    assert str(di.Year(2026).next()) == "2027"
    assert str(di.Date(2026, 3, 1).prev()) == "2026-02-28"
    custom = di.parse("2026-11-01-2026-11-08")
    assert str(custom.next()) == "2026-11-08-2026-11-15"
    assert str(custom.prev()) == "2026-10-25-2026-11-01"


def test_contains_days_of_the_interval_only() -> None:
    month = di.Month(2026, 2)
    assert D(2026, 2, 1) in month and D(2026, 2, 28) in month
    assert D(2026, 3, 1) not in month and D(2026, 1, 31) not in month
    assert dt.datetime(2026, 2, 10, 13) in month and month.contains(D(2026, 2, 10))
    assert "2026-02-10" not in month
    assert len(list(month.hours())) == 28 * 24


def test_equal_only_within_one_kind_and_ordered_within_it() -> None:
    assert di.Date(2026, 1, 1) == di.parse("2026-01-01")
    assert di.Date(2026, 1, 1) != di.Custom(D(2026, 1, 1), D(2026, 1, 2))
    assert len({di.Month(2026, 1), di.Month(2026, 1), di.Year(2026)}) == 2
    assert di.Month(2026, 1) < di.Month(2026, 2) <= di.Month(2026, 2)
    with pytest.raises(TypeError, match="cannot order a Month and a Year"):
        _ = di.Month(2026, 1) < di.Year(2026)


def test_a_datetime_bound_or_empty_span_is_refused() -> None:
    with pytest.raises(TypeError):
        di.Custom(dt.datetime(2026, 1, 1), D(2026, 1, 2))
    with pytest.raises(ValueError):
        di.Custom(D(2026, 1, 2), D(2026, 1, 2))


kinds = st.sampled_from([di.Date, di.Week, di.Month, di.Year])


@given(kinds, st.dates(min_value=D(1000, 1, 8), max_value=D(9998, 12, 1)))
def test_every_interval_round_trips_and_holds_its_day(kind: type, day: dt.date) -> None:
    interval = kind.from_date(day)
    assert day in interval
    assert di.parse(str(interval)) == interval
    assert pickle.loads(pickle.dumps(interval)) == interval
    assert interval.next().prev() == interval
    assert interval.next().date_a == interval.date_b


@given(st.dates(min_value=D(1000, 1, 1), max_value=D(9990, 1, 1)),
       st.integers(min_value=1, max_value=2000))
def test_custom_spans_round_trip(start: dt.date, days: int) -> None:
    span = di.Custom(start, start + dt.timedelta(days))
    assert di.parse(str(span)) == span and len(span) == days
