"""What a plan keeps per task stays small: no per-instance dict or empty list per step."""

from __future__ import annotations

import batchdeps as bd
from batchdeps.report.result import Status, TaskResult
from batchdeps.resolver import resolve


class Part(bd.Task):
    n = bd.IntParameter()
    root = bd.Parameter()

    def output(self) -> bd.Target:
        return bd.FileTarget(f"{self.root}/{self.n}.txt")

    def run(self) -> None:
        with self.output().open("w") as handle:
            handle.write("x")


class All(bd.WrapperTask):
    root = bd.Parameter()

    def requires(self) -> list[Part]:
        return [Part(n=i, root=self.root) for i in range(3)]


def test_plan_objects_keep_no_instance_dict(tmp_path):
    plan = resolve([All(root=str(tmp_path))])
    step = next(s for s in plan.steps if isinstance(s.task, Part))
    assert not hasattr(step, "__dict__")
    assert not hasattr(step.outputs[0], "__dict__")
    assert step.missing_paths == ()  # the shared empty tuple, not a list per step
    assert not hasattr(TaskResult("T()", Status.BUILT), "__dict__")


def test_results_of_a_build_keep_missing_paths_only_where_there_are_some(tmp_path):
    result = bd.build([All(root=str(tmp_path))])
    built = [r for r in result.tasks.values() if r.status is Status.BUILT]
    assert len(built) == 4
    assert all(r.missing_paths == () and r.log_path is None for r in built)


# -- what a finished build keeps per task (issue 22: <= 1 KiB per task at a million) ------
import gc
import graphlib
import os
import random
import tracemalloc

from batchdeps.report.result import TaskResults
from batchdeps.run.attempt import CLOSED
from batchdeps.run.runner import Runner
from batchdeps.locks import LocalLockProvider


class Node(bd.Task):
    """Node n of a 10-ary tree of `size` nodes (bench/dags' TreeNode)."""

    n = bd.IntParameter(default=0)
    size = bd.IntParameter()
    root = bd.Parameter()

    def requires(self) -> list[Node]:
        first = 10 * self.n + 1
        return [Node(n=c, size=self.size, root=self.root)
                for c in range(first, min(first + 10, self.size))]

    def output(self) -> bd.Target:
        return bd.FileTarget(f"{self.root}/{self.n}.txt")

    def run(self) -> None:
        with self.output().open("w") as handle:
            handle.write("x")


def _alive_per_task(tmp_path, size: int) -> float:
    """Bytes alive per task after a build (relative roots: the ids and paths, which the
    user's names make as long as they like, stay the same length wherever it runs)."""
    os.chdir(tmp_path)
    bd.build([Node(size=50, root="warm")])  # imports and caches first
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = bd.build([Node(size=size, root="tree")])
        gc.collect()
        alive = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert result.ok and len(result.tasks) == size
    return alive / size


def test_a_finished_build_keeps_under_a_kilobyte_per_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    """Everything a build's result keeps alive per task: the task objects, the plan's steps
    and targets, the results. Before issue 22 this was 2,104 bytes (1,676 after the
    slots); dropping each StepRun at close, results kept as a byte and two numbers,
    reasons made on demand, tuples for edges and outputs, and no dict or value tuple per
    task object brought it to about 700."""
    per_task = _alive_per_task(tmp_path, 4000)
    # about 600 on Python 3.11: keeping each StepRun (+185) or each TaskResult (+250) fails it
    assert per_task < 700, f"{per_task:.0f} bytes alive per task"


def test_closed_steps_share_one_closed_state_and_results_stay_compact(tmp_path):
    plan = resolve([Node(size=200, root=str(tmp_path))])
    (tmp_path / "locks").mkdir()
    runner = Runner(plan, LocalLockProvider(str(tmp_path / "locks")))
    result = runner.run()
    assert result.ok
    assert all(run is CLOSED for run in runner.lifecycle.runs)
    assert runner.results._detail == {}  # nothing beyond status, attempts and duration
    built = result.tasks[Node(n=7, size=200, root=str(tmp_path)).task_id]
    assert built.status is Status.BUILT and built.attempts == 1
    assert built.reason == f"output {tmp_path}/7.txt missing"  # made from the outputs


class Rand(bd.Task):
    """Node n of a random DAG: it requires some nodes with a higher number."""

    n = bd.IntParameter()
    seed = bd.IntParameter()
    size = bd.IntParameter()

    def requires(self) -> list[Rand]:
        rng = random.Random(self.seed * 100_003 + self.n)
        later = range(self.n + 1, self.size)
        picked = rng.sample(later, min(len(later), rng.randint(0, 4)))
        return [Rand(n=m, seed=self.seed, size=self.size) for m in picked]

    def output(self) -> bd.Target:
        return bd.FileTarget(f"/nonexistent-bd-test/{self.seed}/{self.n}")


def _graphlib_order(steps):
    """The order the resolver gave before it sorted by itself (graphlib's static_order)."""
    sorter = graphlib.TopologicalSorter()
    for step in steps:
        sorter.add(step, *step.upstream)
    return list(sorter.static_order())


def test_the_plan_order_puts_every_step_after_its_upstream():
    for seed in range(30):
        roots = [Rand(n=0, seed=seed, size=40), Rand(n=3, seed=seed, size=40)]
        plan = resolve(roots)
        by_task = {s.task: s for s in plan.steps}
        resolved_again = [by_task[s.task] for s in _graphlib_order(
            sorted(plan.steps, key=lambda s: s.task_id))]  # any insertion order sorts right
        assert [s.index for s in plan.steps] == list(range(len(plan.steps)))
        for step in plan.steps:
            assert all(up.index < step.index for up in step.upstream)
            assert all(step in up.downstream for up in step.upstream)
        assert len(resolved_again) == len(plan.steps)


def test_the_plan_order_is_the_one_graphlib_gives_for_the_same_walk():
    for seed in range(30):
        plan = resolve([Rand(n=0, seed=seed, size=40)])
        # the steps in the order the walk made them: graphlib saw them in that order
        made = sorted(plan.steps, key=lambda s: _walk_position(plan, s))
        assert [s.task_id for s in _graphlib_order(made)] == [s.task_id for s in plan.steps]


def _walk_position(plan, step, _cache={}):  # noqa: B006 - per-plan cache
    key = id(plan)
    if key not in _cache:
        order = {}
        frontier = list(plan.requested)
        seen = set(frontier)
        while frontier:
            nxt = []
            for task in frontier:
                order[task] = len(order)
                for req in task.requires():
                    if req not in seen:
                        seen.add(req)
                        nxt.append(req)
            frontier = nxt
        _cache.clear()
        _cache[key] = order
    return _cache[key][step.task]


def test_compact_results_read_as_the_same_results_kept_whole(tmp_path):
    """The fast path (a status byte, attempts, duration by index) and the slow one (a
    TaskResult kept as given) answer every question alike, in the same order."""
    plan = resolve([Node(size=30, root=str(tmp_path))])
    compact, whole = TaskResults(), TaskResults()
    compact.bind(plan.steps, plan.steps[-1:])
    statuses = [Status.BUILT, Status.FAILED, Status.BUILT, Status.UPSTREAM_FAILED]
    for number, step in enumerate(reversed(plan.steps)):
        status = statuses[number % len(statuses)]
        attempts = 1 + number % 3
        kept = TaskResult(step.task_id, status, reason=step.reason, attempts=attempts,
                          duration=number / 10)
        if number % 5 == 0:  # some with more to say
            kept = TaskResult(step.task_id, status, reason="other", attempts=attempts,
                              error="boom", duration=number / 10)
            compact.record(step, status, detail=kept)
        else:
            compact.record(step, status, attempts, number / 10)
        whole[step.task_id] = kept
    compact["Elsewhere()"] = whole["Elsewhere()"] = TaskResult("Elsewhere()", Status.COMPLETE)
    assert list(compact) == list(whole) and len(compact) == len(whole) == 31
    assert compact.items() == list(whole.items())
    assert compact.counts() == whole.counts()
    for status in Status:
        assert compact.matching([status]) == whole.matching([status])
    assert compact.matching(min_attempts=2) == whole.matching(min_attempts=2)
    for key in whole:
        assert key in compact and compact[key] == whole[key]
    assert "Node(n=999, size=30, root=x)" not in compact
    del compact[plan.steps[0].task_id]
    del whole[plan.steps[0].task_id]
    assert compact == whole and len(compact) == 30
