"""End-to-end: `run --force`, `--force-upstream`, `--force-from`, repeated options, help."""

from __future__ import annotations

import os
import signal

from support.project import Project
from support.waiting import wait_for

A, B, C = "A(day=2026-11-24)", "B(day=2026-11-24)", "C(day=2026-11-24)"
D = "D(day=2026-11-24, count=3)"


def planned(stdout: str) -> dict[str, str]:
    """task id -> reason, from the lines of a dry run."""
    steps = {}
    for line in stdout.splitlines():
        verb, _, rest = line.partition(" ")
        if verb in ("run", "blocked") and "  (" in rest:
            task_id, _, reason = rest.strip().partition("  (")
            steps[task_id] = reason.removesuffix(")")
    return steps


def test_force_from_the_middle_of_a_diamond_rebuilds_it_and_what_is_downstream(
        project: Project) -> None:
    assert project.run("run", "D").returncode == 0
    dry = project.run("run", "D", "--force-from", "B", "--dry-run")
    assert dry.returncode == 1, dry.stdout + dry.stderr  # work to do
    assert planned(dry.stdout) == {B: "forced", D: f"forced: downstream of {B}"}
    before = len(project.runs())
    result = project.run("run", "D", "--force-from", "B")
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.runs()[before:] == [B, D]  # A and C (the other side) stay as they are


def test_force_from_by_task_id_and_repeated(project: Project) -> None:
    assert project.run("run", "D").returncode == 0
    dry = project.run("run", "D", "--force-from", B, "--force-from", "C", "--dry-run")
    assert set(planned(dry.stdout)) == {B, C, D}
    assert planned(dry.stdout)[C] == "forced"


def test_force_upstream_rebuilds_everything_but_the_external_input(project: Project) -> None:
    assert project.run("run", "D").returncode == 0
    dry = project.run("run", "D", "--force-upstream", "--dry-run")
    steps = planned(dry.stdout)
    assert steps == {D: "forced", B: f"forced: upstream of {D}", C: f"forced: upstream of {D}",
                     A: f"forced: upstream of {D}"}
    before = len(project.runs())
    assert project.run("run", "D", "--force-upstream").returncode == 0
    ran = project.runs()[before:]
    assert sorted(ran) == sorted([A, B, C, D]) and ran[0] == A and ran[-1] == D


def test_force_from_a_selector_that_matches_nothing_is_bad_usage(project: Project) -> None:
    result = project.run("run", "D", "--force-from", "Nothing")
    assert result.returncode == 2
    assert "'Nothing' matches no task" in result.stderr and "Traceback" not in result.stderr


def test_forced_rebuild_keeps_the_old_output_readable_until_the_new_one_is_committed(
        project: Project) -> None:
    assert project.run("run", "B").returncode == 0
    old = project.root / "out/b-2026-11-24.txt"
    old.write_text("old\n")
    proc = project.popen("run", "B", "--force", SLEEP_B="30")
    try:
        # B has written and flushed its new output and sleeps before returning.
        wait_for(lambda: B in project.runs("sleeping"), what="forced B to write")
        assert old.read_text() == "old\n"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert old.read_text() == "old\n"  # killed before its commit: the old output survives
    assert project.run("run", "B", "--force").returncode == 0
    assert old.read_text() == B + "\n"


def test_a_scalar_option_given_twice_is_an_error(project: Project) -> None:
    twice = project.run("run", "D", "--day", "2026-11-24", "--day", "2026-11-25")
    assert twice.returncode == 2
    assert "--day" in twice.stderr and "given 2 times" in twice.stderr
    workers = project.run("run", "D", "--workers", "1", "--workers=2")
    assert workers.returncode == 2 and "given 2 times" in workers.stderr
    status = project.run("status", "D", "--count", "1", "--count", "2")
    assert status.returncode == 2 and "given 2 times" in status.stderr
    assert project.runs() == []


def test_a_flag_may_repeat_but_not_contradict_itself(project: Project) -> None:
    project.write("pipelines/flags.py", """
        import batchdeps as bd

        class Flagged(bd.Task):
            on = bd.BoolParameter()

            def output(self):
                return bd.FileTarget("out/flagged.txt")
    """)
    same = project.run("run", "Flagged", "--on", "--on", "--dry-run")
    assert same.returncode == 1 and "Flagged(on=true)" in same.stdout, same.stderr
    both = project.run("run", "Flagged", "--on", "--no-on", "--dry-run")
    assert both.returncode == 2 and "both --on and --no-on" in both.stderr


def test_a_list_option_given_twice_joins_the_lists(project: Project) -> None:
    project.write("pipelines/lists.py", """
        import batchdeps as bd

        class Tagged(bd.Task):
            tags = bd.ListParameter()

            def output(self):
                return bd.FileTarget("out/tagged.txt")
    """)
    dry = project.run("run", "Tagged", "--tags", "a,b", "--tags", "c", "--dry-run")
    assert dry.returncode == 1, dry.stderr
    assert 'Tagged(tags=["a","b","c"])' in dry.stdout


def test_run_help_lists_runnable_tasks_only(project: Project) -> None:
    result = project.run("run", "--help")
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.split("Tasks")[1].splitlines()[1:]
             if line.strip()]
    assert "D" in names and "Both" in names
    assert "Source" not in names  # external: made outside the pipeline, never run


def test_two_ranges_request_every_combination_and_flags_may_repeat(project: Project) -> None:
    dry = project.run("run", "D", "--day", "2026-11-01..2026-11-02", "--count", "1..3",
                      "--dry-run", "--dry-run")
    assert dry.returncode == 1, dry.stderr
    requested = {line.split("  (")[0].split(maxsplit=1)[1] for line in dry.stdout.splitlines()
                 if line.startswith("run ") and line.split()[1].startswith("D(")}
    assert requested == {f"D(day=2026-11-0{d}, count={c})" for d in (1, 2) for c in (1, 2, 3)}
    assert project.runs() == []
