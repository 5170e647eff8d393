"""Per-attempt task logs through the real command: contents, layout, laziness, modes."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from batchdeps.report.tasklogs import safe_params_component

sys.path.insert(0, os.path.dirname(__file__))
from support.produtil import add_prod_pipeline, attempt_log, log_files

FLAKY_DIR = "logs/Flaky/name=f,fails=9"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_each_attempt_log_holds_stdout_stderr_logging_child_output_and_error(
        project: Any, workers: str) -> None:
    add_prod_pipeline(project)
    done = project.run("run", "Flaky", "--fails", "9", "--workers", workers)
    assert done.returncode == 1
    logs = attempt_log(project.root / FLAKY_DIR, 1).parent
    assert re.fullmatch(r"[0-9a-f]{12}", logs.name)  # the run's id: each run its own folder
    assert sorted(p.name for p in logs.iterdir()) == ["1.log", "2.log", "3.log", "4.log"]
    for n in (1, 2, 3, 4):
        text = (logs / f"{n}.log").read_text()
        assert text.startswith(f"# Flaky(name=f, fails=9) attempt {n} of run ")
        for line in (f"stdout of attempt {n}", f"stderr of attempt {n}",
                     f"INFO prod.flaky: logging of attempt {n}", f"child process output {n}",
                     f"RuntimeError: failure number {n}"):
            assert line in text, (n, line, text)
        assert text.endswith(f"# attempt {n} failed: RuntimeError: failure number {n}\n")
    # the task's words went to its log, not to the terminal; the summary points at the log
    assert "stdout of attempt" not in done.stdout + done.stderr
    assert f"log {logs / '4.log'}]" in done.stdout
    assert f"(log {logs / '4.log'})" in done.stderr


def test_batchdeps_own_lines_stay_on_the_terminal_after_an_inline_attempt(project: Any) -> None:
    add_prod_pipeline(project)
    done = project.run("run", "Flaky", "--fails", "1")
    assert done.returncode == 0
    assert "built Flaky(name=f, fails=1)" in done.stderr  # fd 2 was given back
    assert "batchdeps: 1 task(s): 1 built" in done.stdout  # fd 1 too
    for log in (project.root / "logs").rglob("*.log"):
        assert "built Flaky" not in log.read_text()
        assert "task(s):" not in log.read_text()


CHECKING_PIPELINE = """
import os
import sys

import batchdeps as bd


class Checked(bd.Task):
    \"\"\"complete() speaks; it runs in the runner's process between attempts too.\"\"\"
    n = bd.IntParameter()

    def requires(self):
        return [Checked(n=self.n - 1)] if self.n > 0 else []

    def output(self):
        return bd.FileTarget(f"out/checked-{self.n}.txt")

    def complete(self):
        print(f"python check of {self.n}", file=sys.stderr, flush=True)
        os.write(2, f"fd check of {self.n}\\n".encode())
        return self.output().exists()

    def run(self):
        print(f"run of {self.n}")
        with self.output().open("w") as out:
            out.write("x")
"""


def test_output_between_inline_attempts_reaches_the_terminal_not_a_task_log(
        project: Any) -> None:
    # The command line keeps fds 1 and 2 on the scratch file from one attempt to the next;
    # what the runner's own process writes between attempts (complete() checks here, run
    # again under the lock right before each attempt) must still reach the real stderr.
    project.write("pipelines/checked.py", CHECKING_PIPELINE)
    done = project.run("run", "Checked", "--n", "3")
    assert done.returncode == 0, done.stderr
    for n in range(4):
        assert done.stderr.count(f"python check of {n}") >= 2, done.stderr  # plan + re-check
        assert done.stderr.count(f"fd check of {n}") >= 2, done.stderr
        assert f"run of {n}" not in done.stdout + done.stderr
        log = attempt_log(project.root / f"logs/Checked/n={n}", 1).read_text()
        assert f"run of {n}" in log
        assert "check of" not in log, log
    assert "batchdeps: 4 task(s): 4 built" in done.stdout  # fd 1 given back at the end


def test_a_quiet_successful_attempt_makes_no_log_file(project: Any) -> None:
    add_prod_pipeline(project)
    done = project.run("run", "Quiet")
    assert done.returncode == 0
    assert log_files(project.root / "logs") == []  # nor a scratch file left behind


def test_task_logs_always_keeps_a_file_for_every_attempt(project: Any) -> None:
    add_prod_pipeline(project, 'task_logs = "always"\n')
    done = project.run("run", "Quiet")
    assert done.returncode == 0
    assert log_files(project.root / "logs") == ["Quiet/n=0/RUN/1.log"]
    text = attempt_log(project.root / "logs/Quiet/n=0", 1).read_text()
    assert text.startswith("# Quiet(n=0) attempt 1 of run ")


def test_task_logs_off_leaves_output_on_the_terminal(project: Any) -> None:
    add_prod_pipeline(project, 'task_logs = "off"\n')
    done = project.run("run", "Flaky", "--fails", "1")
    assert done.returncode == 0
    assert "stdout of attempt 1" in done.stdout
    assert "stderr of attempt 2" in done.stderr
    assert not (project.root / "logs").exists()


def test_log_dir_from_config_is_relative_to_the_config_file(project: Any, tmp_path: Path) -> None:
    add_prod_pipeline(project, 'log_dir = "var/task-logs"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    import subprocess

    done = subprocess.run(project.command("run", "Flaky", "--fails", "1", "--config",
                                          str(project.root / "config.toml")),
                          check=False, cwd=elsewhere, env=project.env, text=True,
                          capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert log_files(project.root / "var/task-logs") == ["Flaky/name=f,fails=1/RUN/1.log",
                                                         "Flaky/name=f,fails=1/RUN/2.log"]


def test_timed_out_attempt_log_keeps_what_it_wrote_and_says_why(project: Any) -> None:
    add_prod_pipeline(project)
    done = project.run("run", "TimesOut", SLEEP="30")
    assert done.returncode == 1
    text = attempt_log(project.root / "logs/TimesOut/_", 1).read_text()
    assert text.startswith("# TimesOut() attempt 1 of run ")
    assert "half written, now sleeping" in text
    assert text.endswith("# attempt 1 failed: timed out after 1 s\n")
    assert log_files(project.root / "logs") == ["TimesOut/_/RUN/1.log"]  # scratch removed


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_interrupted_attempt_is_logged(project: Any, workers: str) -> None:
    import signal

    from support.produtil import journal_events
    from support.waiting import wait_for

    add_prod_pipeline(project)
    process = project.popen("run", "Slow", "--workers", workers, SLEEP="30")
    wait_for(lambda: bool(journal_events(project, "sleeping")), 30, "the task to start")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert process.returncode == 130
    text = attempt_log(project.root / "logs/Slow/_", 1).read_text()
    assert "half written, now sleeping" in text and "# interrupted" in text


def test_params_component_is_one_safe_distinct_path_part() -> None:
    ids = ["Load(path=a/b, when=2026-11-24T00:00:00)", "Load(path=a_b, when=x)",
           "Load(path=../.., when=x)", "Load(path=" + "x" * 400 + ")",
           "Load(path=" + "x" * 400 + "y)", "Load()", "Load(path=.hidden)",
           "Load(path=sp ace, q=%2F)"]
    parts = [safe_params_component(task_id) for task_id in ids]
    assert len(set(parts)) == len(parts)
    for part in parts:
        assert "/" not in part and "\0" not in part and " " not in part
        assert part not in (".", "..") and not part.startswith(".")
        assert 0 < len(part) <= 150
        assert re.fullmatch(r"[A-Za-z0-9=,+\-_@%.]+", part), part
    assert parts[0] == "path=a%2Fb,when=2026-11-24T00%3A00%3A00"
    assert parts[5] == "_"


def test_log_dir_that_cannot_be_written_is_a_config_error(project: Any) -> None:
    add_prod_pipeline(project, 'log_dir = "config.toml/logs"\n')  # under a file: impossible
    done = project.run("run", "Quiet")
    assert done.returncode == 2
    assert "[batchdeps] log_dir" in done.stderr and "cannot create or write" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (project.root / "out").exists()  # nothing ran


def test_scratch_left_by_a_killed_run_is_removed_a_day_later(project: Any) -> None:
    add_prod_pipeline(project)
    dead = project.root / "logs/.scratch/deadbeef0000"
    dead.mkdir(parents=True)
    (dead / "123.log").write_text("# X() attempt 1 of run deadbeef0000 on h, pid 123\n")
    recent = project.root / "logs/.scratch/cafe00000000"
    recent.mkdir()
    (recent / "456.log").write_text("# Y() attempt 1 of run cafe00000000 on h, pid 456\n")
    two_days_ago = time.time() - 2 * 24 * 3600
    for path in (dead / "123.log", dead):
        os.utime(path, (two_days_ago, two_days_ago))
    done = project.run("run", "Quiet")
    assert done.returncode == 0
    assert not dead.exists()
    assert (recent / "456.log").exists()  # may belong to a run still going


def test_a_rerun_keeps_the_logs_of_the_run_before(project: Any) -> None:
    add_prod_pipeline(project)
    first = project.run("run", "Flaky", "--fails", "9")
    second = project.run("run", "Flaky", "--fails", "9")
    assert first.returncode == second.returncode == 1
    runs = sorted(p for p in (project.root / FLAKY_DIR).iterdir())
    assert len(runs) == 2
    for run in runs:
        assert sorted(p.name for p in run.iterdir()) == ["1.log", "2.log", "3.log", "4.log"]
        assert f"of run {run.name} on" in (run / "1.log").read_text()
        assert f"log {run / '4.log'}" in (first.stdout + second.stdout)


def test_logs_older_than_the_history_retention_are_pruned(project: Any) -> None:
    add_prod_pipeline(project, "[history]\nretention_days = 1\n")
    old_run = project.root / FLAKY_DIR / "0123456789ab"
    old_run.mkdir(parents=True)
    (old_run / "1.log").write_text("old\n")
    loose = project.root / FLAKY_DIR / "1.log"  # the layout before run folders
    loose.write_text("older\n")
    recent = project.root / "logs/Quiet/n=0/abcdefabcdef"
    recent.mkdir(parents=True)
    (recent / "1.log").write_text("recent\n")
    two_days_ago = time.time() - 2 * 24 * 3600
    for path in (old_run / "1.log", old_run, loose):
        os.utime(path, (two_days_ago, two_days_ago))
    done = project.run("run", "Flaky", "--fails", "1")
    assert done.returncode == 0, done.stderr
    assert not old_run.exists() and not loose.exists()
    assert (recent / "1.log").exists()
    assert len(list((project.root / "logs/Flaky/name=f,fails=1").iterdir())) == 1


SAYS_PIPELINE = '''
import logging

import batchdeps as bd


class Says(bd.Task):
    """Logs one line; its output holds how many handlers the root logger had meanwhile."""
    n = bd.IntParameter()

    def output(self):
        return bd.FileTarget(f"out/says-{self.n}.txt")

    def run(self):
        logging.getLogger("says").info("said %d", self.n)
        with self.output().open("w") as out:
            out.write(f"{len(logging.root.handlers)}\\n")


@Says.event_handler(bd.Event.SUCCESS)
def noted(task):  # runs in the runner's process, between attempts
    with open(f"out/between-{task.n}.txt", "w") as out:
        out.write(f"{len(logging.root.handlers)}\\n")


class AllSay(bd.WrapperTask):
    def requires(self):
        return [Says(n=n) for n in range(6)]
'''


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_task_log_handler_is_on_the_root_logger_only_during_each_attempt(
        project: Any, workers: str) -> None:
    # One handler for the attempt (not one more per attempt before it), none between
    # attempts or after the run: a program's logging.basicConfig() there still takes
    # effect; each task's log holds its own logging line and no other task's.
    project.write("pipelines/says.py", SAYS_PIPELINE)
    project.write("config.toml", '[batchdeps]\nmodules = ["pipelines.says"]\n')
    done = project.run("run", "AllSay", "--workers", workers)
    assert done.returncode == 0, done.stderr
    for n in range(6):
        assert (project.root / f"out/says-{n}.txt").read_text() == "1\n"
        assert (project.root / f"out/between-{n}.txt").read_text() == "0\n"
        log = attempt_log(project.root / f"logs/Says/n={n}", 1)
        lines = log.read_text().splitlines()
        assert len(lines) == 2 and lines[1].endswith(f" INFO says: said {n}"), lines

    script = ("import logging, sys; sys.path.insert(0, '.'); import batchdeps as bd; "
              "from pipelines.says import Says; "
              "r = bd.build([Says(n=n) for n in range(10, 13)], log_dir='logs2'); "
              "assert r.ok; print(len(logging.root.handlers)); "
              "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(message)s'); "
              "logging.getLogger('after').info('the program logs after the build')")
    import subprocess

    built = subprocess.run([sys.executable, "-c", script], cwd=project.root, env=project.env,
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    assert built.stdout == "0\nthe program logs after the build\n"
    for n in range(10, 13):
        assert (project.root / f"out/says-{n}.txt").read_text() == "1\n"
        assert (project.root / f"out/between-{n}.txt").read_text() == "0\n"


def test_a_build_gives_the_root_logger_back_its_level_and_handlers(project: Any) -> None:
    # The capture lowers the root logger's level so that a task's INFO lines reach its
    # log; once the build is over the program's own level is back (an INFO line of its own
    # is not printed under basicConfig(level=ERROR)), after a failing task too.
    project.write("pipelines/says.py", SAYS_PIPELINE + '''

class Fails(bd.Task):
    def output(self):
        return bd.FileTarget("out/never.txt")

    def run(self):
        logging.getLogger("says").info("about to fail")
        raise RuntimeError("no")
''')
    script = ("import logging, sys; sys.path.insert(0, '.'); import batchdeps as bd; "
              "from pipelines.says import Says, Fails; "
              "logging.basicConfig(level=logging.ERROR, stream=sys.stdout, format='%(message)s'); "
              "handlers = list(logging.root.handlers); "
              "r = bd.build([Says(n=20), Fails()], log_dir='logs3'); "
              "assert not r.ok and r.exit_code == 1; "
              "print(logging.getLevelName(logging.root.level), logging.root.handlers == handlers); "
              "logging.getLogger('mine').info('not shown'); "
              "logging.getLogger('mine').error('shown')")
    import subprocess

    built = subprocess.run([sys.executable, "-c", script], cwd=project.root, env=project.env,
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    assert built.stdout == "ERROR True\nshown\n"
    said = attempt_log(project.root / "logs3/Says/n=20", 1).read_text()
    assert " INFO says: said 20\n" in said, said  # the capture's handler, at INFO
    failed = next((project.root / "logs3/Fails").rglob("*.log")).read_text()
    assert " INFO says: about to fail" in failed, failed
