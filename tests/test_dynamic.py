"""Dynamic dependencies: a run() that yields tasks, on both paths (resumed inline, run again
from the top in worker processes), through `bd.build`, the command line and a lock server."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.journal import JOURNAL_FUNCTION
from support.lockutil import BATCHDEPS, LockProject
from support.waiting import wait_for

import batchdeps as bd
from batchdeps.locks.local import LocalLockProvider
from batchdeps.report.events import TasksYielded
from batchdeps.report.result import Status


def note(root: str, event: str, task: bd.Task) -> None:
    with open(os.path.join(root, "journal.txt"), "a") as journal:
        journal.write(f"{event}\t{task.task_id}\n")


def journal(root: Path) -> list[tuple[str, str]]:
    path = root / "journal.txt"
    if not path.exists():
        return []
    return [tuple(line.split("\t")) for line in path.read_text().splitlines()]  # type: ignore[misc]


def count(root: Path, event: str, task_id: str) -> int:
    return sum(1 for e, t in journal(root) if e == event and t == task_id)


class Raw(bd.ExternalTask):
    root = bd.Parameter()

    def output(self):
        return bd.FileTarget(f"{self.root}/raw.txt")


class Leaf(bd.Task):
    root = bd.Parameter()
    n = bd.IntParameter()
    fail = bd.BoolParameter(default=False)
    needs_raw = bd.BoolParameter(default=False)

    def requires(self):
        return Raw(root=self.root) if self.needs_raw else None

    def output(self):
        return bd.FileTarget(f"{self.root}/leaf-{self.n}.txt")

    def run(self):
        note(self.root, "start", self)
        # What the yielding task wrote before its yield is not visible yet (leaves below
        # 10 belong to one parent at a time; those of Shares run beside finished parents).
        if self.n < 10:
            assert not list(Path(self.root).glob("*-before.txt"))
        if self.fail:
            raise RuntimeError(f"leaf {self.n} broke")
        with self.output().open("w") as out:
            out.write(f"leaf{self.n}")


class Parent(bd.Task):
    """Writes a staged side output before its first yield, its main output at the end."""

    root = bd.Parameter()

    def output(self):
        return [bd.FileTarget(f"{self.root}/{self.family()}.txt"),
                bd.FileTarget(f"{self.root}/{self.family()}-before.txt")]

    def run(self):
        note(self.root, "start", self)
        with self.output()[1].open("w") as before:
            before.write("written before the first yield")
        text = yield from self.body()
        # The side output is still staged: nothing of an attempt shows before its end.
        assert not os.path.exists(self.output()[1].path)
        with self.output()[0].open("w") as out:
            out.write(text)
        note(self.root, "end", self)

    def body(self) -> Iterator[object]:
        raise NotImplementedError


class YieldOne(Parent):
    def body(self):
        leaf = yield Leaf(root=self.root, n=1)
        return "got " + leaf.open().read()


class YieldList(Parent):
    def body(self):
        leaves = yield [Leaf(root=self.root, n=1), Leaf(root=self.root, n=2)]
        return "+".join(t.open().read() for t in leaves)


class YieldDict(Parent):
    def body(self):
        leaves = yield {"a": Leaf(root=self.root, n=1), "b": Leaf(root=self.root, n=2)}
        return f"a={leaves['a'].open().read()} b={leaves['b'].open().read()}"


class YieldGenerator(Parent):
    def body(self):
        leaves = yield (Leaf(root=self.root, n=n) for n in (1, 2))
        return "+".join(t.open().read() for t in leaves)


class YieldLoop(Parent):
    rounds = bd.IntParameter(default=10)

    def body(self):
        got = []
        for n in range(self.rounds):
            leaf = yield Leaf(root=self.root, n=n)
            got.append(leaf.open().read())
        return ",".join(got)


class YieldFailing(Parent):
    def body(self):
        yield Leaf(root=self.root, n=7, fail=True)
        note(self.root, "after the yield", self)
        return "never"


class YieldMissing(Parent):
    def body(self):
        yield Leaf(root=self.root, n=8, needs_raw=True)
        return "never"


class YieldCustom(Parent):
    """custom_complete says the requirements are there when the last one is."""

    def body(self):
        leaves = [Leaf(root=self.root, n=n) for n in (1, 2, 3)]
        outputs = yield bd.DynamicRequirements(leaves, lambda complete: complete(leaves[-1]))
        return outputs[-1].open().read()


class NoOutputs(bd.Task):
    """A task without outputs: Luigi's examples yield from such tasks."""

    root = bd.Parameter()

    def run(self):
        leaf = yield Leaf(root=self.root, n=4)
        with open(os.path.join(self.root, "after-yield.txt"), "w") as marker:
            marker.write(leaf.open().read())


class Never(bd.Task):
    """Never complete: no outputs, a run() that does nothing."""

    root = bd.Parameter()

    def run(self):
        note(self.root, "start", self)


class YieldNever(Parent):
    def body(self):
        yield Never(root=self.root)
        return "never"


class YieldSelf(Parent):
    def body(self):
        yield self
        return "never"


class NeedsCycle(bd.Task):
    root = bd.Parameter()

    def requires(self):
        return YieldCycle(root=self.root)

    def output(self):
        return bd.FileTarget(f"{self.root}/needs-cycle.txt")

    def run(self):
        pass


class YieldCycle(Parent):
    def body(self):
        yield NeedsCycle(root=self.root)
        return "never"


class YieldNumber(Parent):
    def body(self):
        yield 5
        return "never"


class Shares(Parent):
    """One of several parents that yield a leaf of their own and one they share."""

    g = bd.IntParameter()

    def output(self):
        return [bd.FileTarget(f"{self.root}/shares-{self.g}.txt"),
                bd.FileTarget(f"{self.root}/shares-{self.g}-before.txt")]

    def body(self):
        own, shared = yield [Leaf(root=self.root, n=10 + self.g), Leaf(root=self.root, n=99)]
        return own.open().read() + shared.open().read()


class AllShares(bd.WrapperTask):
    root = bd.Parameter()
    parents = bd.IntParameter(default=4)

    def requires(self):
        return [Shares(root=self.root, g=g) for g in range(self.parents)]


class Chatty(bd.Task):
    root = bd.Parameter()

    def output(self):
        return bd.FileTarget(f"{self.root}/chatty.txt")

    def run(self):
        print("before the yield")
        leaf = yield Leaf(root=self.root, n=5)
        print("after the yield, got", leaf.open().read())
        with self.output().open("w") as out:
            out.write("chatty")


#: inline: run() resumes at its yield in the runner's process; forked: run() runs again
#: from the top in a worker process.
MODES = {"inline": 1, "forked": 2}


@pytest.fixture(params=sorted(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def build(tmp_path: Path, task: bd.Task, workers: int, **kwargs: object) -> bd.BuildResult:
    return bd.build([task], workers=workers, locks=LocalLockProvider(str(tmp_path / "locks")),
                    **kwargs)  # type: ignore[arg-type]


def starts_expected(mode: str, rounds: int) -> int:
    """run() starts: once inline; once per round of yields and once more when forked."""
    return 1 if mode == "inline" else rounds + 1


@pytest.mark.parametrize("task_class, rounds, expected", [
    (YieldOne, 1, "got leaf1"),
    (YieldList, 1, "leaf1+leaf2"),
    (YieldDict, 1, "a=leaf1 b=leaf2"),
    (YieldGenerator, 1, "leaf1+leaf2"),
    (YieldLoop, 10, ",".join(f"leaf{n}" for n in range(10))),
], ids=["one", "list", "dict", "generator", "loop-10"])
def test_yield_builds_the_tasks_and_run_goes_on_with_their_outputs(
        tmp_path: Path, mode: str, task_class: type[Parent], rounds: int,
        expected: str) -> None:
    root = str(tmp_path)
    parent = task_class(root=root)
    events: list[object] = []

    class Recorder:
        def on_event(self, event: object) -> None:
            events.append(event)

    result = build(tmp_path, parent, MODES[mode], listeners=[Recorder()])
    assert result.exit_code == 0, result.tasks
    assert (tmp_path / f"{task_class.__name__}.txt").read_text() == expected
    assert (tmp_path / f"{task_class.__name__}-before.txt").read_text() == \
        "written before the first yield"
    assert result.tasks[parent.task_id].status == Status.BUILT
    assert result.tasks[parent.task_id].attempts == 1
    leaves = [r for r in result.tasks.values() if r.task_id.startswith("Leaf(")]
    assert leaves and {r.status for r in leaves} == {Status.BUILT}
    for leaf in leaves:
        assert count(tmp_path, "start", leaf.task_id) == 1
    assert count(tmp_path, "start", parent.task_id) == starts_expected(mode, rounds)
    assert count(tmp_path, "end", parent.task_id) == 1
    yielded = [e for e in events if isinstance(e, TasksYielded)]
    assert len(yielded) == rounds and all(e.task_id == parent.task_id for e in yielded)
    assert not list(tmp_path.rglob("*.tmp*")), "an attempt's staged write was left behind"

    again = build(tmp_path, task_class(root=root), MODES[mode])
    assert [r.status for r in again.tasks.values()] == [Status.COMPLETE]


def test_yield_of_a_complete_task_goes_on_without_building_it(tmp_path: Path,
                                                              mode: str) -> None:
    (tmp_path / "leaf-1.txt").write_text("made before")
    result = build(tmp_path, YieldOne(root=str(tmp_path)), MODES[mode])
    assert result.exit_code == 0
    assert (tmp_path / "YieldOne.txt").read_text() == "got made before"
    assert list(result.tasks) == [YieldOne(root=str(tmp_path)).task_id]
    assert count(tmp_path, "start", YieldOne(root=str(tmp_path)).task_id) == 1  # both paths
    assert not any(t.startswith("Leaf(") for _, t in journal(tmp_path))


def test_custom_complete_decides_whether_run_goes_on(tmp_path: Path, mode: str) -> None:
    (tmp_path / "leaf-3.txt").write_text("third")
    result = build(tmp_path, YieldCustom(root=str(tmp_path)), MODES[mode])
    assert result.exit_code == 0
    assert (tmp_path / "YieldCustom.txt").read_text() == "third"
    assert not (tmp_path / "leaf-1.txt").exists()  # custom_complete said: all there


def test_a_yielded_task_that_fails_fails_its_parent_naming_it(tmp_path: Path,
                                                              mode: str) -> None:
    parent = YieldFailing(root=str(tmp_path))
    result = build(tmp_path, parent, MODES[mode])
    assert result.exit_code == 1
    leaf = Leaf(root=str(tmp_path), n=7, fail=True)
    assert result.tasks[leaf.task_id].status == Status.FAILED
    failed = result.tasks[parent.task_id]
    assert failed.status == Status.FAILED
    assert leaf.task_id in failed.error and "yielded" in failed.error
    assert count(tmp_path, "after the yield", parent.task_id) == 0
    assert not (tmp_path / "YieldFailing-before.txt").exists()
    assert not list(tmp_path.rglob("*.tmp*"))


def test_a_yielded_task_with_a_missing_input_blocks_its_parent_exit_3(tmp_path: Path,
                                                                      mode: str) -> None:
    parent = YieldMissing(root=str(tmp_path))
    result = build(tmp_path, parent, MODES[mode])
    assert result.exit_code == 3
    assert result.tasks[Raw(root=str(tmp_path)).task_id].status == Status.MISSING_INPUT
    assert result.tasks[parent.task_id].status == Status.BLOCKED
    assert str(tmp_path / "raw.txt") in result.tasks[parent.task_id].missing_paths
    assert not (tmp_path / "YieldMissing-before.txt").exists()


def test_a_task_without_outputs_runs_the_code_after_its_yield(tmp_path: Path,
                                                             mode: str) -> None:
    result = build(tmp_path, NoOutputs(root=str(tmp_path)), MODES[mode])
    assert result.exit_code == 0
    assert (tmp_path / "after-yield.txt").read_text() == "leaf4"


@pytest.mark.parametrize("task_class, message", [
    (YieldNever, "still not complete"),
    (YieldSelf, "yielded its own task"),
    (YieldCycle, "dependency cycle"),
    (YieldNumber, "run() yielded int 5"),
])
def test_yields_that_cannot_be_served_fail_the_parent_with_a_reason(
        tmp_path: Path, mode: str, task_class: type[Parent], message: str) -> None:
    parent = task_class(root=str(tmp_path))
    result = build(tmp_path, parent, MODES[mode])
    assert result.exit_code == 1
    failed = result.tasks[parent.task_id]
    assert failed.status == Status.FAILED
    assert message in failed.error, failed.error
    assert not (tmp_path / f"{task_class.__name__}.txt").exists()


def test_the_attempt_log_holds_what_run_printed_before_and_after_the_yield(
        tmp_path: Path, mode: str) -> None:
    parent = Chatty(root=str(tmp_path))
    result = build(tmp_path, parent, MODES[mode], log_dir=str(tmp_path / "logs"))
    assert result.exit_code == 0
    log_path = result.tasks[parent.task_id].log_path
    assert log_path is not None
    text = Path(log_path).read_text()
    assert "after the yield, got leaf5" in text
    # Resumed at the yield, or run() again from the top: each part is in the log.
    assert text.count("before the yield") == (1 if mode == "inline" else 2)
    assert text.count("the attempt goes on") == 1
    assert text.startswith(f"# {parent.task_id} attempt 1 of run ")


def test_parents_waiting_for_yielded_tasks_leave_the_workers_to_them(tmp_path: Path) -> None:
    """More waiting parents than workers: a parent never sits on a worker while it waits."""
    root = str(tmp_path)
    result = build(tmp_path, AllShares(root=root, parents=10), 2)
    assert result.exit_code == 0, result.tasks
    for g in range(10):
        assert (tmp_path / f"shares-{g}.txt").read_text() == f"leaf{10 + g}leaf99"
    assert count(tmp_path, "start", Leaf(root=root, n=99).task_id) == 1


def test_many_yielded_tasks_under_four_workers(tmp_path: Path) -> None:
    root = str(tmp_path)
    result = build(tmp_path, AllShares(root=root, parents=8), 4)
    assert result.exit_code == 0, result.tasks
    built = [t for t, r in result.tasks.items() if r.status == Status.BUILT]
    assert len(built) == 1 + 8 + 8 + 1  # the wrapper, parents, their own leaves, the shared one
    for leaf in [*(10 + g for g in range(8)), 99]:
        assert count(tmp_path, "start", Leaf(root=root, n=leaf).task_id) == 1


# -- the command line: a lock server shared by two runs, and kill -9 --------------------

DYN_PIPELINE = '''
"""Dynamic dependencies: DynTop <- DynParent(g), whose run() yields DynLeaf tasks."""
import os
import time

import batchdeps as bd

''' + JOURNAL_FUNCTION + '''


class DynLeaf(bd.Task):
    n = bd.IntParameter()

    def output(self):
        return bd.FileTarget(f"out/dynleaf-{self.n}.txt")

    def run(self):
        journal("start", self)
        deadline = time.time() + float(os.environ.get("SLEEP_LEAF", "0"))
        while time.time() < deadline and not os.path.exists("go"):
            time.sleep(0.02)
        with self.output().open("w") as out:
            out.write(f"leaf{self.n}\\n")
        journal("end", self)


class DynParent(bd.Task):
    g = bd.IntParameter()

    def output(self):
        return bd.FileTarget(f"out/dynparent-{self.g}.txt")

    def run(self):
        journal("start", self)
        got = []
        for n in (self.g, 100 + self.g % 2):
            leaf = yield DynLeaf(n=n)
            with leaf.open() as handle:
                got.append(handle.read())
        with self.output().open("w") as out:
            out.write("".join(got))
        journal("end", self)


class DynNamed(bd.Task):
    name = bd.Parameter()

    def output(self):
        return bd.FileTarget(f"out/named-{len(self.name)}.txt")

    def run(self):
        journal("start", self)
        with self.output().open("w") as out:
            out.write("named")


class DynLong(bd.Task):
    """Yields a task whose id is longer than the lock server takes as a key."""

    def output(self):
        return bd.FileTarget("out/long.txt")

    def run(self):
        yield DynNamed(name="x" * 5000)
        with self.output().open("w") as out:
            out.write("never")


class DynTop(bd.WrapperTask):
    parents = bd.IntParameter(default=4)

    def requires(self):
        return [DynParent(g=g) for g in range(self.parents)]
'''


def test_two_runs_on_a_lock_server_build_each_yielded_task_once(
        lock_project: LockProject) -> None:
    (lock_project.root / "pipelines" / "dynpipe.py").write_text(DYN_PIPELINE)
    lock_project.write_config(ttl=10)
    procs = [lock_project.start("DynTop", "--workers", workers, SLEEP_LEAF="0.2")
             for workers in ("2", "1")]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err
    events = lock_project.events()
    leaf_starts = [t for e, t, _, _ in events if e == "start" and t.startswith("DynLeaf(")]
    assert sorted(leaf_starts) == sorted({*leaf_starts}) and len(leaf_starts) == 6
    parent_ends = [t for e, t, _, _ in events if e == "end" and t.startswith("DynParent(")]
    assert sorted(parent_ends) == [f"DynParent(g={g})" for g in range(4)]
    lock_project.assert_no_overlap()
    for g in range(4):
        text = (lock_project.root / "out" / f"dynparent-{g}.txt").read_text()
        assert text == f"leaf{g}\nleaf{100 + g % 2}\n"


def _local_project(root: Path) -> dict[str, str]:
    (root / "pipelines").mkdir(parents=True)
    (root / "pipelines" / "__init__.py").write_text("")
    (root / "pipelines" / "dynpipe.py").write_text(DYN_PIPELINE)
    (root / "config.toml").write_text(textwrap.dedent("""\
        [batchdeps]
        modules = ["pipelines"]
        """))
    env = {**os.environ, "JOURNAL": str(root / "journal.tsv"),
           "BATCHDEPS_LOCK_DIR": str(root / "locks")}
    env.pop("BATCHDEPS_LOCK_URL", None)
    env.pop("BATCHDEPS_CONFIG", None)
    return env


@pytest.mark.parametrize("workers", ["1", "2"])
def test_kill_9_of_the_runner_after_a_yield_then_the_rerun_finishes(
        tmp_path: Path, workers: str) -> None:
    env = _local_project(tmp_path)
    run = [BATCHDEPS, "run", "DynParent", "--g", "0", "--workers", workers]
    first = subprocess.Popen(run, cwd=tmp_path, env={**env, "SLEEP_LEAF": "60"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    journal_file = tmp_path / "journal.tsv"
    wait_for(lambda: journal_file.exists() and "start\tDynLeaf(n=0)" in journal_file.read_text(),
             what="the yielded task to start")
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    assert not (tmp_path / "out" / "dynparent-0.txt").exists()
    done = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "out" / "dynparent-0.txt").read_text() == "leaf0\nleaf100\n"
    again = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert again.returncode == 0
    ends = [line for line in journal_file.read_text().splitlines()
            if line.startswith("end\tDynParent")]
    assert len(ends) == 1  # the third run found everything complete


def _batchdeps(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BATCHDEPS, *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_status_and_graph_show_what_run_yielded_in_the_last_run(tmp_path: Path) -> None:
    import json

    env = _local_project(tmp_path)
    before = _batchdeps(tmp_path, env, "status", "DynTop", "--parents", "2", "--format", "json")
    assert before.returncode == 1
    assert not any(n["task_id"].startswith("DynLeaf") for n in json.loads(before.stdout)["nodes"])

    ran = _batchdeps(tmp_path, env, "run", "DynTop", "--parents", "2")
    assert ran.returncode == 0, ran.stderr
    # the yielded tasks' outcomes are in the run's summary and in the history
    leaves = ["DynLeaf(n=0)", "DynLeaf(n=1)", "DynLeaf(n=100)", "DynLeaf(n=101)"]
    assert "7 task(s): 7 built" in ran.stdout + ran.stderr
    history = _batchdeps(tmp_path, env, "history", "--family", "DynLeaf", "--json")
    assert history.returncode == 0, history.stderr
    records = json.loads(history.stdout)
    assert sorted(r["task_id"] for r in records) == leaves
    assert {r["status"] for r in records} == {"built"}
    (tmp_path / "out" / "dynleaf-0.txt").unlink()
    status = _batchdeps(tmp_path, env, "status", "DynTop", "--parents", "2", "--format", "json")
    assert status.returncode == 0, status.stderr  # run builds nothing: the parents are complete
    document = json.loads(status.stdout)
    nodes = {n["task_id"]: n for n in document["nodes"]}
    assert nodes["DynParent(g=0)"]["yielded"] == ["DynLeaf(n=0)", "DynLeaf(n=100)"]
    assert nodes["DynLeaf(n=0)"]["state"] == "missing"
    assert nodes["DynParent(g=0)"]["upstream_missing"] == "DynLeaf(n=0)"
    assert ["DynParent(g=1)", "DynLeaf(n=101)"] in document["edges"]

    text = _batchdeps(tmp_path, env, "status", "DynTop", "--parents", "2").stdout
    assert "(yielded) DynLeaf(n=0)  [missing]" in text
    dot = _batchdeps(tmp_path, env, "graph", "DynTop", "--parents", "2", "--format", "dot")
    assert dot.returncode == 0 and "[style=dashed]" in dot.stdout

    # A recorded class that is gone is left out with a warning, never guessed.
    source = (tmp_path / "pipelines" / "dynpipe.py").read_text()
    (tmp_path / "pipelines" / "dynpipe.py").write_text(source.replace(
        "class DynLeaf(bd.Task):\n    n = bd.IntParameter()",
        "class DynLeaf(bd.Task):\n    n = bd.IntParameter()\n    m = bd.IntParameter()"))
    changed = _batchdeps(tmp_path, env, "status", "DynParent", "--g", "1")
    assert changed.returncode == 0, changed.stderr
    assert "DynLeaf(n=1)" in changed.stderr and "left out" in changed.stderr
    assert "Traceback" not in changed.stderr
    assert "DynLeaf" not in changed.stdout


def test_a_task_waiting_for_what_it_yielded_keeps_its_lease_past_the_ttl(
        lock_project: LockProject) -> None:
    """The lease of a waiting task is renewed: another run waits for it instead of taking
    it over, though the yielded task takes longer than the lease."""
    (lock_project.root / "pipelines" / "dynpipe.py").write_text(DYN_PIPELINE)
    lock_project.write_config(ttl=1)
    first = lock_project.start("DynParent", "--g", "0", SLEEP_LEAF="3")
    wait_for(lambda: any(e == "start" and t == "DynLeaf(n=0)"
                         for e, t, _, _ in lock_project.events()),
             what="the yielded task to start")
    second = lock_project.start("DynParent", "--g", "0", SLEEP_LEAF="0")
    for proc in (first, second):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, out + err
    parent_runs = {pid for e, t, pid, _ in lock_project.events()
                   if e == "start" and t == "DynParent(g=0)"}
    assert parent_runs == {first.pid}
    assert sorted(t for e, t, _, _ in lock_project.events() if e == "end") == [
        "DynLeaf(n=0)", "DynLeaf(n=100)", "DynParent(g=0)"]


def test_a_yielded_task_the_lock_server_cannot_lock_fails_its_parent_clearly(
        lock_project: LockProject) -> None:
    (lock_project.root / "pipelines" / "dynpipe.py").write_text(DYN_PIPELINE)
    code, text = lock_project.run("DynLong")
    assert code == 1, text
    assert "the lock server takes keys of at most 4096 characters" in text
    assert "FAILED DynLong()" in text and "Traceback" not in text
    assert not any(t.startswith("DynNamed") for _, t, _, _ in lock_project.events())
    assert not (lock_project.root / "out" / "long.txt").exists()


# -- the lifecycle with a fake lock provider: a lease lost while run() waits ---------------

TAKEN_OVER: list[object] = []  # the FakeLocks of the test below, for LossyChild


class LossyChild(bd.Task):
    root = bd.Parameter()

    def output(self):
        return bd.FileTarget(f"{self.root}/lossy-child.txt")

    def run(self):
        # Meanwhile the parent's lease expires, and another run takes the parent and builds it.
        locks = TAKEN_OVER[0]
        locks.take_over(Lossy(root=self.root).task_id)  # type: ignore[attr-defined]
        Path(self.root, "lossy.txt").write_text("theirs")
        with self.output().open("w") as out:
            out.write("child")


class Lossy(bd.Task):
    root = bd.Parameter()

    def output(self):
        return bd.FileTarget(f"{self.root}/lossy.txt")

    def run(self):
        try:
            with bd.FileTarget(f"{self.root}/lossy-side.txt").open("w") as side:
                side.write("staged before the yield")
            yield LossyChild(root=self.root)
            with self.output().open("w") as out:
                out.write("ours")
        finally:
            Path(self.root, "closed.txt").write_text("the generator was ended")


def test_a_lease_lost_while_run_waits_ends_the_paused_run_and_keeps_the_other_build(
        tmp_path: Path) -> None:
    from test_attempt import FakeLocks

    from batchdeps.resolver import resolve
    from batchdeps.run.executors import InlineExecutor
    from batchdeps.run.runner import Runner

    locks = FakeLocks()
    TAKEN_OVER[:] = [locks]
    parent = Lossy(root=str(tmp_path))
    result = Runner(resolve([parent]), locks, InlineExecutor()).run()  # type: ignore[arg-type]
    assert result.exit_code == 0, result.tasks
    assert result.tasks[parent.task_id].status == Status.BUILT_ELSEWHERE
    assert (tmp_path / "lossy.txt").read_text() == "theirs"
    assert (tmp_path / "closed.txt").exists()
    assert not (tmp_path / "lossy-side.txt").exists()  # the paused attempt's write: discarded
    assert not list(tmp_path.rglob("*.tmp*"))
    assert locks.ours == {}  # nothing left held
