"""Unit tests of batchdeps.parameters: parsing, normalising, serialising, errors, defaults."""

from __future__ import annotations

import datetime as dt
import enum
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import batchdeps as bd
from batchdeps.errors import ParameterError


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Mode(str, enum.Enum):
    FAST = "fast"
    SLOW = "slow"


def named(param: bd.Parameter, name: str = "p") -> bd.Parameter:
    """A parameter with a name, as if it were declared on a task class."""
    param.__set_name__(object, name)
    return param


# -- Parameter (str) -------------------------------------------------------------------
def test_string_parameter_parses_text_unchanged() -> None:
    param = bd.Parameter()
    assert param.parse(" a b ") == " a b "
    assert param.normalize("x") == "x"
    assert param.serialize("x") == "x"


def test_string_parameter_keeps_a_non_string_value_and_warns_naming_it() -> None:
    class Given(bd.Task):
        label = bd.Parameter()

    with pytest.warns(bd.ParameterTypeWarning, match=r"Given: parameter 'label' .* int 3"):
        task = Given(label=3)
    assert task.label == 3  # kept as given, as Luigi does
    assert task.task_id == "Given(label=3)"


def test_parameter_without_default_has_none() -> None:
    param = bd.Parameter()
    assert not param.has_default


def test_parameter_keeps_default_and_description() -> None:
    param = bd.Parameter(default="x", description="what it is")
    assert param.has_default
    assert param.default == "x"
    assert param.description == "what it is"


def test_parameter_learns_its_name_from_the_class() -> None:
    class T(bd.Task):
        region = bd.Parameter()

    assert T.region.name == "region"
    assert "region" in repr(T.region)


# -- IntParameter ----------------------------------------------------------------------
def test_int_parameter_parses_text_with_spaces_and_sign() -> None:
    param = bd.IntParameter()
    assert param.parse(" 42 ") == 42
    assert param.parse("-7") == -7


@pytest.mark.parametrize("text", ["", "1.5", "abc", "0x10"])
def test_int_parameter_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError):
        bd.IntParameter().parse(text)


@pytest.mark.parametrize("value", [True, 1.0, None, [1]])
def test_int_parameter_rejects_non_integers_including_bool(value: Any) -> None:
    with pytest.raises(ValueError, match="expected an integer"):
        bd.IntParameter().normalize(value)


def test_int_parameter_normalizes_string_argument() -> None:
    assert bd.IntParameter().normalize("12") == 12


@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_int_round_trip(value: int) -> None:
    param = bd.IntParameter()
    assert param.parse(param.serialize(value)) == value


# -- FloatParameter --------------------------------------------------------------------
def test_float_parameter_accepts_ints_and_returns_float() -> None:
    value = bd.FloatParameter().normalize(3)
    assert value == 3.0 and isinstance(value, float)


def test_float_parameter_parses_text() -> None:
    assert bd.FloatParameter().parse(" 2.5 ") == 2.5
    assert bd.FloatParameter().parse("1e3") == 1000.0


@pytest.mark.parametrize("value", [True, "x", None])
def test_float_parameter_rejects_bad_values(value: Any) -> None:
    with pytest.raises(ValueError):
        bd.FloatParameter().normalize(value)


@given(st.floats(allow_nan=False))
def test_float_round_trip(value: float) -> None:
    param = bd.FloatParameter()
    assert param.parse(param.serialize(value)) == value


def test_float_nan_round_trips_to_nan() -> None:
    param = bd.FloatParameter()
    assert math.isnan(param.parse(param.serialize(float("nan"))))


# -- BoolParameter ---------------------------------------------------------------------
@pytest.mark.parametrize("text", ["1", "true", "TRUE", " yes ", "on"])
def test_bool_parameter_parses_true_words(text: str) -> None:
    assert bd.BoolParameter().parse(text) is True


@pytest.mark.parametrize("text", ["0", "false", "False", "no", "off"])
def test_bool_parameter_parses_false_words(text: str) -> None:
    assert bd.BoolParameter().parse(text) is False


@pytest.mark.parametrize("text", ["", "maybe", "2"])
def test_bool_parameter_rejects_other_words(text: str) -> None:
    with pytest.raises(ValueError, match="true or false"):
        bd.BoolParameter().parse(text)


def test_bool_parameter_rejects_integers() -> None:
    with pytest.raises(ValueError, match="got int"):
        bd.BoolParameter().normalize(1)


def test_bool_parameter_defaults_to_false() -> None:
    param = bd.BoolParameter()
    assert param.has_default and param.default is False


@pytest.mark.parametrize("value", [True, False])
def test_bool_round_trip(value: bool) -> None:
    param = bd.BoolParameter()
    assert param.parse(param.serialize(value)) is value


# -- DateParameter ---------------------------------------------------------------------
def test_date_parameter_parses_iso_date() -> None:
    assert bd.DateParameter().parse(" 2026-11-24 ") == dt.date(2026, 11, 24)


@pytest.mark.parametrize("text", ["2026-13-01", "2026-02-30", "yesterday", ""])
def test_date_parameter_rejects_bad_dates(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        bd.DateParameter().parse(text)


def test_date_parameter_rejects_datetime_value() -> None:
    with pytest.raises(ValueError, match="got a datetime"):
        bd.DateParameter().normalize(dt.datetime(2026, 11, 24, 10, 0))


def test_date_parameter_serializes_as_iso() -> None:
    assert bd.DateParameter().serialize(dt.date(2026, 1, 2)) == "2026-01-02"


@given(st.dates())
def test_date_round_trip(value: dt.date) -> None:
    param = bd.DateParameter()
    assert param.parse(param.serialize(value)) == value


# -- DateTimeParameter -----------------------------------------------------------------
def test_datetime_parameter_parses_minutes_and_seconds() -> None:
    param = bd.DateTimeParameter()
    assert param.parse("2026-11-24T10:30") == dt.datetime(2026, 11, 24, 10, 30)
    assert param.parse("2026-11-24T10:30:05") == dt.datetime(2026, 11, 24, 10, 30, 5)


def test_datetime_parameter_rejects_plain_date_value_and_bad_text() -> None:
    param = bd.DateTimeParameter()
    with pytest.raises(ValueError, match="expected a datetime"):
        param.normalize(dt.date(2026, 11, 24))
    with pytest.raises(ValueError, match="date-time"):
        param.parse("noon")


@given(st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)))
def test_datetime_round_trip(value: dt.datetime) -> None:
    param = bd.DateTimeParameter()
    assert param.parse(param.serialize(value)) == value


# -- EnumParameter ---------------------------------------------------------------------
def test_enum_parameter_parses_member_name() -> None:
    assert bd.EnumParameter(Color).parse(" GREEN ") is Color.GREEN


def test_enum_parameter_rejects_unknown_name_listing_choices() -> None:
    with pytest.raises(ValueError, match="expected one of RED, GREEN"):
        bd.EnumParameter(Color).parse("BLUE")


def test_enum_parameter_rejects_member_of_another_enum() -> None:
    with pytest.raises(ValueError, match="member of Mode"):
        bd.EnumParameter(Mode).normalize(Color.RED)


def test_enum_parameter_type_name_lists_members() -> None:
    assert bd.EnumParameter(Color).type_name == "{RED|GREEN}"


def test_enum_parameter_accepts_member_of_str_enum() -> None:
    param = bd.EnumParameter(Mode)
    assert param.normalize(Mode.FAST) is Mode.FAST
    assert param.normalize("SLOW") is Mode.SLOW


@pytest.mark.parametrize("member", list(Color) + list(Mode))
def test_enum_round_trip(member: enum.Enum) -> None:
    param = bd.EnumParameter(type(member))
    assert param.parse(param.serialize(member)) is member


# -- ListParameter ---------------------------------------------------------------------
def test_list_parameter_parses_json_and_comma_forms() -> None:
    param = bd.ListParameter()
    assert param.parse('["a", 1, null, true]') == ("a", 1, None, True)
    assert param.parse(" a, b ,c ") == ("a", "b", "c")
    assert param.parse("") == ()


def test_list_parameter_normalizes_list_to_tuple() -> None:
    assert bd.ListParameter().normalize(["a", "b"]) == ("a", "b")


@pytest.mark.parametrize("text", ["[1, 2", "[1,]", '[{"a": 1]'])
def test_list_parameter_rejects_bad_json(text: str) -> None:
    with pytest.raises(ValueError):
        bd.ListParameter().parse(text)


@pytest.mark.parametrize("value", [[dt.date(2026, 1, 1)], [{1}], [{1: "a"}], 5])
def test_list_parameter_rejects_items_json_cannot_hold(value: Any) -> None:
    with pytest.raises(ValueError):
        bd.ListParameter().normalize(value)


def test_list_parameter_with_date_item_is_parameter_error_not_type_error() -> None:
    class T(bd.Task):
        days = bd.ListParameter()

    with pytest.raises(ParameterError, match="T: .*'days'"):
        T(days=[dt.date(2026, 1, 1)])


@given(st.lists(st.text()))
def test_list_of_strings_round_trip(value: list[str]) -> None:
    param = bd.ListParameter()
    assert param.parse(param.serialize(value)) == tuple(value)


@given(st.lists(st.one_of(st.none(), st.booleans(), st.integers(), st.text(),
                          st.floats(allow_nan=False))))
def test_list_of_scalars_round_trip(value: list[Any]) -> None:
    param = bd.ListParameter()
    assert param.parse(param.serialize(value)) == tuple(value)


# -- errors named for the user ---------------------------------------------------------
@pytest.mark.parametrize(
    ("param", "bad", "type_name"),
    [
        (bd.PathParameter(), 5, "path"),
        (bd.IntParameter(), "many", "int"),
        (bd.FloatParameter(), "wide", "float"),
        (bd.BoolParameter(), "perhaps", "bool"),
        (bd.DateParameter(), "2026-99-01", "date"),
        (bd.DateTimeParameter(), "later", "datetime"),
        (bd.EnumParameter(Color), "BLUE", "{RED|GREEN}"),
        (bd.ListParameter(), "[1,", "list"),
    ],
)
def test_convert_error_names_task_parameter_and_type(
    param: bd.Parameter, bad: Any, type_name: str
) -> None:
    named(param, "knob")
    with pytest.raises(ParameterError) as info:
        param.convert("Clean", bad)
    message = str(info.value)
    assert message.startswith("Clean: bad value")
    assert "'knob'" in message
    assert f"({type_name})" in message
    assert repr(bad) in message


def test_convert_error_is_one_line_and_not_chained() -> None:
    param = named(bd.IntParameter(), "n")
    with pytest.raises(ParameterError) as info:
        param.convert("T", "x")
    assert "\n" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    ("param", "default", "expected"),
    [
        (bd.IntParameter, "3", 3),
        (bd.FloatParameter, 2, 2.0),
        (bd.DateParameter, "2026-11-24", dt.date(2026, 11, 24)),
        (bd.ListParameter, ["a"], ("a",)),
        (bd.BoolParameter, "yes", True),
    ],
)
def test_defaults_are_normalized_when_a_task_is_made(
    param: type[bd.Parameter], default: Any, expected: Any
) -> None:
    class T(bd.Task):
        value = param(default=default)

    assert T().value == expected


def test_bad_default_is_parameter_error_at_construction() -> None:
    class T(bd.Task):
        n = bd.IntParameter(default="three")

    with pytest.raises(ParameterError, match="T: bad value 'three' for parameter 'n' \\(int\\)"):
        T()


# -- ranges (backfills) ----------------------------------------------------------------
def test_date_range_is_inclusive_and_ordered() -> None:
    values = bd.DateParameter().parse_range("2026-11-29..2026-12-02")
    assert [str(v) for v in values] == ["2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"]


def test_datetime_range_steps_by_hours_unless_the_parameter_says_otherwise() -> None:
    import datetime as dt

    hourly = bd.DateTimeParameter().parse_range("2026-11-01T22:00..2026-11-02T01:00")
    assert [v.hour for v in hourly] == [22, 23, 0, 1]
    every_15 = bd.DateTimeParameter(step=dt.timedelta(minutes=15))
    assert len(every_15.parse_range("2026-11-01T00:00..2026-11-01T01:00")) == 5


def test_int_range_and_a_plain_value_is_no_range() -> None:
    assert bd.IntParameter().parse_range("-1..2") == [-1, 0, 1, 2]
    assert bd.IntParameter().parse_range("7") is None
    assert bd.Parameter().parse_range("../data") is None  # a path, not a range


@pytest.mark.parametrize("text, message", [
    ("2026-11-03..2026-11-01", "ends"),
    ("..2026-11-01", "both ends"),
    ("2026-11-01..", "both ends"),
    ("2026-11-01..2026-13-01", "YYYY-MM-DD"),
    ("0001-01-01..9999-12-31", "more than"),
])
def test_bad_ranges_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bd.DateParameter().parse_range(text)
