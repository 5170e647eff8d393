"""Resolution: which tasks a plan holds, why, in what order; errors that name the task."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import batchdeps as bd
from batchdeps.errors import CycleError, TargetCheckError, TaskDefinitionError
from batchdeps.resolver import MISSING, RUN, resolve


class Node(bd.Task):
    """A task at `path` requiring the nodes named in `needs` (a tree described by strings)."""

    name = bd.Parameter()
    root = bd.Parameter()
    needs = bd.ListParameter(default=())

    def requires(self):
        return [Node(name=n, root=self.root, needs=GRAPH.get(n, ())) for n in self.needs]

    def output(self):
        return bd.FileTarget(f"{self.root}/{self.name}")


GRAPH: dict[str, tuple[str, ...]] = {}


def node(tmp_path: Path, name: str) -> Node:
    return Node(name=name, root=str(tmp_path), needs=GRAPH.get(name, ()))


@pytest.fixture(autouse=True)
def diamond_graph():
    GRAPH.clear()
    GRAPH.update({"d": ("b", "c"), "b": ("a",), "c": ("a",), "a": ()})
    yield
    GRAPH.clear()


def ids(plan) -> list[str]:
    return [step.task.name for step in plan.steps]


def test_plan_orders_dependencies_first_and_lists_shared_task_once(tmp_path: Path) -> None:
    plan = resolve([node(tmp_path, "d")])
    order = ids(plan)
    assert sorted(order) == ["a", "b", "c", "d"]
    assert order[0] == "a" and order[-1] == "d"
    step_d = plan.steps[-1]
    assert sorted(s.task.name for s in step_d.upstream) == ["b", "c"]
    assert all(step.reason.startswith("output ") and step.reason.endswith(" missing")
               for step in plan.steps)


def test_complete_task_requirements_are_not_visited(tmp_path: Path) -> None:
    (tmp_path / "b").write_text("x")
    plan = resolve([node(tmp_path, "d")])
    # b is complete, so a is reached only through c
    assert sorted(ids(plan)) == ["a", "c", "d"]
    (tmp_path / "d").write_text("x")
    plan = resolve([node(tmp_path, "d")])
    assert plan.steps == [] and [t.name for t in plan.complete] == ["d"]


def test_force_replans_only_requested_task(tmp_path: Path) -> None:
    for name in "abcd":
        (tmp_path / name).write_text("x")
    plan = resolve([node(tmp_path, "d")], force=True)
    assert ids(plan) == ["d"]
    assert plan.steps[0].reason == "forced"


def test_cycle_is_an_error_naming_the_cycle(tmp_path: Path) -> None:
    GRAPH.update({"a": ("d",)})
    with pytest.raises(CycleError) as info:
        resolve([node(tmp_path, "d")])
    message = str(info.value)
    assert "dependency cycle" in message
    for name in ("name=a", "name=b", "name=d"):
        assert name in message


def test_self_requirement_is_a_cycle(tmp_path: Path) -> None:
    GRAPH.update({"a": ("a",)})
    with pytest.raises(CycleError, match="requires itself"):
        resolve([node(tmp_path, "a")])


class Ext(bd.ExternalTask):
    path = bd.Parameter()

    def output(self):
        return bd.FileTarget(self.path)


class UsesExt(bd.Task):
    path = bd.Parameter()

    def requires(self):
        return Ext(path=self.path + ".in")

    def output(self):
        return bd.FileTarget(self.path)


def test_missing_external_input_is_a_missing_step_with_its_path(tmp_path: Path) -> None:
    plan = resolve([UsesExt(path=str(tmp_path / "x"))])
    kinds = {step.task.family(): step.kind for step in plan.steps}
    assert kinds == {"Ext": MISSING, "UsesExt": RUN}
    missing = plan.steps[0]
    assert missing.missing_paths == [str(tmp_path / "x.in")]


class Wrap(bd.WrapperTask):
    root = bd.Parameter()

    def requires(self):
        return [node(Path(self.root), "a"), node(Path(self.root), "b")]


class WrapWrap(bd.WrapperTask):
    root = bd.Parameter()

    def requires(self):
        return Wrap(root=self.root)


def test_wrapper_complete_when_all_requirements_complete(tmp_path: Path) -> None:
    plan = resolve([WrapWrap(root=str(tmp_path))])
    assert [s.task.family() for s in plan.steps][-2:] == ["Wrap", "WrapWrap"]
    assert plan.steps[-1].reason.startswith("upstream Wrap(")
    (tmp_path / "a").write_text("x")
    (tmp_path / "b").write_text("x")
    plan = resolve([WrapWrap(root=str(tmp_path))])
    assert plan.steps == []
    assert [t.family() for t in plan.complete] == ["WrapWrap"]


def test_force_on_wrapper_rebuilds_what_it_wraps_through_nested_wrappers(tmp_path: Path) -> None:
    for name in "ab":
        (tmp_path / name).write_text("x")
    plan = resolve([WrapWrap(root=str(tmp_path))], force=True)
    reasons = {step.task.family() + ":" + getattr(step.task, "name", ""): step.reason
               for step in plan.steps}
    assert reasons["Node:a"] == "forced" and reasons["Node:b"] == "forced"
    assert reasons["Wrap:"].startswith("upstream ") and reasons["WrapWrap:"].startswith("upstream ")
    assert len(plan.steps) == 4  # the forced nodes' own upstream is not rebuilt


def test_force_on_present_external_task_is_complete_not_missing(tmp_path: Path) -> None:
    (tmp_path / "x.in").write_text("x")
    plan = resolve([Ext(path=str(tmp_path / "x.in"))], force=True)
    assert plan.steps == [] and len(plan.complete) == 1


class CustomComplete(bd.Task):
    done = bd.BoolParameter()

    def complete(self):
        return self.done


class ExplodingComplete(bd.Task):
    def complete(self):
        raise ValueError("cannot tell")


def test_custom_complete_is_honoured_and_its_errors_name_the_task() -> None:
    assert resolve([CustomComplete(done=True)]).steps == []
    plan = resolve([CustomComplete(done=False)])
    assert plan.steps[0].reason == "complete() returned False"
    with pytest.raises(TaskDefinitionError, match=r"ExplodingComplete\(\): complete\(\) raised"):
        resolve([ExplodingComplete()])


class Unreadable(bd.Task):
    path = bd.Parameter()

    def output(self):
        return bd.FileTarget(self.path)


@pytest.mark.skipif(sys.platform != "linux" or __import__("os").geteuid() == 0,
                    reason="permission checks are bypassed by root")
def test_check_that_cannot_decide_is_an_error_not_missing(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(TargetCheckError, match="cannot check"):
            resolve([Unreadable(path=str(locked / "x"))])
    finally:
        locked.chmod(0o700)


def test_symlink_loop_is_a_check_error_not_missing(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(TargetCheckError, match=r"cannot check .*loop/x"):
        resolve([Unreadable(path=str(tmp_path / "loop" / "x"))])


def test_path_under_a_plain_file_counts_as_missing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    plan = resolve([Unreadable(path=str(tmp_path / "file" / "x"))])
    assert len(plan.steps) == 1


class Chain(bd.Task):
    n = bd.IntParameter()
    root = bd.Parameter()

    def requires(self):
        return Chain(n=self.n - 1, root=self.root) if self.n > 0 else None

    def output(self):
        return bd.FileTarget(f"{self.root}/{self.n}")


def test_deep_chain_resolves_without_recursion(tmp_path: Path) -> None:
    depth = sys.getrecursionlimit() * 3
    plan = resolve([Chain(n=depth, root=str(tmp_path))])
    assert len(plan.steps) == depth + 1
    assert plan.steps[0].task.n == 0 and plan.steps[-1].task.n == depth


def test_describe_has_one_line_per_step_with_reason(tmp_path: Path) -> None:
    plan = resolve([node(tmp_path, "b")])
    lines = plan.describe()
    assert len(lines) == 2
    assert "Node(name=a" in lines[0] and f"output {tmp_path}/a missing" in lines[0]


class WrapCycle(bd.WrapperTask):
    name = bd.Parameter()

    def requires(self):
        return WrapCycle(name={"x": "y", "y": "x"}[self.name])


def test_a_cycle_of_wrappers_is_an_error_naming_the_cycle() -> None:
    with pytest.raises(CycleError) as caught:
        resolve([WrapCycle(name="x")])
    assert "WrapCycle(name=x)" in str(caught.value) and "WrapCycle(name=y)" in str(caught.value)


HASHED: list[str] = []


class Counted(bd.Task):
    """Node `n` of a binary tree of `size` nodes that notes each time it is hashed."""

    n = bd.IntParameter()
    size = bd.IntParameter()
    root = bd.Parameter()

    def requires(self):
        return [Counted(n=c, size=self.size, root=self.root)
                for c in (2 * self.n + 1, 2 * self.n + 2) if c < self.size]

    def output(self):
        return bd.FileTarget(f"{self.root}/{self.n}")

    def __hash__(self) -> int:
        HASHED.append(self.task_id)
        return super().__hash__()

    __eq__ = bd.Task.__eq__


def test_resolution_keys_its_tables_by_task_id_and_hashes_no_task_per_step(
        tmp_path: Path) -> None:
    # Task.__hash__ is a Python call; a task id (a str) keeps its hash. A plan of 200
    # steps hashes the requested task once (requested tasks are made unique), not each
    # task at every look-up (that equal tasks made by two parents are one step is
    # test_plan_orders_dependencies_first_and_lists_shared_task_once's).
    HASHED.clear()
    plan = resolve([Counted(n=0, size=200, root=str(tmp_path))])
    assert len(plan.steps) == 200
    assert len({step.task_id for step in plan.steps}) == 200
    assert len(HASHED) <= 2, HASHED


def test_a_missing_outputs_reason_is_the_one_the_general_wording_gives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One output has its own short path in OutputsMissing.text; the words are those of
    # _missing_reason, for a relative path (shown with what it resolved to) and an absolute.
    from batchdeps.resolver import _missing_reason

    monkeypatch.chdir(tmp_path)
    for root in ("rel", str(tmp_path / "abs")):
        step = resolve([Node(name="a", root=root)]).steps[0]
        assert step.reason == _missing_reason([t.url for t in step.outputs], str(tmp_path))
        assert step.reason.startswith(f"output {root}/a")
