"""The task API through `batchdeps run` in a subprocess: namespaced families on the command
line, in config, `list` and `status`; event handlers fired in the runner's process;
retry_count; the default run(); insignificant parameters; settings classes; bd.requires;
batch_method."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.journal import JOURNAL_FUNCTION
from support.project import Project

PIPELINE = '''
import os
import time

import batchdeps as bd

''' + JOURNAL_FUNCTION + '''

def heard(*words):
    with open(os.environ["HEARD"], "a") as out:
        out.write("\\t".join([str(os.getpid()), *map(str, words)]) + "\\n")


class Raw(bd.ExternalTask):
    name = bd.Parameter(default="raw")

    def output(self):
        return bd.FileTarget(f"in/{self.name}.txt")


class Daily(bd.Task):
    """A namespaced family."""
    task_namespace = "reports"
    day = bd.DateParameter()
    note = bd.Parameter(default="", significant=False)
    label = bd.Parameter(default="plain")

    def requires(self):
        return Raw()

    def output(self):
        return bd.FileTarget(f"out/daily-{self.day}-{self.label}.txt")

    def run(self):
        journal("start", self)
        with self.output().open("w") as out:
            out.write(f"{self.note}\\n")


class Scored(bd.Task):
    """Its output does not encode its parameters (what the params trigger is for)."""
    top = bd.IntParameter(default=5)
    note = bd.Parameter(default="", significant=False)

    def output(self):
        return bd.FileTarget("out/scored.txt")

    def run(self):
        journal("start", self)
        with self.output().open("w") as out:
            out.write(f"{self.top}\\n")


class Flaky(bd.Task):
    retry_count = 3

    def output(self):
        return bd.FileTarget("out/flaky.txt")

    def run(self):
        journal("start", self)
        raise RuntimeError("flaky broke")


class Opaque(bd.Task):
    """Fails with an exception that cannot be pickled (it holds a lock)."""

    def output(self):
        return bd.FileTarget("out/opaque.txt")

    def run(self):
        import threading

        raise ValueError("cannot travel", threading.Lock())


class NoRun(bd.Task):
    def output(self):
        return bd.FileTarget("out/norun.txt")


class Db(bd.Settings):
    host = bd.Parameter(default="localhost")
    port = bd.IntParameter(default=5432)


class UsesDb(bd.Task):
    def output(self):
        return bd.FileTarget("out/db.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{Db().host}:{Db().port}\\n")


class Part(bd.Task):
    n = bd.IntParameter(batch_method=max)

    def output(self):
        return bd.FileTarget(f"out/part-{self.n}.txt")

    def run(self):
        journal("start", self)
        with self.output().open("w") as out:
            out.write("part\\n")


@bd.requires(Part)
class Summary(bd.Task):
    def output(self):
        return bd.FileTarget(f"out/summary-{self.n}.txt")

    def run(self):
        journal("start", self)
        with self.input().open() as src, self.output().open("w") as out:
            out.write(src.read().upper())


class Sleepy(bd.Task):
    timeout = 0.5

    def output(self):
        return bd.FileTarget("out/sleepy.txt")

    def run(self):
        time.sleep(30)


class Dies(bd.Task):
    def output(self):
        return bd.FileTarget("out/dies.txt")

    def run(self):
        os.kill(os.getpid(), 9)


class NeedsMissing(bd.Task):
    def requires(self):
        return Raw(name="absent")

    def output(self):
        return bd.FileTarget("out/needs-missing.txt")


class Yielder(bd.Task):
    def output(self):
        return bd.FileTarget("out/yielder.txt")

    def run(self):
        part = yield Part(n=5)
        with part.open() as src, self.output().open("w") as out:
            out.write(src.read())


class Mixed(bd.WrapperTask):
    def requires(self):
        return [Summary(n=2), NeedsMissing(), Flaky(), Yielder(), Opaque()]


@bd.Task.event_handler(bd.Event.START)
def on_start(task):
    heard("START", task.task_id)


@bd.Task.event_handler(bd.Event.SUCCESS)
def on_success(task):
    heard("SUCCESS", task.task_id)


@bd.Task.event_handler(bd.Event.FAILURE)
def on_failure(task, exception):
    heard("FAILURE", task.task_id, type(exception).__name__, exception)


@bd.Task.event_handler(bd.Event.PROCESSING_TIME)
def on_time(task, seconds):
    heard("PROCESSING_TIME", task.task_id, isinstance(seconds, float) and seconds >= 0)


@bd.Task.event_handler(bd.Event.DEPENDENCY_MISSING)
def on_missing(task):
    heard("DEPENDENCY_MISSING", task.task_id)


@bd.Task.event_handler(bd.Event.DEPENDENCY_PRESENT)
def on_present(task):
    heard("DEPENDENCY_PRESENT", task.task_id)


@bd.Task.event_handler(bd.Event.DEPENDENCY_DISCOVERED)
def on_discovered(task, dependency):
    heard("DEPENDENCY_DISCOVERED", task.task_id, dependency.task_id)


@bd.Task.event_handler(bd.Event.TIMEOUT)
def on_timeout(task, message):
    heard("TIMEOUT", task.task_id, message)


@bd.Task.event_handler(bd.Event.PROCESS_FAILURE)
def on_died(task, message):
    heard("PROCESS_FAILURE", task.task_id, message)


@Part.event_handler(bd.Event.SUCCESS)
def on_part_success(task):
    heard("PART_SUCCESS", task.task_id)
'''


@pytest.fixture
def api_project(tmp_path: Path) -> Project:
    proj = Project(tmp_path)
    proj.write("config.toml", '[batchdeps]\nmodules = ["pipelines"]\n'
                              '[tasks."reports.Daily"]\nlabel = "configured"\n'
                              '[tasks.Db]\nhost = "db.internal"\n')
    proj.write("pipelines/__init__.py", "")
    (tmp_path / "pipelines" / "api.py").write_text(PIPELINE)
    proj.write("in/raw.txt", "raw\n")
    proj.env["HEARD"] = str(tmp_path / "heard.txt")
    return proj


def heard(proj: Project) -> list[list[str]]:
    path = Path(proj.env["HEARD"])
    if not path.exists():
        return []
    return [line.split("\t") for line in path.read_text().splitlines()]


def events(proj: Project, name: str) -> list[list[str]]:
    return [line[2:] for line in heard(proj) if line[1] == name]


def run_popen(proj: Project, *args: str) -> tuple[int, int, str]:
    """Run `batchdeps` and return (exit code, its pid, stderr)."""
    process = proj.popen(*args)
    _, err = process.communicate(timeout=120)
    return process.returncode, process.pid, err


# -- namespaces on the command line ------------------------------------------------------
def test_namespaced_family_runs_lists_and_reports_status(api_project: Project) -> None:
    proj = api_project
    done = proj.run("run", "reports.Daily", "--day", "2026-11-24")
    assert done.returncode == 0, done.stderr
    # [tasks."reports.Daily"] applied: the label comes from config
    assert (proj.root / "out/daily-2026-11-24-configured.txt").exists()
    assert proj.runs() == ["reports.Daily(day=2026-11-24, label=configured)"]
    listed = json.loads(proj.run("list", "--json").stdout)
    families = [f["family"] for f in listed]
    assert "reports.Daily" in families and "Db" not in families  # settings left out
    status = proj.run("status", "reports.Daily", "--day", "2026-11-24", "--format", "json")
    assert status.returncode == 0, status.stderr
    node = next(n for n in json.loads(status.stdout)["nodes"] if n["family"] == "reports.Daily")
    assert node["task_id"] == "reports.Daily(day=2026-11-24, label=configured)"
    assert node["state"] == "complete"
    # the module path names the same class
    again = proj.run("run", "pipelines.api.Daily", "--day", "2026-11-24")
    assert again.returncode == 0 and len(proj.runs()) == 1


def test_bare_class_name_of_a_namespaced_family_is_a_usage_error(api_project: Project) -> None:
    done = api_project.run("run", "Daily", "--day", "2026-11-24")
    assert done.returncode == 2
    assert "unknown task 'Daily'. Did you mean reports.Daily?" in done.stderr
    assert "Traceback" not in done.stderr


def test_insignificant_parameter_does_not_make_another_task(api_project: Project) -> None:
    proj = api_project
    assert proj.run("run", "reports.Daily", "--day", "2026-11-24", "--note", "a").returncode == 0
    second = proj.run("run", "reports.Daily", "--day", "2026-11-24", "--note", "b")
    assert second.returncode == 0
    assert len(proj.runs()) == 1  # same task id: complete, not built again
    assert (proj.root / "out/daily-2026-11-24-configured.txt").read_text() == "a\n"


def test_insignificant_parameter_change_is_not_stale_by_the_params_trigger(
        api_project: Project) -> None:
    proj = api_project
    triggers = ("--rerun-triggers", "params")
    assert proj.run("run", "Scored", "--note", "a", *triggers).returncode == 0
    again = proj.run("run", "Scored", "--note", "b", *triggers)
    assert again.returncode == 0, again.stderr
    assert proj.runs() == ["Scored(top=5)"]
    changed = proj.run("run", "Scored", "--top", "6", "--note", "b", *triggers)
    assert changed.returncode == 0, changed.stderr
    assert proj.runs() == ["Scored(top=5)", "Scored(top=6)"]  # a significant one: rebuilt


# -- options and defaults ------------------------------------------------------------------
def test_retry_count_gives_that_many_runs_in_all(api_project: Project) -> None:
    proj = api_project
    done = proj.run("run", "Flaky")
    assert done.returncode == 1
    assert proj.runs() == ["Flaky()"] * 3


def test_default_run_with_outputs_fails_naming_the_missing_output(api_project: Project) -> None:
    done = api_project.run("run", "NoRun")
    assert done.returncode == 1
    assert "run() returned but output out/norun.txt" in done.stderr
    assert "does not exist" in done.stderr


def test_settings_class_reads_config_and_cannot_be_run(api_project: Project) -> None:
    proj = api_project
    assert proj.run("run", "UsesDb").returncode == 0
    assert (proj.root / "out/db.txt").read_text() == "db.internal:5432\n"
    refused = proj.run("run", "Db")
    assert refused.returncode == 2
    assert "'Db' is a settings class (bd.Settings), not a task" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_requires_decorator_takes_the_parent_parameter_on_the_command_line(
        api_project: Project) -> None:
    proj = api_project
    done = proj.run("run", "Summary", "--n", "7")
    assert done.returncode == 0, done.stderr
    assert proj.runs() == ["Part(n=7)", "Summary(n=7)"]
    assert (proj.root / "out/summary-7.txt").read_text() == "PART\n"


def test_batch_method_parameter_runs_each_task_on_its_own(api_project: Project) -> None:
    proj = api_project
    done = proj.run("run", "Part", "--n", "1..3")
    assert done.returncode == 0, done.stderr
    assert sorted(proj.runs()) == ["Part(n=1)", "Part(n=2)", "Part(n=3)"]


# -- event handlers ------------------------------------------------------------------------
@pytest.mark.parametrize("workers", ["1", "3"])
def test_event_handlers_fire_in_the_runner_process(api_project: Project, workers: str) -> None:
    proj = api_project
    code, pid, err = run_popen(proj, "run", "Mixed", "--workers", workers)
    assert code == 1, err  # Flaky fails; NeedsMissing is blocked
    lines = heard(proj)
    assert lines and {line[0] for line in lines} == {str(pid)}  # all in the runner
    if workers != "1":
        run_pids = {line.split("\t")[2] for line in proj.journal.read_text().splitlines()}
        assert str(pid) not in run_pids  # while run() ran in worker processes
    assert events(proj, "START").count(["Flaky()"]) == 3
    failures = events(proj, "FAILURE")
    # what run() raised, from a worker process too (pickled) ...
    assert [f for f in failures if f[0] == "Flaky()"] == [["Flaky()", "RuntimeError",
                                                           "flaky broke"]] * 3
    # ... and when it cannot be pickled, a TaskFailed with its last line, from a worker
    opaque = [f for f in failures if f[0] == "Opaque()"]
    assert len(opaque) == 1 and "cannot travel" in opaque[0][2]
    assert opaque[0][1] == ("ValueError" if workers == "1" else "TaskFailed")
    assert sorted(events(proj, "SUCCESS")) == [["Part(n=2)"], ["Part(n=5)"], ["Summary(n=2)"],
                                                ["Yielder()"]]
    assert events(proj, "PROCESSING_TIME").count(["Part(n=2)", "True"]) == 1
    assert events(proj, "DEPENDENCY_MISSING") == [["Raw(name=absent)"]]
    assert ["Summary(n=2)", "Part(n=2)"] in events(proj, "DEPENDENCY_DISCOVERED")
    assert ["NeedsMissing()", "Raw(name=absent)"] in events(proj, "DEPENDENCY_DISCOVERED")
    assert ["Yielder()", "Part(n=5)"] in events(proj, "DEPENDENCY_DISCOVERED")  # yielded
    # a handler registered on a subclass hears only its tasks
    assert sorted(events(proj, "PART_SUCCESS")) == [["Part(n=2)"], ["Part(n=5)"]]
    # the order of one task's events: START, then PROCESSING_TIME, then SUCCESS
    part = [line[1] for line in lines if line[2:3] == ["Part(n=2)"]]
    assert part == ["START", "PROCESSING_TIME", "SUCCESS", "PART_SUCCESS"]


def test_dependency_present_for_complete_tasks(api_project: Project) -> None:
    proj = api_project
    assert proj.run("run", "Part", "--n", "4").returncode == 0
    os.remove(proj.env["HEARD"])
    assert proj.run("run", "Summary", "--n", "4").returncode == 0
    assert events(proj, "DEPENDENCY_PRESENT") == [["Part(n=4)"]]
    assert proj.run("run", "Summary", "--n", "4").returncode == 0
    assert events(proj, "DEPENDENCY_PRESENT") == [["Part(n=4)"], ["Summary(n=4)"]]


def test_timeout_and_dead_worker_fire_their_events(api_project: Project) -> None:
    proj = api_project
    assert proj.run("run", "Sleepy").returncode == 1
    assert [e[0] for e in events(proj, "TIMEOUT")] == ["Sleepy()"]
    assert "timed out after 0.5 s" in events(proj, "TIMEOUT")[0][1]
    assert proj.run("run", "Dies", "--workers", "2").returncode == 1
    died = events(proj, "PROCESS_FAILURE")
    assert died and died[0][0] == "Dies()" and "worker process died" in died[0][1]
    assert not events(proj, "FAILURE")


BROKEN = '''
import os
import batchdeps as bd


class Fine(bd.Task):
    def output(self):
        return bd.FileTarget("out/fine.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("fine")


class BadRequires(bd.Task):
    def requires(self):
        raise KeyError("no such day")


class BadComplete(bd.Task):
    def complete(self):
        raise ValueError("cannot tell")


class Top(bd.WrapperTask):
    which = bd.Parameter()

    def requires(self):
        return [Fine(), BadRequires() if self.which == "requires" else BadComplete()]


@bd.Task.event_handler(bd.Event.BROKEN_TASK)
def broken(task, exception):
    with open(os.environ["HEARD"], "a") as out:
        out.write(f"{task.task_id}\\t{type(exception).__name__}\\t{exception}\\n")
'''


@pytest.mark.parametrize(("which", "heard_line"), [
    ("requires", "BadRequires()\tKeyError\t'no such day'"),
    ("complete", "BadComplete()\tValueError\tcannot tell"),
])
def test_broken_task_handlers_hear_the_exception_before_the_definition_error(
        tmp_path: Path, which: str, heard_line: str) -> None:
    """Luigi's BROKEN_TASK: a requires() or complete() that raises is told to the
    handlers with what it raised; the run then stops as a definition error (exit 2)
    and nothing runs, not even the tasks beside it."""
    proj = Project(tmp_path)
    proj.write("config.toml", '[batchdeps]\nmodules = ["pipelines"]\n')
    proj.write("pipelines/__init__.py", "")
    proj.write("pipelines/broken.py", BROKEN)
    proj.env["HEARD"] = str(tmp_path / "heard.txt")
    done = proj.run("run", "Top", "--which", which)
    assert done.returncode == 2, done.stderr
    assert "raised" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "heard.txt").read_text().splitlines() == [heard_line]
    assert not (tmp_path / "out").exists()
