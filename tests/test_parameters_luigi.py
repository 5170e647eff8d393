"""The Luigi-named parameter types read and write text as Luigi 3.8.1 does.

Each case parses the same text with batchdeps' parameter and with the real Luigi's
(installed in the test environment): both give the same value, or both refuse it. Where
batchdeps deliberately differs (it refuses what Luigi silently misreads), the case is in
DIFFERENCES with the reason, and that difference is checked too.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import batchdeps as bd
from batchdeps import date_interval as di
from batchdeps.errors import ParameterError

luigi = pytest.importorskip("luigi")
from luigi import date_interval as ldi  # noqa: E402


def plain(value: Any) -> Any:
    """A value of either library in one comparable form."""
    if isinstance(value, (di.DateInterval, ldi.DateInterval)):
        return (type(value).__name__, value.date_a, value.date_b)
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(plain(item) for item in value)
    return value


def luigi_value(param: Any, text: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return param.normalize(param.parse(text))


def pairs() -> list[tuple[str, Any, Any, list[str]]]:
    """(name, batchdeps parameter, Luigi parameter, texts) for every type compared."""
    return [
        ("interval", bd.DateIntervalParameter(), luigi.DateIntervalParameter(), [
            "2026", "2026-11", "2026-01", "2026-W47", "2026-W01", "2020-W53", "2021-W53",
            "2009-W01", "2026-11-20", "2024-02-29", "2026-02-29", "2026-11-01-2026-11-08",
            "2026-12-31-2027-01-02", "2026-13", "26-11", "2026-W7", "2026-1", "foo",
            "2026-11-20-2026-11", "2026-W00", "2026-00",
        ]),
        ("month", bd.MonthParameter(), luigi.MonthParameter(), [
            "2026-11", "2026-01", "2026-1", "2026-12", "2026-13", "2026-00", "2026",
            "2026-11-01", "x",
        ]),
        ("month/3", bd.MonthParameter(interval=3), luigi.MonthParameter(interval=3), [
            "2026-01", "2026-02", "2026-05", "2026-12", "1969-11",
        ]),
        ("year", bd.YearParameter(), luigi.YearParameter(), [
            "2026", "0999", "999", "20266", "2026-01",
        ]),
        ("year/5", bd.YearParameter(interval=5), luigi.YearParameter(interval=5), [
            "2026", "2025", "1969",
        ]),
        ("datehour", bd.DateHourParameter(), luigi.DateHourParameter(), [
            "2026-11-20T19", "2026-11-20T9", "2026-11-20T00", "2026-11-20T24",
            "2026-11-20 19", "2026-11-20T19:00", "2026-11-20", "2026-02-30T01",
        ]),
        ("datehour/6", bd.DateHourParameter(interval=6), luigi.DateHourParameter(interval=6),
         ["2026-11-20T19", "2026-11-20T05", "2026-11-20T00"]),
        ("dateminute", bd.DateMinuteParameter(), luigi.DateMinuteParameter(), [
            "2026-11-20T1907", "2026-11-20T19H07", "2026-11-20T0000", "2026-11-20T19",
            "2026-11-20T1960", "2026-11-20T19:07",
        ]),
        ("dateminute/15", bd.DateMinuteParameter(interval=15),
         luigi.DateMinuteParameter(interval=15), ["2026-11-20T1907", "2026-11-20T1959"]),
        ("datesecond", bd.DateSecondParameter(), luigi.DateSecondParameter(), [
            "2026-11-20T190738", "2026-11-20T000000", "2026-11-20T1907", "2026-11-20T190760",
        ]),
        ("timedelta", bd.TimeDeltaParameter(), luigi.TimeDeltaParameter(), [
            "90", "1.5", "0", "-2", "1e3", "1 week 2 days", "1w", "2 weeks", "3h",
            "3 hours", "2 hours 30 minutes", "1 d 1 s", "1d1s", "4 days 3 hours 2 minutes 1 second",
            "P1DT12H", "P2W", "PT5M", "P1D", "PT1H2M3S", "abc", "", "5 fortnights",
        ]),
        ("dict", bd.DictParameter(), luigi.DictParameter(), [
            '{"a": 1}', '{"a": {"b": [1, 2, {"c": null}]}}', "{}", '{"a": 1', "x",
            '{"x": true, "y": 1.5, "z": "text"}',
        ]),
        ("list", bd.ListParameter(), luigi.ListParameter(), [
            "[1, 2]", '["a", {"b": 1}]', "[[1], [2, [3]]]", "[]", "[1,", '[{"a": [1, 2]}]',
        ]),
        ("tuple", bd.TupleParameter(), luigi.TupleParameter(), [
            "[[1, 2], [3, 4]]", "((1, 2), (3, 4))", "(1, 2)", "[1, 2]", '["a", "b"]',
            "[[1, [2, 3]], [4]]", "(", "1, 2",
        ]),
        ("choice", bd.ChoiceParameter(choices=[1, 2, 3], var_type=int),
         luigi.ChoiceParameter(choices=[1, 2, 3], var_type=int), ["1", "3", "4", "x"]),
        ("choice/str", bd.ChoiceParameter(choices=["a", "b"]),
         luigi.ChoiceParameter(choices=["a", "b"]), ["a", "b", "c", "A"]),
        ("choicelist", bd.ChoiceListParameter(choices=["a", "b", "c"]),
         luigi.ChoiceListParameter(choices=["a", "b", "c"]), ["a,b", "", "c,c,a", "a,d", "a"]),
        ("numerical", bd.NumericalParameter(var_type=int, min_value=-3, max_value=7),
         luigi.NumericalParameter(var_type=int, min_value=-3, max_value=7),
         ["-3", "0", "6", "7", "-4", "x", "3.5"]),
        ("numerical/float",
         bd.NumericalParameter(var_type=float, min_value=0.0, max_value=1.0,
                               left_op=operator.lt, right_op=operator.le),
         luigi.NumericalParameter(var_type=float, min_value=0.0, max_value=1.0,
                                  left_op=operator.lt, right_op=operator.le),
         ["0", "0.5", "1", "1.0001", "1e-9"]),
        ("path", bd.PathParameter(), luigi.PathParameter(), ["a/b.csv", "/x/y", "a//b/"]),
        ("optional", bd.OptionalParameter(), luigi.OptionalParameter(), ["", "x"]),
        ("optional/int", bd.OptionalIntParameter(), luigi.OptionalIntParameter(),
         ["", "5", "-1", "x"]),
        ("optional/float", bd.OptionalFloatParameter(), luigi.OptionalFloatParameter(),
         ["", "2.5"]),
        ("optional/bool", bd.OptionalBoolParameter(), luigi.OptionalBoolParameter(),
         ["", "true", "False"]),
        ("optional/dict", bd.OptionalDictParameter(), luigi.OptionalDictParameter(),
         ["", '{"a": [1]}']),
        ("optional/list", bd.OptionalListParameter(), luigi.OptionalListParameter(),
         ["", "[1, [2]]"]),
        ("optional/tuple", bd.OptionalTupleParameter(), luigi.OptionalTupleParameter(),
         ["", "[[1, 2]]"]),
        ("optional/path", bd.OptionalPathParameter(), luigi.OptionalPathParameter(),
         ["", "a/b"]),
        ("optional/choice", bd.OptionalChoiceParameter(choices=["a"]),
         luigi.OptionalChoiceParameter(choices=["a"]), ["", "a", "b"]),
        ("optional/numerical",
         bd.OptionalNumericalParameter(var_type=int, min_value=0, max_value=3),
         luigi.OptionalNumericalParameter(var_type=int, min_value=0, max_value=3),
         ["", "2", "3"]),
        ("date", bd.DateParameter(), luigi.DateParameter(), [
            "2026-11-24", "2026-1-5", "2026-01-5", "200-1-1", "2026-13-1", "2026-02-30",
            "2026-1-1T00", "x",
        ]),
        ("int", bd.IntParameter(), luigi.IntParameter(), ["5", "-12", "x"]),
        ("float", bd.FloatParameter(), luigi.FloatParameter(), ["2.5", "1e3", "nan?"]),
    ]


#: (type name, text) -> (what batchdeps does, why it differs from Luigi on purpose).
DIFFERENCES = {
    ("timedelta", "1 hour and a bit"): ("refused", "Luigi reads a prefix, drops the rest"),
    ("timedelta", "P1W2D"): ("refused", "Luigi reads P1W and drops 2D"),
    ("interval", "2026-11-08-2026-11-01"): ("refused", "Luigi takes an empty span"),
    ("dict", "[1, 2]"): ("refused", "Luigi takes a JSON list as a Dict value"),
    ("list", "a,b"): ("ok", "batchdeps reads a comma-separated list too; Luigi refuses"),
    ("list", "null"): ("ok", "comma form: the one string 'null'; Luigi gives None"),
}
EXTRA = {"timedelta": ["1 hour and a bit", "P1W2D"], "interval": ["2026-11-08-2026-11-01"],
         "dict": ["[1, 2]"], "list": ["a,b", "null"]}

CASES = [(name, ours, theirs, text) for name, ours, theirs, texts in pairs()
         for text in texts + EXTRA.get(name, [])]


def _parse_both(ours: Any, theirs: Any, text: str) -> tuple[Any, Any]:
    try:
        mine: Any = ("ok", plain(ours.normalize(text)))
    except ValueError as exc:
        mine = ("refused", str(exc))
    try:
        luigis: Any = ("ok", plain(luigi_value(theirs, text)))
    except Exception as exc:  # noqa: BLE001 - Luigi refuses with several exception types
        luigis = ("refused", repr(exc))
    return mine, luigis


@pytest.mark.parametrize(("name", "ours", "theirs", "text"), CASES,
                         ids=[f"{c[0]}:{c[3]!r}" for c in CASES])
def test_parses_text_as_luigi_does(name: str, ours: Any, theirs: Any, text: str) -> None:
    mine, luigis = _parse_both(ours, theirs, text)
    if (name, text) in DIFFERENCES:
        outcome, why = DIFFERENCES[(name, text)]
        assert mine[0] == outcome, why
        assert mine != luigis, f"no longer a difference: {why}"
        return
    assert mine[0] == luigis[0], (mine, luigis)
    if mine[0] == "ok":
        assert mine[1] == luigis[1]


@pytest.mark.parametrize(("name", "ours", "theirs", "text"), CASES,
                         ids=[f"{c[0]}:{c[3]!r}" for c in CASES])
def test_writes_values_as_luigi_does(name: str, ours: Any, theirs: Any, text: str) -> None:
    """luigi_serialize() is Luigi's serialize() (what Luigi's task ids hash), and
    serialize() reads back to the same value."""
    mine, luigis = _parse_both(ours, theirs, text)
    if mine[0] != "ok" or luigis[0] != "ok" or (name, text) in DIFFERENCES:
        return
    value = ours.normalize(text)
    assert plain(ours.normalize(ours.serialize(value))) == plain(value)
    if name == "timedelta" and (value.microseconds or value < dt.timedelta(0)):
        return  # Luigi's form drops fractions of a second and cannot be read back below 0
    if name == "year" and value.year < 1000:
        assert ours.luigi_serialize(value) == "0999"  # Luigi writes 999, which it cannot read
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = theirs.serialize(luigi_value(theirs, text))
    assert ours.luigi_serialize(value) == expected


def test_luigi_reads_back_what_batchdeps_writes_in_luigi_form() -> None:
    for name, ours, theirs, text in CASES:
        mine, luigis = _parse_both(ours, theirs, text)
        if mine[0] != "ok" or luigis[0] != "ok" or (name, text) in DIFFERENCES:
            continue
        value = ours.normalize(text)
        if name == "timedelta" and (value.microseconds or value < dt.timedelta(0)):
            continue
        written = ours.luigi_serialize(value)
        if name == "choicelist" or name.startswith("optional"):
            continue  # Luigi itself cannot read back its own "" for some of these
        assert plain(luigi_value(theirs, written)) == plain(value), (name, text, written)


def test_bool_is_written_as_luigi_writes_it_and_read_in_both_forms() -> None:
    param = bd.BoolParameter()
    assert [param.luigi_serialize(v) for v in (True, False)] == \
        [luigi.BoolParameter().serialize(v) for v in (True, False)] == ["True", "False"]
    assert param.parse("True") is True and param.parse("false") is False


def test_timedelta_differences_are_the_documented_ones() -> None:
    param = bd.TimeDeltaParameter()
    assert param.serialize(dt.timedelta(seconds=-90)) == "-90"
    assert param.parse("-90") == dt.timedelta(seconds=-90)
    assert param.serialize(dt.timedelta(seconds=1.5)) == "0 w 0 d 0 h 0 m 1.5 s"
    with pytest.raises(ValueError, match="expected a duration"):
        param.parse("1 hour and a bit")  # Luigi takes the "1 hour" and drops the rest
    assert luigi.TimeDeltaParameter().parse("1 hour and a bit") == dt.timedelta(hours=1)


def test_a_dict_value_is_a_frozen_real_dict_that_json_takes() -> None:
    value = bd.DictParameter().parse('{"role": "web", "tags": ["a", {"b": 1}]}')
    assert value == {"role": "web", "tags": ("a", {"b": 1})}
    assert isinstance(value, dict) and hash(value) == hash(bd.DictParameter().parse(
        '{"tags": ["a", {"b": 1}], "role": "web"}'))
    assert json.loads(json.dumps(value)) == {"role": "web", "tags": ["a", {"b": 1}]}
    with pytest.raises(TypeError, match="cannot be changed"):
        value["role"] = "db"  # type: ignore[index]
    with pytest.raises(TypeError, match="cannot be changed"):
        value["tags"][1].update(b=2)


def test_path_values_are_pathlib_paths() -> None:
    assert bd.PathParameter().parse("a/b.csv") == Path("a/b.csv")
    assert luigi.PathParameter().normalize("a/b.csv") == Path("a/b.csv")


def values_from_code() -> list[tuple[str, Any, Any, Any]]:
    """(name, batchdeps parameter, Luigi parameter, a value that is not text)."""
    return [
        ("numerical int", bd.NumericalParameter(var_type=int, min_value=-3, max_value=7),
         luigi.NumericalParameter(var_type=int, min_value=-3, max_value=7), -3),
        ("numerical float", bd.NumericalParameter(var_type=float, min_value=-3, max_value=7),
         luigi.NumericalParameter(var_type=float, min_value=-3, max_value=7), -3),
        ("numerical inclusive max", bd.NumericalParameter(
            var_type=int, min_value=-3, max_value=7, right_op=operator.le),
         luigi.NumericalParameter(var_type=int, min_value=-3, max_value=7,
                                  right_op=operator.le), 7),
        ("numerical out", bd.NumericalParameter(var_type=int, min_value=-3, max_value=7),
         luigi.NumericalParameter(var_type=int, min_value=-3, max_value=7), 7),
        ("choice int", bd.ChoiceParameter(var_type=int, choices=[1, 2, 3]),
         luigi.ChoiceParameter(var_type=int, choices=[1, 2, 3]), 3),
        ("choice not among them", bd.ChoiceParameter(var_type=int, choices=[1, 2, 3]),
         luigi.ChoiceParameter(var_type=int, choices=[1, 2, 3]), 4),
        ("int", bd.IntParameter(), luigi.IntParameter(), 5),
        ("float", bd.FloatParameter(), luigi.FloatParameter(), 2.5),
        ("plain", bd.Parameter(), luigi.Parameter(), 42),
    ]


@pytest.mark.parametrize(("name", "ours", "theirs", "value"), values_from_code(),
                         ids=[case[0] for case in values_from_code()])
def test_parse_takes_a_value_from_code_as_luigi_does(name: str, ours: Any, theirs: Any,
                                                     value: Any) -> None:
    """Luigi's code and tests call parse() with values, not only text: the same answer."""
    try:
        expected: Any = theirs.parse(value)
    except ValueError:
        with pytest.raises(ValueError):
            ours.parse(value)
        return
    got = ours.parse(value)
    assert got == expected and type(got) is type(expected)


def test_a_list_text_that_starts_as_json_must_be_a_json_list() -> None:
    param = bd.ListParameter()
    for text in ('"NOT A LIST"', '{"a": 1}'):
        with pytest.raises(ValueError, match="expected a list"):
            param.parse(text)
    with pytest.raises(ValueError, match="not a JSON list"):
        param.parse('{"invalid"}')
    assert param.parse("a, b") == ("a", "b") and param.parse('[1, "a"]') == (1, "a")
    assert list(luigi.ListParameter().parse('"ab"')) == ["a", "b"]  # what Luigi does


def test_a_schema_mismatch_is_a_value_error_and_a_validation_error() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 1}
    param = bd.ListParameter(schema=schema)
    assert param.normalize([1, 2]) == (1, 2)
    for bad, why in (([-999], "-999 is less than the minimum of 0"),
                     (["x"], "'x' is not of type 'number'"), ([], "should be non-empty")):
        with pytest.raises(jsonschema.ValidationError, match=why) as caught:
            param.normalize(bad)
        assert isinstance(caught.value, ValueError)
        with pytest.raises(jsonschema.ValidationError, match=why):
            luigi.ListParameter(schema=schema).normalize(bad)  # the same in Luigi
    validator = jsonschema.Draft4Validator({"type": "object", "required": ["an_int"]})
    with pytest.raises(jsonschema.ValidationError, match="'an_int' is a required property"):
        bd.DictParameter(schema=validator).normalize({})

    class Scored(bd.Task):
        scores = bd.ListParameter(schema=schema)

    with pytest.raises(ParameterError, match=r"Scored.*'scores'.*does not match the "
                                                r"schema: -999 is less than the minimum"):
        Scored(scores=[-999])


def test_dateminute_old_form_warns_as_luigi_does() -> None:
    seen = []
    for param in (bd.DateMinuteParameter(), luigi.DateMinuteParameter()):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert param.parse("2013-02-01T18H42") == dt.datetime(2013, 2, 1, 18, 42)
            assert param.parse("2013-02-01T1842") == dt.datetime(2013, 2, 1, 18, 42)
        seen.append([(w.category, str(w.message)) for w in caught])
    expected = 'Using "H" between hours and minutes is deprecated, omit it instead.'
    assert seen[0] == seen[1] == [(DeprecationWarning, expected)]
