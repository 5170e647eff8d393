"""End-to-end: the real `batchdeps run` command in subprocesses, on the demo pipeline."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter

import pytest
from support.project import Project
from support.waiting import wait_for

DIAMOND = ["A(day=2026-11-24)", "B(day=2026-11-24)", "C(day=2026-11-24)",
           "D(day=2026-11-24, count=3)"]



def test_build_then_rerun_runs_nothing(project: Project) -> None:
    first = project.run("run", "D")
    assert first.returncode == 0, first.stderr
    assert sorted(project.runs()) == sorted(DIAMOND)
    assert "4 built" in first.stdout
    second = project.run("run", "D")
    assert second.returncode == 0, second.stderr
    assert sorted(project.runs()) == sorted(DIAMOND)  # nothing ran again
    assert "1 complete" in second.stdout
    assert project.files() == ["a-2026-11-24.txt", "b-2026-11-24.txt", "c-2026-11-24.txt",
                               "d-2026-11-24.txt"]


def test_diamond_dependency_runs_shared_task_once(project: Project) -> None:
    result = project.run("run", "D", "--workers", "2")
    assert result.returncode == 0, result.stderr
    counts = Counter(project.runs())
    assert counts == {task: 1 for task in DIAMOND}
    order = project.runs()
    assert order.index("A(day=2026-11-24)") < order.index("B(day=2026-11-24)")
    assert order[-1] == "D(day=2026-11-24, count=3)"
    assert (project.root / "out/d-2026-11-24.txt").read_text() == "D(day=2026-11-24, count=3)\n"


def test_partial_rebuild_after_deleting_outputs_builds_only_missing(project: Project) -> None:
    assert project.run("run", "D").returncode == 0
    (project.root / "out/b-2026-11-24.txt").unlink()
    (project.root / "out/d-2026-11-24.txt").unlink()
    before = len(project.runs())
    result = project.run("run", "D")
    assert result.returncode == 0, result.stderr
    assert project.runs()[before:] == ["B(day=2026-11-24)", "D(day=2026-11-24, count=3)"]


def test_complete_task_requirements_are_not_visited(project: Project) -> None:
    assert project.run("run", "D").returncode == 0
    # The external input disappears (archived), but D is complete: nothing to do, exit 0.
    (project.root / "in/source.txt").unlink()
    (project.root / "out/a-2026-11-24.txt").unlink()
    result = project.run("run", "D")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(project.runs()) == 4


def test_failing_task_leaves_no_output_and_rerun_finishes(project: Project) -> None:
    (project.root / "fail-B").write_text("")
    failed = project.run("run", "D")
    assert failed.returncode == 1
    assert "marker says B fails" in failed.stdout  # the summary names the error
    assert "B(day=2026-11-24)" in failed.stdout
    assert "1 upstream failed" in failed.stdout
    # B wrote and flushed half its output before raising: nothing of it may remain.
    assert project.files() == ["a-2026-11-24.txt", "c-2026-11-24.txt"]
    assert "Traceback" not in failed.stderr.split("ERROR")[0]
    (project.root / "fail-B").unlink()
    rerun = project.run("run", "D")
    assert rerun.returncode == 0, rerun.stderr
    counts = Counter(project.runs())
    assert counts["A(day=2026-11-24)"] == 1 and counts["C(day=2026-11-24)"] == 1
    assert counts["B(day=2026-11-24)"] == 2 and counts["D(day=2026-11-24, count=3)"] == 1
    assert project.files() == ["a-2026-11-24.txt", "b-2026-11-24.txt", "c-2026-11-24.txt",
                               "d-2026-11-24.txt"]


def test_missing_external_input_exits_3_and_builds_independent_branch(project: Project) -> None:
    result = project.run("run", "Both", "--workers", "2")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "in/absent.txt" in result.stdout
    assert project.runs() == ["Other()"]
    assert project.files() == ["other.txt"]


def test_output_not_written_by_run_is_a_failure(project: Project) -> None:
    result = project.run("run", "Lazy")
    assert result.returncode == 1
    assert f"out/lazy.txt ({project.root / 'out/lazy.txt'}) does not exist" in result.stdout


def test_dry_run_prints_reasons_and_changes_nothing(project: Project) -> None:
    assert project.run("run", "B").returncode == 0
    (project.root / "out/a-2026-11-24.txt").unlink()
    result = project.run("run", "D", "--dry-run")
    assert result.returncode == 1, result.stderr  # work to do, as `status`
    lines = result.stdout.splitlines()
    assert any("C(day=2026-11-24)" in line
               and f"out/c-2026-11-24.txt ({project.root / 'out/c-2026-11-24.txt'}) missing" in line
               for line in lines)
    assert any("D(day=2026-11-24, count=3)" in line and "missing" in line for line in lines)
    planned = [line.split()[1] for line in lines if line.startswith("run ")]
    assert "B(day=2026-11-24)" not in planned  # complete: not rebuilt
    assert "A(day=2026-11-24)" in planned  # missing, and C needs it
    assert len(project.runs()) == 2  # only the first real run
    assert project.files() == ["b-2026-11-24.txt"]


def test_force_rebuilds_named_task_only(project: Project) -> None:
    assert project.run("run", "D").returncode == 0
    result = project.run("run", "D", "--force", "--dry-run")
    assert "forced" in result.stdout
    result = project.run("run", "D", "--force")
    assert result.returncode == 0, result.stderr
    assert Counter(project.runs())["D(day=2026-11-24, count=3)"] == 2
    assert len(project.runs()) == 5


def test_force_on_wrapper_rebuilds_the_wrapped_tasks(project: Project) -> None:
    assert project.run("run", "Many", "--n", "2").returncode == 0
    result = project.run("run", "Many", "--n", "2", "--force")
    assert result.returncode == 0, result.stdout + result.stderr
    assert Counter(project.runs()) == {"Leaf(i=0)": 2, "Leaf(i=1)": 2}
    external = project.run("run", "Source", "--force")  # present, never run: complete
    assert external.returncode == 0, external.stdout + external.stderr


def test_parameters_from_command_line_and_config(project: Project) -> None:
    result = project.run("run", "D", "--day", "2026-11-20", "--count", "7")
    assert result.returncode == 0, result.stderr
    assert "D(day=2026-11-20, count=7)" in project.runs()
    project.write("config.toml", """
        [batchdeps]
        modules = ["pipelines"]
        [tasks.D]
        day = "2026-11-21"
    """)
    result = project.run("run", "D")
    assert result.returncode == 0, result.stderr
    assert "D(day=2026-11-21, count=3)" in project.runs()
    # the command line wins over config
    result = project.run("run", "D", "--day", "2026-11-22")
    assert "D(day=2026-11-22, count=3)" in project.runs()


def test_env_interpolation_and_config_from_env_var(project: Project) -> None:
    project.write("conf/other.toml", """
        [batchdeps]
        modules = ["${PIPELINE_PACKAGE}"]
        [tasks.D]
        count = 9
    """)
    result = project.run("run", "D", BATCHDEPS_CONFIG="conf/other.toml",
                          PIPELINE_PACKAGE="pipelines")
    assert result.returncode == 0, result.stderr
    assert "D(day=2026-11-24, count=9)" in project.runs()


def test_dotted_task_path(project: Project) -> None:
    result = project.run("run", "pipelines.demo.Other")
    assert result.returncode == 0, result.stderr
    assert project.runs() == ["Other()"]


def test_task_help_lists_parameters(project: Project) -> None:
    result = project.run("run", "D", "--help")
    assert result.returncode == 0, result.stderr
    assert "--day DATE" in result.stdout
    assert "the day to build" in result.stdout
    assert "default: 2026-11-24" in result.stdout
    assert "--count INT" in result.stdout and "default: 3" in result.stdout
    assert "Bottom of the diamond" in result.stdout


def test_run_help_lists_tasks(project: Project) -> None:
    result = project.run("run", "--help")
    assert result.returncode == 0
    assert "Both" in result.stdout and "One branch with a missing input" in result.stdout


def test_lock_wait_timeout_exits_4_naming_holder(project: Project) -> None:
    holder = project.popen("run", "Other", SLEEP_OTHER="30")
    try:
        wait_for(lambda: "Other()" in project.runs("sleeping"), what="holder to start")
        result = project.run("run", "Other", "--wait-timeout", "0.5")
        assert result.returncode == 4, result.stdout + result.stderr
        assert str(holder.pid) in result.stdout
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert project.runs() == ["Other()"]


def test_waiting_run_builds_nothing_the_first_run_built(project: Project) -> None:
    go_on = project.root / "first-may-finish"  # the first run's task runs until it exists
    first = project.popen("run", "Other", HOLD_OTHER=str(go_on))
    wait_for(lambda: "Other()" in project.runs("sleeping"), what="first run to start")
    log = project.root / "second.log"
    with log.open("w") as second_log:
        second = subprocess.Popen(project.command("run", "Other"), cwd=project.root,
                                  env=project.env, text=True, stdout=subprocess.PIPE,
                                  stderr=second_log)
    try:
        wait_for(lambda: "waiting for Other(), held by" in log.read_text()
                 or second.poll() is not None, timeout=60, what="the second run to wait")
        go_on.touch()
        out, _ = second.communicate(timeout=60)
    finally:
        go_on.touch()
        second.kill()
    assert first.wait(60) == 0
    assert second.returncode == 0, log.read_text()
    assert project.runs() == ["Other()"]
    assert "built elsewhere" in out, out + log.read_text()


def test_three_concurrent_runs_never_run_a_task_twice(project: Project) -> None:
    env = {"SLEEP_LEAF": "0.2", "SLEEP_A": "0.3", "SLEEP_B": "0.2", "SLEEP_C": "0.2"}
    procs = [project.popen("run", "Many", "--n", "6", "--workers", "2", **env) for _ in range(3)]
    procs += [project.popen("run", "D", "--workers", "2", **env) for _ in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err
    counts = Counter(project.runs())
    expected = {f"Leaf(i={i})": 1 for i in range(6)}
    expected.update({task: 1 for task in DIAMOND})
    assert counts == expected


@pytest.mark.parametrize("workers", ["1", "2"])
def test_kill_9_mid_task_then_rerun_builds_only_missing(project: Project, workers: str) -> None:
    proc = project.popen("run", "D", "--workers", workers, SLEEP_C="30", SLEEP_B="30")
    try:
        wait_for(lambda: "C(day=2026-11-24)" in project.runs("sleeping")
                 or "B(day=2026-11-24)" in project.runs("sleeping"), what="B or C to sleep")
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the runner only; its workers must not survive it
        proc.wait()
    # Whatever was being written is not visible as output.
    visible = [f for f in project.files() if not f.startswith(".batchdeps-tmp")]
    assert visible == ["a-2026-11-24.txt"]
    rerun = project.run("run", "D", "--workers", workers)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    counts = Counter(project.runs("end"))
    assert counts == {task: 1 for task in DIAMOND}
    assert Counter(project.runs())["A(day=2026-11-24)"] == 1
    assert project.files() == ["a-2026-11-24.txt", "b-2026-11-24.txt", "c-2026-11-24.txt",
                               "d-2026-11-24.txt"]


TYPED_PIPELINE = '''
import enum

import batchdeps as bd
from pipelines.demo import journal


class Colour(enum.Enum):
    red = 1
    green = 2


class Typed(bd.Task):
    """A parameter of every type."""
    day_count = bd.IntParameter(default=1)
    flag = bd.BoolParameter(description="a flag")
    on = bd.BoolParameter(default=True)
    colour = bd.EnumParameter(Colour, default=Colour.red)
    items = bd.ListParameter(default=["a"])
    when = bd.DateTimeParameter(default="2026-01-01T00:00")
    ratio = bd.FloatParameter(default=0.5)

    def output(self):
        return bd.FileTarget("out/typed-" + str(abs(hash(self.task_id))))

    def run(self):
        journal("start", self)
        with self.output().open("w") as out:
            out.write(self.task_id)
'''


def test_every_parameter_type_from_command_line_and_config(project: Project) -> None:
    project.write("pipelines/typed.py", TYPED_PIPELINE)
    result = project.run("run", "Typed", "--day-count", "3", "--flag", "--no-on", "--colour",
                         "green", "--items", "x,y", "--when", "2026-02-03T04:05", "--ratio", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.runs()[-1] == ('Typed(day_count=3, flag=true, on=false, colour=green, '
                                  'items=["x","y"], when=2026-02-03T04:05:00, ratio=2.0)')
    project.write("config.toml", """
        [batchdeps]
        modules = ["pipelines"]
        [tasks.Typed]
        day_count = 4
        flag = true
        on = "no"
        colour = "green"
        items = ["p", 3]
        when = 2026-02-03T04:05:00
        ratio = 3
    """)
    result = project.run("run", "Typed")
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.runs()[-1] == ('Typed(day_count=4, flag=true, on=false, colour=green, '
                                  'items=["p",3], when=2026-02-03T04:05:00, ratio=3.0)')
    # a flag left off the command line keeps the config's value; --no-flag / --on override it
    result = project.run("run", "Typed", "--no-flag", "--on", "--dry-run")
    assert result.returncode == 1, result.stdout + result.stderr  # a new task would run
    assert "Typed(day_count=4, flag=false, on=true, colour=green" in result.stdout
    bad = project.run("run", "Typed", "--colour", "blue")
    assert bad.returncode == 2 and "expected one of red, green" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_waiting_run_takes_over_when_the_holder_is_killed(project: Project) -> None:
    import subprocess

    holder = project.popen("run", "Other", SLEEP_OTHER="30")
    log = (project.root / "waiter.log").open("w")
    try:
        wait_for(lambda: "Other()" in project.runs("sleeping"), what="holder to start")
        waiter = subprocess.Popen(project.command("run", "Other"), cwd=project.root,
                                  env=project.env, stdout=log, stderr=log, text=True)
        wait_for(lambda: "waiting for Other()" in (project.root / "waiter.log").read_text(),
                 what="second run to wait")
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # its lock dies with it
        holder.wait()
        log.close()
    assert waiter.wait(60) == 0, (project.root / "waiter.log").read_text()
    assert project.runs() == ["Other()", "Other()"] and project.runs("end") == ["Other()"]
    assert project.files() == ["other.txt"]
