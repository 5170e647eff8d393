"""The ready queue: first in, first out, or by `priority` (higher first, inherited upstream)."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

import batchdeps as bd
from batchdeps.errors import TaskDefinitionError
from batchdeps.locks.local import LocalLockProvider
from batchdeps.report.events import TaskStarted
from batchdeps.resolver import resolve
from batchdeps.run.ready import PriorityQueue
from batchdeps.run.runner import Runner


class Job(bd.Task):
    root = bd.Parameter()
    name = bd.Parameter()
    rank = bd.IntParameter(default=0)
    after = bd.Parameter(default="")

    @property
    def priority(self) -> int:  # a property, as Luigi allows
        return self.rank

    def requires(self):
        return Job(root=self.root, name=self.after) if self.after else None

    def output(self):
        return bd.FileTarget(f"{self.root}/{self.name}.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write(self.name)


class Fixed(bd.Task):
    root = bd.Parameter()
    priority = 7

    def output(self):
        return bd.FileTarget(f"{self.root}/fixed.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("fixed")


class All(bd.WrapperTask):
    jobs = bd.ListParameter()

    def requires(self):
        return list(self.jobs)


class Recorder:
    def __init__(self) -> None:
        self.started: list[str] = []

    def on_event(self, event: object) -> None:
        if isinstance(event, TaskStarted):
            self.started.append(event.task_id)


def started_names(tmp_path: Path, tasks: list[bd.Task], workers: int = 1) -> list[str]:
    recorder = Recorder()
    result = bd.build(tasks, workers=workers, listeners=[recorder],
                      locks=LocalLockProvider(str(tmp_path / "locks")))
    assert result.exit_code == 0, result.tasks
    names = []
    for task_id in recorder.started:
        name = task_id.split("name=")[1].split(",")[0] if "name=" in task_id else task_id
        names.append(name)
    return names


def test_among_ready_tasks_the_higher_priority_starts_first(tmp_path: Path) -> None:
    root = str(tmp_path)
    jobs = [Job(root=root, name="low", rank=1), Job(root=root, name="none"),
            Job(root=root, name="high", rank=10), Job(root=root, name="mid", rank=5),
            Fixed(root=root)]
    assert started_names(tmp_path, jobs) == [
        "high", Fixed(root=root).task_id, "mid", "low", "none"]


def test_equal_priorities_start_in_the_order_they_became_ready(tmp_path: Path) -> None:
    root = str(tmp_path)
    names = [f"j{n}" for n in range(6)]
    jobs = [Job(root=root, name=name, rank=3) for name in names] + [
        Job(root=root, name="urgent", rank=4)]
    assert started_names(tmp_path, jobs) == ["urgent", *names]


def test_what_a_high_priority_task_needs_goes_before_lower_work(tmp_path: Path) -> None:
    """As in Luigi, a requirement runs with the priority of the task that needs it."""
    root = str(tmp_path)
    jobs = [Job(root=root, name="other", rank=50),
            Job(root=root, name="urgent", rank=100, after="needed")]
    assert started_names(tmp_path, jobs) == ["needed", "urgent", "other"]


class Timed(Job):
    timeout = 60  # a task with a timeout runs in a worker process: one here


def test_priorities_also_order_a_forked_worker(tmp_path: Path) -> None:
    root = str(tmp_path)
    jobs = [Timed(root=root, name="a", rank=1), Timed(root=root, name="b", rank=2),
            Timed(root=root, name="c", rank=3)]
    assert started_names(tmp_path, jobs) == ["c", "b", "a"]


def test_all_default_priorities_keep_the_plain_deque(tmp_path: Path) -> None:
    root = str(tmp_path)
    plan = resolve([Job(root=root, name=f"j{n}") for n in range(3)])
    runner = Runner(plan, LocalLockProvider(str(tmp_path / "locks")))
    assert type(runner._ready_queue()) is deque
    plan = resolve([Job(root=root, name="a", rank=1), Job(root=root, name="b")])
    runner = Runner(plan, LocalLockProvider(str(tmp_path / "locks")))
    assert type(runner._ready_queue()) is PriorityQueue


class BadPriority(bd.Task):
    priority = "high"

    def output(self):
        return bd.FileTarget("never.txt")


def test_a_priority_that_is_not_a_number_is_a_definition_error(tmp_path: Path) -> None:
    with pytest.raises(TaskDefinitionError, match=r"BadPriority\(\): priority must be a number"):
        bd.build([BadPriority()], locks=LocalLockProvider(str(tmp_path / "locks")))


class Yields(bd.Task):
    root = bd.Parameter()

    def output(self):
        return bd.FileTarget(f"{self.root}/yields.txt")

    def run(self):
        yield [Job(root=self.root, name="plain"), Job(root=self.root, name="first", rank=9)]
        with self.output().open("w") as out:
            out.write("done")


def test_yielded_tasks_with_a_priority_start_by_it(tmp_path: Path) -> None:
    names = started_names(tmp_path, [Yields(root=str(tmp_path))])
    assert names[1:3] == ["first", "plain"]


def test_a_bad_priority_on_the_command_line_exits_2_and_runs_nothing(tmp_path: Path) -> None:
    import os
    import subprocess

    from support.lockutil import BATCHDEPS

    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "__init__.py").write_text(
        "import batchdeps as bd\n\n\n"
        "class Odd(bd.Task):\n"
        "    priority = 'high'\n\n"
        "    def output(self):\n"
        "        return bd.FileTarget('odd.txt')\n\n"
        "    def run(self):\n"
        "        open('ran', 'w').close()\n")
    (tmp_path / "config.toml").write_text('[batchdeps]\nmodules = ["pipelines"]\n')
    env = {**os.environ, "BATCHDEPS_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("BATCHDEPS_CONFIG", None)
    env.pop("BATCHDEPS_LOCK_URL", None)
    done = subprocess.run([BATCHDEPS, "run", "Odd"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Odd(): priority must be a number, got str 'high'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "ran").exists()
