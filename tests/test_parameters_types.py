"""The parameter types beyond the basic ones: round trips, checks, ranges, task ids."""

from __future__ import annotations

import datetime as dt
import enum
import operator
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import batchdeps as bd
from batchdeps import date_interval as di
from batchdeps.errors import ParameterError
from batchdeps.parameters import thaw


class Color(enum.Enum):
    RED = 1
    GREEN = 2


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(),
                      st.floats(allow_nan=False, allow_infinity=False))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=12)
naive = st.datetimes(min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9999, 1, 1))


def round_trips(param: bd.Parameter, value: Any) -> Any:
    """The value after parse(serialize(.)), which must equal the normalized value."""
    normal = param.normalize(value)
    again = param.parse(param.serialize(normal))
    assert again == normal
    assert param.serialize(again) == param.serialize(normal)
    return normal


@given(st.lists(json_value, max_size=5))
def test_nested_lists_round_trip_frozen(value: list[Any]) -> None:
    normal = round_trips(bd.ListParameter(), value)
    assert isinstance(normal, tuple) and hash(normal) is not None


@given(st.dictionaries(st.text(max_size=8), json_value, max_size=5))
def test_dicts_round_trip_frozen(value: dict[str, Any]) -> None:
    normal = round_trips(bd.DictParameter(), value)
    assert thaw(normal) == value and hash(normal) is not None


@given(st.lists(st.lists(st.integers(), max_size=3), max_size=4))
def test_tuples_of_tuples_round_trip(value: list[list[int]]) -> None:
    assert round_trips(bd.TupleParameter(), value) == tuple(tuple(v) for v in value)


@given(st.timedeltas(min_value=dt.timedelta(days=-10**6), max_value=dt.timedelta(days=10**6)))
def test_timedeltas_round_trip_to_the_microsecond(value: dt.timedelta) -> None:
    round_trips(bd.TimeDeltaParameter(), value)


@given(naive)
def test_clock_parameters_round_trip_and_round_down(value: dt.datetime) -> None:
    for param, unit in ((bd.DateHourParameter(), "hour"), (bd.DateMinuteParameter(), "minute"),
                        (bd.DateSecondParameter(), "second")):
        normal = round_trips(param, value)
        assert normal <= value and value - normal < dt.timedelta(**{unit + "s": 1})
    assert round_trips(bd.DateMinuteParameter(interval=15), value).minute % 15 == 0


@given(st.dates(min_value=dt.date(1000, 1, 1)))
def test_month_and_year_round_trip_as_first_days(value: dt.date) -> None:
    assert round_trips(bd.MonthParameter(), value) == value.replace(day=1)
    assert round_trips(bd.YearParameter(), value) == dt.date(value.year, 1, 1)
    assert round_trips(bd.MonthParameter(interval=4), value).month in (1, 5, 9)


@given(st.sampled_from([di.Date, di.Week, di.Month, di.Year]),
       st.dates(min_value=dt.date(1000, 1, 8), max_value=dt.date(9998, 1, 1)))
def test_date_intervals_round_trip(kind: type, day: dt.date) -> None:
    round_trips(bd.DateIntervalParameter(), kind.from_date(day))


@given(st.lists(st.sampled_from(["a", "b", "c"]), max_size=5))
def test_choice_lists_round_trip_keeping_order_and_repeats(value: list[str]) -> None:
    assert round_trips(bd.ChoiceListParameter(choices=["a", "b", "c"]), value) == tuple(value)


@given(st.lists(st.sampled_from(list(Color)), max_size=4))
def test_enum_lists_round_trip(value: list[Color]) -> None:
    assert round_trips(bd.EnumListParameter(enum=Color), value) == tuple(value)


@given(st.integers(min_value=-3, max_value=6))
def test_numerical_values_in_bounds_round_trip(value: int) -> None:
    round_trips(bd.NumericalParameter(var_type=int, min_value=-3, max_value=7), value)


@given(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=20))
def test_paths_round_trip(text: str) -> None:
    round_trips(bd.PathParameter(), Path(text))


def test_numerical_bounds_hold_for_values_from_code_too() -> None:
    class Knob(bd.Task):
        level = bd.NumericalParameter(var_type=float, min_value=0.0, max_value=1.0,
                                      left_op=operator.lt, right_op=operator.le)

    assert Knob(level=1).level == 1.0
    with pytest.raises(ParameterError, match=r"level.*float in \(0.0, 1.0\].*outside"):
        Knob(level=0)
    with pytest.raises(TypeError, match="needs min_value="):
        bd.NumericalParameter(var_type=int, max_value=3)


def test_choices_are_checked_and_offered_for_completion() -> None:
    param = bd.ChoiceParameter(choices=[0.1, 0.2], var_type=float)
    assert param.parse("0.2") == 0.2 and param.completions() == ["0.1", "0.2"]
    assert param.type_name == "{0.1|0.2}"
    with pytest.raises(ValueError, match="not one of 0.1, 0.2"):
        param.parse("0.3")
    with pytest.raises(TypeError, match="choice 1 is not a float"):
        bd.ChoiceParameter(choices=[1], var_type=float)


def test_path_parameter_makes_absolute_and_checks_existence(tmp_path: Path,
                                                            monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.csv").write_text("x")
    assert bd.PathParameter(absolute=True).parse("here.csv") == tmp_path / "here.csv"
    assert bd.PathParameter(exists=True).parse("here.csv") == Path("here.csv")
    with pytest.raises(ValueError, match="gone.csv does not exist"):
        bd.PathParameter(exists=True).parse("gone.csv")


def test_optional_parameters_take_none_and_the_empty_string() -> None:
    class Maybe(bd.Task):
        n = bd.OptionalIntParameter()
        tags = bd.OptionalDictParameter()
        where = bd.OptionalPathParameter(default="x")

    task = Maybe()
    assert (task.n, task.tags, task.where) == (None, None, Path("x"))
    assert Maybe(where=None).where is None and Maybe(where="").where is None
    assert Maybe(n="").n is None and Maybe(n="4").n == 4
    assert task.to_str_params() == {"n": "", "tags": "", "where": "x"}
    assert Maybe(where=None).task_id == "Maybe(n=None, tags=None, where=None)"
    with pytest.raises(ParameterError, match="'n'"):
        Maybe(n="four")


def test_task_parameter_is_a_class_written_by_family() -> None:
    class Source(bd.ExternalTask):
        pass

    class Report(bd.Task):
        source = bd.TaskParameter()

    report = Report(source="Source")
    assert report.source is Source
    assert report.task_id == "Report(source=Source)" == Report(source=Source).task_id
    assert Report.parameters()[0].parse("batchdeps.task.WrapperTask") is bd.WrapperTask
    with pytest.raises(ParameterError, match="no task is called 'Nowhere'"):
        Report(source="Nowhere")
    with pytest.raises(ParameterError, match="expected a task class"):
        Report(source=Source())


def test_task_parameter_refuses_an_ambiguous_family() -> None:
    def make() -> type:
        class Twice(bd.Task):
            pass

        return Twice

    kept = [make(), make()]
    with pytest.raises(ValueError, match="'Twice' is ambiguous"):
        bd.TaskParameter().parse("Twice")
    assert len(kept) == 2


def test_ranges_of_months_years_hours_and_intervals() -> None:
    assert [str(v) for v in bd.MonthParameter().parse_range("2026-11..2027-02")] == \
        ["2026-11-01", "2026-12-01", "2027-01-01", "2027-02-01"]
    assert bd.YearParameter(interval=2).parse_range("2020..2025") == \
        [dt.date(y, 1, 1) for y in (2020, 2022, 2024)]
    assert len(bd.DateHourParameter(interval=6).parse_range("2026-11-20T00..2026-11-21T00")) == 5
    weeks = bd.DateIntervalParameter().parse_range("2026-W52..2027-W02")
    assert [str(w) for w in weeks] == ["2026-W52", "2026-W53", "2027-W01", "2027-W02"]
    with pytest.raises(ValueError, match="of one kind"):
        bd.DateIntervalParameter().parse_range("2026-W52..2027-01")
    assert bd.DateIntervalParameter().parse_range("2026-11-01-2026-11-08") is None


def test_interval_and_clock_parameters_take_config_native_values() -> None:
    assert bd.DateIntervalParameter().normalize(dt.date(2026, 1, 2)) == di.Date(2026, 1, 2)
    assert bd.DateHourParameter().normalize(dt.date(2026, 1, 2)) == dt.datetime(2026, 1, 2)
    assert bd.TimeDeltaParameter().normalize(90) == dt.timedelta(seconds=90)
    assert bd.MonthParameter().normalize(di.Month(2026, 5)) == dt.date(2026, 5, 1)
    with pytest.raises(ValueError, match="without a time zone"):
        bd.DateHourParameter().normalize(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))


def test_structured_values_in_task_ids_are_compact_and_distinct() -> None:
    class Shape(bd.Task):
        tags = bd.DictParameter()
        pairs = bd.TupleParameter(default=((1, 2),))
        every = bd.TimeDeltaParameter(default=dt.timedelta(hours=1))
        span = bd.DateIntervalParameter(default="2026-W47")

    task = Shape(tags={"b": [1, {"c": None}], "a": "x"})
    assert task.task_id == ('Shape(tags={"b":[1,{"c":null}],"a":"x"}, pairs=[[1,2]], '
                            'every=0 w 0 d 1 h 0 m 0 s, span=2026-W47)')
    assert Shape(tags={"a": "x", "b": [1, {"c": None}]}) != task  # order is kept
    assert hash(task) == hash(Shape(tags='{"b":[1,{"c":null}],"a":"x"}'))


def test_free_text_none_is_quoted_so_that_it_differs_from_the_value_none() -> None:
    class Named(bd.Task):
        label = bd.OptionalParameter()

    assert Named(label="None").task_id == 'Named(label="None")'
    assert Named().task_id == "Named(label=None)"
    assert Named(label="None") != Named()


def test_luigi_constructor_options_are_kept_for_the_task_model() -> None:
    param = bd.IntParameter(3, significant=False, positional=False, batch_method=max,
                            description=None)
    assert (param.significant, param.positional, param.batch_method, param.description) == \
        (False, False, max, "")
    assert bd.Parameter().significant and bd.Parameter().positional


def test_every_parameter_type_is_exported_from_the_package() -> None:
    from batchdeps import parameters

    assert set(parameters.PARAMETER_TYPES) == set(bd._PARAMETER_TYPES)  # type: ignore[attr-defined]
    for name in parameters.PARAMETER_TYPES:
        assert getattr(bd, name) is getattr(parameters, name)
        assert issubclass(getattr(bd, name), bd.Parameter)
    defined = {name for name, value in vars(parameters).items()
               if isinstance(value, type) and issubclass(value, bd.Parameter)}
    assert defined == set(parameters.PARAMETER_TYPES)  # none defined and left unlisted


def test_a_typed_parameter_never_warns_about_its_own_values() -> None:
    class Quiet(bd.Task):
        when = bd.DateHourParameter()
        path = bd.PathParameter()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Quiet(when=dt.datetime(2026, 1, 1, 5), path=Path("a"))
