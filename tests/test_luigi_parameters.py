"""batchdeps.luigi's parameters against Luigi 3.8.1's, by one script run through both:
values given from code, Luigi's warnings (with its words), the errors code catches, luigi.cfg
defaults and their warnings. Where batchdeps.luigi deliberately differs (it parses a string
given from code, Luigi keeps it), the case compares what does not differ (the task id) and
the difference is checked too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("luigi")

SCRIPT = '''
import datetime as dt, json, sys, warnings
from collections.abc import Mapping
if sys.argv[1] == "luigi":
    import luigi
else:
    import batchdeps.luigi as luigi
P = luigi.parameter
import jsonschema

out = {}

def plain(value):
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value

def kind(warning):
    for name, category in (("optional-type", P.OptionalParameterTypeWarning),
                           ("unconsumed", P.UnconsumedParameterWarning),
                           ("deprecated", DeprecationWarning), ("user", UserWarning)):
        if issubclass(warning.category, category):
            return name
    return warning.category.__name__

def record(name, make, show=plain):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = {"value": show(make())}
        except Exception as exc:
            result = {"error": sorted(label for label, cls in (
                ("ParameterException", P.ParameterException), ("ValueError", ValueError),
                ("ValidationError", jsonschema.ValidationError)) if isinstance(exc, cls)),
                "message": str(exc)}
    result["warnings"] = [[kind(w), str(w.message)] for w in caught]
    out[name] = result

task_id = lambda task: task.task_id

# -- parse() given values from code, not text
num = P.NumericalParameter(var_type=int, min_value=-3, max_value=7)
record("numerical int -3", lambda: num.parse(-3))
record("numerical int 7 is out", lambda: num.parse(7))
record("numerical float -3", lambda: P.NumericalParameter(
    var_type=float, min_value=-3, max_value=7).parse(-3))
record("choice int 3", lambda: P.ChoiceParameter(var_type=int, choices=[1, 2, 3]).parse(3))
record("int 5", lambda: P.IntParameter().parse(5))
record("date", lambda: P.DateParameter().parse(dt.date(2026, 11, 24)))

# -- parameters declared wrongly, values refused
record("choice without choices", lambda: P.ChoiceParameter(var_type=int))
record("numerical without var_type", lambda: P.NumericalParameter(min_value=0, max_value=1))
record("numerical without min_value", lambda: P.NumericalParameter(var_type=int, max_value=1))

class Choosy(luigi.Task):
    pick = P.ChoiceParameter(choices=["1", "2", "3"])
record("choice not among them", lambda: Choosy(pick="4"))

# -- JSON parameters: Luigi's text, what parse gives, schemas
record("list serialize", lambda: P.ListParameter().serialize([1, "one", True]))
record("dict serialize", lambda: P.DictParameter().serialize({"b": 1, "a": [1, 2]}))
record("bool serialize", lambda: P.BoolParameter().serialize(True))
record("list parse", lambda: P.ListParameter().parse('[1, "one", {"a": [2]}]'),
       lambda v: [type(v).__name__, plain(v)])
record("dict parse", lambda: P.DictParameter().parse('{"a": {"b": []}}'),
       lambda v: [isinstance(v, dict), plain(v)])
schema = {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 1}
record("list schema ok", lambda: P.ListParameter(schema=schema).normalize([1, 2]))
record("list schema refuses", lambda: P.ListParameter(schema=schema).normalize([-999]))
record("dict schema validator", lambda: P.DictParameter(schema=jsonschema.Draft4Validator(
    {"type": "object", "required": ["an_int"]})).normalize({}))

# -- values of another type than the parameter's, given from code
class Typed(luigi.Task):
    text = P.Parameter(default="x")
    span = P.TimeDeltaParameter(default=dt.timedelta(days=1))
    maybe_int = P.OptionalIntParameter(default=None)
    maybe_text = P.OptionalParameter(default=None)
    maybe_list = P.OptionalListParameter(default=None)
    maybe_dict = P.OptionalDictParameter(default=None)
    day = P.DateParameter(default=dt.date(2026, 1, 1))

class Span:
    days = 1
    seconds = 1
    def __str__(self):
        return "a span"

record("text given 42", lambda: Typed(text=42), task_id)
record("timedelta given days and seconds", lambda: Typed(span=Span()), task_id)
record("optional int given text", lambda: Typed(maybe_int="10"), task_id)
record("optional text given 1", lambda: Typed(maybe_text=1), task_id)
record("optional list given a list", lambda: Typed(maybe_list=[1, 2]), task_id)
record("optional dict given a dict", lambda: Typed(maybe_dict={"a": 1}), task_id)
record("optional given None", lambda: Typed(maybe_int=None, maybe_text=None), task_id)
record("date given a datetime", lambda: Typed(day=dt.datetime(2026, 11, 24, 10, 5)), task_id)
record("optional int keeps or parses text", lambda: Typed(maybe_int="11").maybe_int)
record("dateminute old form", lambda: P.DateMinuteParameter().parse("2013-02-01T18H42"))

# -- luigi.cfg: keys no parameter takes, config_path, a value that does not parse
class Configured(luigi.Task):
    a = P.IntParameter()
    b = P.Parameter(config_path=dict(section="elsewhere", name="bee"))

class Ignoring(luigi.Task):
    ignore_unconsumed = {"extra"}
    a = P.IntParameter()

class BadDefault(luigi.Task):
    n = P.IntParameter()

class Settings(luigi.Config):
    level = P.IntParameter(default=1)

record("config values", lambda: [Configured().a, Configured().b])
record("config ignored keys", lambda: Ignoring().a)
record("config value that does not parse", lambda: BadDefault())

# -- the luigi command line: `--param` for the task named only, `--Family-param` for all,
# `--param` of a class with use_cmdline_section = False, a bad option
class Root(luigi.Task):
    n = P.IntParameter(default=1)

class Shared(luigi.Config):
    use_cmdline_section = False
    width = P.IntParameter(default=0)

def from_command_line():
    with luigi.cmdline_parser.CmdlineParser.global_instance(
            ["Root", "--n", "5", "--Root-n", "6", "--width", "3"]) as parser:
        return [parser.get_task_obj().n, Root().n, Shared().width]

def exit_code(call):
    try:
        call()
    except SystemExit as exc:
        return ["SystemExit", exc.code]
    return "no exit"

record("local and family flags", from_command_line)
record("a bad option exits 2", lambda: exit_code(lambda: luigi.run(
    ["Root", "--no-such-option", "1", "--local-scheduler"])))
record("is_global", lambda: P.Parameter(default="y", is_global=True).positional)

# -- more of Luigi's parameter API
record("batch of strings", lambda: P.IntParameter(batch_method=max)._parse_list(["7", "17", "5"]))
record("no batch method", lambda: P.IntParameter()._parse_list(["7"]))

class Flagged(luigi.Task):
    on = P.BoolParameter(default=True)
record("bool given None", lambda: Flagged(on=None).on)
record("path that does not exist", lambda: P.PathParameter(exists=True).normalize(
    "no/such/path"))
class Styled(luigi.Config):
    mc_p = P.IntParameter()
    mc_q = P.IntParameter()
record("underscore key wins", lambda: Styled().mc_p)

def set_both():
    config = luigi.configuration.get_config()
    config.add_section("SetBoth")
    config.set("SetBoth", "mc_p", "1")
    config.set("SetBoth", "mc-p", "2")
    return config.get("SetBoth", "mc_p")
record("underscore key set wins", set_both)
record("dashed key alone", lambda: Styled().mc_q)

class Interpolated(luigi.Config):
    root = P.Parameter()
    data = P.Parameter()

class Unset(luigi.Config):
    where = P.Parameter()
record("interpolated values", lambda: [Interpolated().root, Interpolated().data])
record("an unset environment variable", lambda: Unset().where)
# -- luigi.util.previous / get_previous_completed: one step of the one date parameter back
import importlib
util = importlib.import_module(luigi.__name__ + ".util")  # not `from luigi.util`: Luigi's
previous, get_previous_completed = util.previous, util.get_previous_completed

class Daily(luigi.Task):
    day = P.DateParameter()
    other = P.IntParameter(default=2)
    def complete(self):
        return self.day == dt.date(2000, 2, 25)

class Weekly(luigi.Task):
    day = P.DateParameter(interval=7)

class Hourly(luigi.Task):
    hour = P.DateHourParameter()

class Spanned(luigi.Task):
    span = P.DateIntervalParameter()

class TwoDates(luigi.Task):
    a = P.DateParameter()
    b = P.DateHourParameter()

record("previous day", lambda: [previous(Daily(dt.date(2000, 3, 1), 5)).day.isoformat(),
                                previous(Daily(dt.date(2000, 3, 1), 5)).other])
record("previous of an interval-7 date", lambda: previous(Weekly(dt.date(2000, 3, 1))).day)
record("previous hour", lambda: previous(Hourly(dt.datetime(2000, 3, 1, 0))).hour)
record("previous week", lambda: str(previous(Spanned(luigi.date_interval.Week(2000, 1))).span))
record("previous completed", lambda: get_previous_completed(Daily(dt.date(2000, 3, 1)), 5).day)
record("previous completed not found",
       lambda: get_previous_completed(Daily(dt.date(2000, 3, 1)), 4))
record("previous of two dates", lambda: previous(TwoDates(dt.date(2000, 1, 1),
                                                         dt.datetime(2000, 1, 1, 1))))

# last: a build checks that every luigi.cfg section names a class made by now
record("a Config class builds", lambda: luigi.build([Settings()], local_scheduler=True,
                                                       log_level="ERROR"))
print(json.dumps(out))
'''

CONFIG = """\
[Configured]
a = 3
extra = x
[Ignoring]
a = 4
extra = y
other = z
[elsewhere]
bee = from elsewhere
[BadDefault]
n = not a number
[Interpolated]
root = ${BATCHDEPS_TEST_ROOT}/x
data = %(root)s/data
[Unset]
where = ${BATCHDEPS_TEST_UNSET}/y
[Styled]
mc-p = 666
mc_p = 555
mc-q = 7
"""


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    found = {}
    for tool in ("luigi", "batchdeps"):
        folder = tmp_path_factory.mktemp(tool)
        (folder / "check.py").write_text(SCRIPT)
        (folder / "luigi.cfg").write_text(CONFIG)
        done = subprocess.run([sys.executable, "check.py", tool], cwd=folder, check=False,
                              capture_output=True, text=True, timeout=120,
                              env={**{k: v for k, v in os.environ.items()
                                      if k not in ("LUIGI_CONFIG_PATH", "BATCHDEPS_CONFIG",
                                                   "BATCHDEPS_TEST_UNSET")},
                                   "BATCHDEPS_TEST_ROOT": "/srv"})
        assert done.returncode == 0, done.stderr
        found[tool] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


#: Cases where batchdeps.luigi's value deliberately differs from Luigi's, and why.
DIFFERENT_VALUES = {
    # Luigi's DateParameter.parse() fails on a date (a TypeError); batchdeps takes it
    "date": ({"error": []}, {"value": "2026-11-24"}),
    # batchdeps parses a string given from code; Luigi keeps "10" (and warns of it in both)
    "optional int keeps or parses text": ({"value": "11"}, {"value": 11}),
    # Luigi splits nothing here, but its parse() of a dict freezes it (a FrozenOrderedDict
    # is no dict subclass); batchdeps.luigi gives a plain dict, frozen by the task
    "dict parse": ({"value": [False, {"a": {"b": []}}]}, {"value": [True, {"a": {"b": []}}]}),
}


#: Warnings Luigi gives and batchdeps.luigi does not: one not about parameters, and
#: Luigi's deprecation of dashed luigi.cfg keys (batchdeps reads both spellings alike).
OTHER_WARNINGS = {
    "a Config class builds": "Task Settings(level=1) without outputs has no custom "
                             "complete() method",
    "dashed key alone": "Configuration [Styled] mc-q (with dashes) should be avoided. "
                        "Please use underscores: mc_q.",
    "underscore key wins": "Configuration [Styled] mc-q (with dashes) should be avoided. "
                           "Please use underscores: mc_q.",
}


def test_values_from_code_warnings_and_config_are_luigis(
        answers: dict[str, dict[str, Any]]) -> None:
    theirs, ours = answers["luigi"], answers["batchdeps"]
    assert set(theirs) == set(ours)
    for name in theirs:
        want, got = theirs[name], ours[name]
        if name in OTHER_WARNINGS:
            assert {w[1] for w in want["warnings"]} == {OTHER_WARNINGS[name]}
            want = {**want, "warnings": []}
        # the same warnings (Luigi warns of a config_path each time it looks it up)
        assert sorted(map(tuple, got["warnings"])) == sorted(map(tuple, want["warnings"])) \
            or set(map(tuple, got["warnings"])) == set(map(tuple, want["warnings"])) \
            and name.startswith("config"), name
        if name in DIFFERENT_VALUES:
            luigi_value, our_value = DIFFERENT_VALUES[name]
            assert {k: want[k] for k in luigi_value} == luigi_value, name
            assert {k: got[k] for k in our_value} == our_value, name
        elif "error" in want:
            # as Luigi's error class, and maybe more (batchdeps' ParameterError too)
            assert "error" in got and set(want["error"]) <= set(got["error"]), (name, got)
        else:
            assert got["value"] == want["value"], name


def test_the_cases_show_what_they_are_meant_to(answers: dict[str, dict[str, Any]]) -> None:
    """The comparison above would pass if both gave nothing: the cases hold what they check."""
    ours = answers["batchdeps"]
    assert ours["numerical int -3"]["value"] == -3
    assert ours["numerical float -3"]["value"] == -3.0
    assert "ValueError" in ours["numerical int 7 is out"]["error"]
    assert ours["choice without choices"]["error"] == ["ParameterException"]
    assert ours["choice not among them"]["error"] == ["ParameterException", "ValueError"]
    assert ours["list serialize"]["value"] == '[1, "one", true]'
    assert ours["bool serialize"]["value"] == "True"
    assert ours["list parse"]["value"][0] == "list"
    assert "ValidationError" in ours["list schema refuses"]["error"]
    assert "ValueError" in ours["list schema refuses"]["error"]
    assert ours["text given 42"]["warnings"] == [
        ["user", 'Parameter "text" with value "42" is not of type string.']]
    assert ours["optional int given text"]["warnings"] == [
        ["optional-type", ('OptionalIntParameter "maybe_int" with value "10" is not of type '
                           '"int" or None.')]]
    assert ours["optional list given a list"]["warnings"] == []
    assert ours["timedelta given days and seconds"]["warnings"][0][0] == "user"
    assert ours["dateminute old form"]["warnings"][0][0] == "deprecated"
    assert [w for w in ours["config values"]["warnings"] if w[0] == "unconsumed"] == [[
        "unconsumed", ("The configuration contains the parameter 'extra' with value 'x' "
                       "that is not consumed by the task 'Configured'.")]]  # once: cached
    assert ["deprecated", ("The use of the configuration [elsewhere] bee is deprecated. "
                           "Please use [Configured] b")] in ours["config values"]["warnings"]
    assert ours["config values"]["value"] == [3, "from elsewhere"]
    assert len(ours["config ignored keys"]["warnings"]) == 1
    assert "Error when parsing the default value of 'n'" in \
        ours["config value that does not parse"]["message"]
    assert "luigi.cfg [BadDefault] n = 'not a number'" in \
        ours["config value that does not parse"]["message"]
    assert ours["a Config class builds"]["value"] is True
    assert ours["local and family flags"]["value"] == [5, 6, 3]
    assert ours["a bad option exits 2"]["value"] == ["SystemExit", 2]
    assert ours["is_global"]["value"] is False and ours["is_global"]["warnings"][0][0] == \
        "deprecated"
    assert ours["batch of strings"]["value"] == 17
    assert ours["bool given None"]["value"] is None
    assert "The path no/such/path does not exist" in ours["path that does not exist"]["message"]
    assert ours["underscore key wins"]["value"] == 555
    assert ours["underscore key set wins"]["value"] == "1"
    assert ours["dashed key alone"]["value"] == 7
    assert ours["interpolated values"]["value"] == ["/srv/x", "/srv/x/data"]
    assert ours["previous day"]["value"] == ["2000-02-29", 5]
    assert ours["previous of an interval-7 date"]["value"] == "2000-02-17"
    assert ours["previous hour"]["value"] == "2000-02-29T23:00:00"
    assert ours["previous completed"]["value"] == "2000-02-25"
    assert ours["previous completed not found"]["value"] is None
    assert "exactly one date" in ours["previous of two dates"]["message"]
    assert "BATCHDEPS_TEST_UNSET is not set" in ours["an unset environment variable"]["message"]


def test_a_bool_flag_alone_is_true_unless_explicit_parsing(tmp_path: Path) -> None:
    """Luigi's BoolParameter(parsing=EXPLICIT_PARSING) takes `--name true`, not `--name`."""
    (tmp_path / "pipe.py").write_text(textwrap.dedent('''
        import batchdeps.luigi as luigi

        class Flags(luigi.Task):
            loud = luigi.BoolParameter()
            strict = luigi.BoolParameter(parsing=luigi.BoolParameter.EXPLICIT_PARSING)
            def complete(self):
                print("loud", self.loud, "strict", self.strict)
                return True
    '''))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "batchdeps.luigi", "--module", "pipe",
                               "Flags", "--local-scheduler", *args], cwd=tmp_path,
                              check=False, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(tmp_path)})

    done = run("--loud", "--strict", "true")
    assert done.returncode == 0, done.stderr
    assert "loud True strict True" in done.stdout
    done = run("--strict")
    assert done.returncode == 2 and "--strict needs a value" in done.stderr
    assert "Traceback" not in done.stderr
