"""The runner through `bd.build`: results per task, staged commits, events, resources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import batchdeps as bd
from batchdeps.locks.local import LocalLockProvider
from batchdeps.report.events import RunFinished, RunStarted, TaskFinished, TaskStarted
from batchdeps.report.result import Status


@pytest.fixture
def locks(tmp_path: Path) -> LocalLockProvider:
    return LocalLockProvider(str(tmp_path / "locks"))


class Write(bd.Task):
    path = bd.Parameter()
    fail = bd.BoolParameter(default=False)
    upstream = bd.Parameter(default="")

    def requires(self):
        return Write(path=self.upstream) if self.upstream else None

    def output(self):
        return bd.FileTarget(self.path)

    def run(self):
        handle = self.output().open("w")
        handle.write("partial")
        handle.close()  # closed cleanly: staged, not yet visible
        assert not os.path.exists(self.path)
        assert self.output().exists()  # ...but visible to the task itself
        with self.output().open("r") as back:
            assert back.read() == "partial"
        if self.fail:
            raise RuntimeError("boom after writing")


class Recorder:
    def __init__(self) -> None:
        self.events: list[object] = []

    def on_event(self, event: object) -> None:
        self.events.append(event)


def test_build_reports_each_task_and_commits_after_run(tmp_path: Path, locks) -> None:
    up = str(tmp_path / "up.txt")
    down = str(tmp_path / "down.txt")
    recorder = Recorder()
    result = bd.build([Write(path=down, upstream=up)], locks=locks, listeners=[recorder])
    assert result.exit_code == 0 and result.ok
    assert {r.status for r in result.tasks.values()} == {Status.BUILT}
    assert Path(down).read_text() == "partial"
    kinds = [type(e).__name__ for e in recorder.events]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    started = [e.task_id for e in recorder.events if isinstance(e, TaskStarted)]
    assert started == [f"Write(path={up}, fail=false, upstream=)",
                       f"Write(path={down}, fail=false, upstream={up})"]
    finished = [e for e in recorder.events if isinstance(e, TaskFinished)]
    assert [e.status for e in finished] == [Status.BUILT, Status.BUILT]
    assert isinstance(recorder.events[-1], RunFinished) and recorder.events[-1].result is result
    assert isinstance(recorder.events[0], RunStarted) and len(recorder.events[0].plan) == 2


def test_failed_run_leaves_no_output_even_after_clean_close(tmp_path: Path, locks) -> None:
    path = tmp_path / "x.txt"
    result = bd.build(Write(path=str(path), fail=True), locks=locks)
    assert result.exit_code == 1
    (only,) = result.tasks.values()
    assert only.status == Status.FAILED
    assert "boom after writing" in only.error
    assert not path.exists()
    assert not (tmp_path / ".batchdeps-tmp").exists()  # no file, and no empty folder left


def test_failure_stops_dependents_but_not_independent_tasks(tmp_path: Path, locks) -> None:
    failing_child = FailingChild(path=str(tmp_path / "fc"), up=str(tmp_path / "fu"))
    other = Write(path=str(tmp_path / "o2"))
    result = bd.build([failing_child, other], locks=locks)
    statuses = {tid: r.status for tid, r in result.tasks.items()}
    assert statuses[failing_child.task_id] == Status.UPSTREAM_FAILED
    assert statuses[f"Write(path={tmp_path}/fu, fail=true, upstream=)"] == Status.FAILED
    assert statuses[other.task_id] == Status.BUILT
    assert result.exit_code == 1


class FailingChild(bd.Task):
    path = bd.Parameter()
    up = bd.Parameter()

    def requires(self):
        return Write(path=self.up, fail=True)

    def output(self):
        return bd.FileTarget(self.path)

    def run(self):  # pragma: no cover - never reached
        raise AssertionError("must not run")


def test_rerun_over_complete_outputs_runs_nothing(tmp_path: Path, locks) -> None:
    task = Write(path=str(tmp_path / "a"))
    assert bd.build(task, locks=locks).ok
    result = bd.build(task, locks=locks)
    assert [r.status for r in result.tasks.values()] == [Status.COMPLETE]


class Counting(bd.Task):
    path = bd.Parameter()
    journal = bd.Parameter()
    resources = {"db": 1}

    def output(self):
        return bd.FileTarget(self.path)

    def run(self):
        import time

        with open(self.journal, "a") as log:
            log.write(f"start {time.time()}\n")
        time.sleep(0.15)
        with open(self.journal, "a") as log:
            log.write(f"end {time.time()}\n")
        with self.output().open("w") as out:
            out.write("ok")


def peak_running(journal: Path) -> tuple[int, int]:
    """The most tasks running at once in a journal of "start/end TIME" lines, and its lines."""
    events = [line.split() for line in journal.read_text().splitlines()]
    running = peak = 0
    for kind, _ in sorted(events, key=lambda e: float(e[1])):
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    return peak, len(events)


def test_resource_cap_limits_parallel_tasks_across_workers(tmp_path: Path, locks) -> None:
    journal = tmp_path / "journal"
    tasks = [Counting(path=str(tmp_path / f"c{i}"), journal=str(journal)) for i in range(4)]
    config = bd.Config(resources={"db": 1})
    result = bd.build(tasks, workers=3, locks=locks, config=config)
    assert result.ok, result.tasks
    peak, events = peak_running(journal)
    assert peak == 1
    assert events == 8


class Free(Counting):
    """At module level: a worker from the fork server (other threads running) unpickles it.

    Each waits (60 s at most) until two have started, so two that can run at once are
    seen overlapping however late a loaded machine starts the second; run one at a time,
    the first ends alone after its wait and the peak stays 1."""

    resources = {}

    def run(self):
        import time

        with open(self.journal, "a") as log:
            log.write(f"start {time.time()}\n")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with open(self.journal) as log:
                if sum(line.startswith("start") for line in log) >= 2:
                    break
            time.sleep(0.01)
        with open(self.journal, "a") as log:
            log.write(f"end {time.time()}\n")
        with self.output().open("w") as out:
            out.write("ok")


def test_parallel_workers_overlap_without_resources(tmp_path: Path, locks) -> None:
    journal = tmp_path / "journal"
    tasks = [Free(path=str(tmp_path / f"f{i}"), journal=str(journal)) for i in range(4)]
    result = bd.build(tasks, workers=2, locks=locks)
    assert result.ok, result.tasks
    peak, _ = peak_running(journal)
    assert peak == 2


class Dies(bd.Task):
    path = bd.Parameter()
    how = bd.Parameter()

    def output(self):
        return bd.FileTarget(self.path)

    def run(self):
        import signal

        with self.output().open("w") as out:
            out.write("half")
            out.flush()
            if self.how == "exit":
                os._exit(3)
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("how,expected", [("exit", "exit code 3"), ("kill", "killed by signal 9")])
def test_worker_process_that_dies_fails_its_task_only(tmp_path: Path, locks, how: str,
                                                      expected: str) -> None:
    dying = Dies(path=str(tmp_path / "dies"), how=how)
    fine = [Write(path=str(tmp_path / f"ok{i}")) for i in range(3)]
    result = bd.build([dying, *fine], workers=2, locks=locks)
    assert result.tasks[dying.task_id].status == Status.FAILED
    assert f"worker process died ({expected})" in result.tasks[dying.task_id].error
    assert all(result.tasks[t.task_id].status == Status.BUILT for t in fine)
    assert not (tmp_path / "dies").exists()
    # the next attempt (a rerun) removes what the dead worker left in the temporary folder
    bd.build(Write(path=str(tmp_path / "dies")), locks=locks)
    assert not (tmp_path / ".batchdeps-tmp").exists()


class WritesFromThreads(bd.Task):
    """Writes both outputs from a thread pool (threads do not inherit context variables)."""

    root = bd.Parameter()
    fail = bd.BoolParameter(default=False)

    def output(self):
        return {"a": bd.FileTarget(f"{self.root}/a"), "b": bd.FileTarget(f"{self.root}/b")}

    def run(self):
        from concurrent.futures import ThreadPoolExecutor

        def write(target):
            with target.open("w") as out:
                out.write("from a thread")

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(write, self.output().values()))
        if self.fail:
            raise RuntimeError("failed after the threads wrote")


@pytest.mark.parametrize("workers", [1, 2])
def test_writes_from_threads_run_starts_are_staged_too(tmp_path: Path, locks,
                                                        workers: int) -> None:
    failing = WritesFromThreads(root=str(tmp_path), fail=True)
    result = bd.build(failing, workers=workers, locks=locks)
    assert result.tasks[failing.task_id].status == Status.FAILED
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == []
    assert not (tmp_path / ".batchdeps-tmp").exists()
    # so the rerun is not fooled into "complete", and a good run commits both
    good = WritesFromThreads(root=str(tmp_path))
    result = bd.build(good, workers=workers, locks=locks)
    assert result.tasks[good.task_id].status == Status.BUILT
    assert (tmp_path / "a").read_text() == (tmp_path / "b").read_text() == "from a thread"


class CompleteRaisesOnRecheck(bd.Task):
    """complete() answers False during resolution, then raises when re-checked under lock."""

    path = bd.Parameter()

    def output(self):
        return bd.FileTarget(self.path)

    def complete(self):
        calls = getattr(type(self), "calls", 0) + 1
        type(self).calls = calls
        if calls > 1:
            raise ConnectionError("database went away")
        return False

    def run(self):  # pragma: no cover - never reached
        raise AssertionError("must not run")


def test_complete_that_raises_under_lock_fails_that_task_only(tmp_path: Path, locks) -> None:
    flaky = CompleteRaisesOnRecheck(path=str(tmp_path / "flaky"))
    other = Write(path=str(tmp_path / "other"))
    result = bd.build([flaky, other], locks=locks)
    assert result.tasks[flaky.task_id].status == Status.FAILED
    assert "ConnectionError: database went away" in result.tasks[flaky.task_id].error
    assert result.tasks[other.task_id].status == Status.BUILT
    assert result.exit_code == 1
    assert locks.holder(flaky.task_id) == ""  # its lock was released


class Needs(bd.Task):
    path = bd.Parameter()

    def requires(self):
        return Leafy(path=self.path + ".leaf")

    def output(self):
        return bd.FileTarget(self.path)

    def run(self):
        with self.input().open("r") as src, self.output().open("w") as out:
            out.write(src.read())


class Leafy(bd.Task):
    path = bd.Parameter()
    text = bd.Parameter(default="built-in default")

    def output(self):
        return bd.FileTarget(self.path)

    def run(self):
        with self.output().open("w") as out:
            out.write(self.text)


def test_build_applies_task_defaults_from_config_to_tasks_made_in_requires(
        tmp_path: Path, locks) -> None:
    config = bd.Config(root=str(tmp_path), tasks={"Leafy": {"text": "from config"}})
    result = bd.build(Needs(path=str(tmp_path / "n")), config=config, locks=locks)
    assert result.ok
    assert (tmp_path / "n").read_text() == "from config"
    bd.build(Needs(path=str(tmp_path / "m")), locks=locks)  # no config: built-in default again
    assert (tmp_path / "m").read_text() == "built-in default"
