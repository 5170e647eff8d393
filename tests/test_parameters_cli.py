"""The parameter types through the real command line and config.toml: the task a run
builds is the task the same values make in code (same id), and bad text exits 2."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from support.project import CONFIG, Project

PIPELINE = '''
import hashlib
import json

import batchdeps as bd


class Source(bd.ExternalTask):
    def output(self):
        return bd.FileTarget("in/source.txt")


class Typed(bd.Task):
    span = bd.DateIntervalParameter()
    month = bd.MonthParameter(default="2026-01")
    year = bd.YearParameter(default="2026")
    hour = bd.DateHourParameter(default="2026-11-20T19")
    minute = bd.DateMinuteParameter(default="2026-11-20T1907", interval=15)
    second = bd.DateSecondParameter(default="2026-11-20T190738")
    every = bd.TimeDeltaParameter(default="1 h")
    tags = bd.DictParameter(default={})
    pairs = bd.TupleParameter(default=())
    items = bd.ListParameter(default=[])
    mode = bd.ChoiceParameter(choices=["fast", "slow"], default="fast")
    modes = bd.ChoiceListParameter(choices=["a", "b"], default=())
    level = bd.NumericalParameter(var_type=int, min_value=0, max_value=10, default=5)
    where = bd.PathParameter(default="data")
    limit = bd.OptionalIntParameter(default=3)
    note = bd.OptionalParameter()
    source = bd.TaskParameter(default=Source)

    def output(self):
        return bd.FileTarget(f"out/{hashlib.sha1(self.task_id.encode()).hexdigest()}.json")

    def run(self):
        with self.output().open("w") as out:
            json.dump({"id": self.task_id, "str": self.to_str_params()}, out)
'''

CLI_ARGS = [
    "--span", "2026-W47", "--month", "2026-11", "--year", "2025", "--hour", "2026-11-20T07",
    "--minute", "2026-11-20T1959", "--second", "2026-11-20T000001", "--every", "P1DT2H",
    "--tags", '{"env": {"zone": 2}, "role": "web"}', "--pairs", "((1, 2), (3, 4))",
    "--items", '[{"a": [1, 2]}]', "--items", '["b"]', "--mode", "slow", "--modes", "b,a,b",
    "--level", "9", "--where", "out dir/x.csv", "--limit", "", "--note", "text, with = signs",
    "--source", "Typed",
]


@pytest.fixture
def typed(tmp_path: Any) -> Project:
    proj = Project(tmp_path)
    proj.write("config.toml", CONFIG)
    proj.write("pipelines/__init__.py", "")
    (tmp_path / "pipelines" / "typed.py").write_text(PIPELINE)
    return proj


def _in_process(proj: Project) -> Any:
    sys.path.insert(0, str(proj.root))
    try:
        import importlib

        import pipelines.typed  # type: ignore[import-not-found]

        return importlib.reload(pipelines.typed)
    finally:
        sys.path.remove(str(proj.root))
        for name in [n for n in sys.modules if n == "pipelines" or n.startswith("pipelines.")]:
            del sys.modules[name]


def _built(proj: Project) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((proj.root / "out").glob("*.json"))]


def test_command_line_values_make_the_task_code_makes(typed: Project) -> None:
    import datetime as dt

    from batchdeps import date_interval as di

    proc = typed.run("run", "Typed", *CLI_ARGS)
    assert proc.returncode == 0, proc.stderr
    [built] = _built(typed)
    module = _in_process(typed)
    same = module.Typed(
        span=di.Week(2026, 47), month=dt.date(2026, 11, 5), year=dt.date(2025, 6, 1),
        hour=dt.datetime(2026, 11, 20, 7, 30), minute=dt.datetime(2026, 11, 20, 19, 59),
        second=dt.datetime(2026, 11, 20, 0, 0, 1), every=dt.timedelta(days=1, hours=2),
        tags={"env": {"zone": 2}, "role": "web"}, pairs=[[1, 2], [3, 4]],
        items=[{"a": [1, 2]}, "b"], mode="slow", modes=["b", "a", "b"], level=9,
        where="out dir/x.csv", limit=None, note="text, with = signs", source=module.Typed)
    assert built["id"] == same.task_id
    assert built["str"]["minute"] == "2026-11-20T1945"  # rounded down to every 15 minutes
    assert built["str"]["limit"] == ""  # `--limit ""` is None over the default 3
    # What the run wrote back as text is what the command line takes again.
    again = [arg for name, text in built["str"].items() for arg in (f"--{name}", text)]
    status = typed.run("status", "Typed", *again)
    assert status.returncode == 0, status.stdout + status.stderr  # complete: the same task
    assert len(_built(typed)) == 1


def test_config_values_native_and_text_make_the_same_task(typed: Project) -> None:
    typed.write("config.toml", CONFIG + '''
[tasks.Typed]
span = "2026-11-01-2026-11-08"
month = 2026-11-05
hour = 2026-11-20T07:30:00
every = 5400
tags = { env = { zone = 2 }, role = "web" }
pairs = [[1, 2]]
modes = "a,b"
level = 9
limit = ""
''')
    proc = typed.run("run", "Typed")
    assert proc.returncode == 0, proc.stderr
    [built] = _built(typed)
    assert built["str"]["span"] == "2026-11-01-2026-11-08"
    assert built["str"]["month"] == "2026-11"
    assert built["str"]["hour"] == "2026-11-20T07"
    assert built["str"]["every"] == "0 w 0 d 1 h 30 m 0 s"
    assert json.loads(built["str"]["tags"]) == {"env": {"zone": 2}, "role": "web"}
    assert built["str"]["limit"] == ""
    assert 'modes=a,b' in built["id"] and "level=9" in built["id"]


@pytest.mark.parametrize(("args", "message"), [
    (["--span", "2026-W54"], "2026 has no ISO week 54"),
    (["--span", "2026-W01", "--level", "10"], "10 is outside int in [0, 10)"),
    (["--span", "2026-W01", "--mode", "medium"], "not one of fast, slow"),
    (["--span", "2026-W01", "--every", "soon"], "expected a duration"),
    (["--span", "2026-W01", "--tags", "[1]"], "expected a JSON object"),
    (["--span", "2026-W01", "--source", "Nowhere"], "no task is called 'Nowhere'"),
    (["--span", "2026-W01", "--hour", "2026-11-20"], "expected a date-time as 2026-11-20T19"),
])
def test_bad_values_exit_2_naming_what_is_wrong(typed: Project, args: list[str],
                                                message: str) -> None:
    proc = typed.run("run", "Typed", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ranges_of_intervals_and_months_ask_for_one_task_each(typed: Project) -> None:
    proc = typed.run("run", "Typed", "--span", "2026-W52..2027-W02", "--month",
                     "2026-11..2026-12")
    assert proc.returncode == 0, proc.stderr
    ids = sorted(b["str"]["span"] + " " + b["str"]["month"] for b in _built(typed))
    assert len(ids) == 8 and ids[0] == "2026-W52 2026-11" and ids[-1] == "2027-W02 2026-12"


def test_help_shows_each_type_and_completion_offers_choices(typed: Project) -> None:
    proc = typed.run("run", "Typed", "--help")
    assert proc.returncode == 0, proc.stderr
    for shown in ("interval;", "month;", "duration;", "{fast|slow}", "int in [0, 10)"):
        assert shown in proc.stdout, shown
    env = {"_BATCHDEPS_COMPLETE": "zsh_complete", "COMP_WORDS": "batchdeps run Typed --mode ",
           "COMP_CWORD": "4"}
    done = typed.run(**env)
    assert "fast" in done.stdout and "slow" in done.stdout, done.stdout + done.stderr
