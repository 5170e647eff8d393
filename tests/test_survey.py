"""The survey behind `status` and `graph`: states, reasons, what run would reach, holders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import batchdeps as bd
from batchdeps.errors import CycleError
from batchdeps.survey import render
from batchdeps.survey.states import BLOCKED, COMPLETE, EXTERNAL_MISSING, MISSING, RUNNING, survey

ROOT = {"path": ""}


class In(bd.ExternalTask):
    def output(self):
        return bd.FileTarget(f"{ROOT['path']}/in")


class Step(bd.Task):
    """c needs b needs a needs In; `loop` makes a require c (a cycle)."""

    name = bd.Parameter()
    loop = bd.BoolParameter(default=False)

    def requires(self):
        below = {"c": "b", "b": "a"}.get(self.name)
        if below:
            return Step(name=below, loop=self.loop)
        return Step(name="c", loop=True) if self.loop else In()

    def output(self):
        return bd.FileTarget(f"{ROOT['path']}/{self.name}")


class Both(bd.WrapperTask):
    def requires(self):
        return [Step(name="c"), Step(name="b")]


@pytest.fixture(autouse=True)
def folder(tmp_path: Path) -> Path:
    ROOT["path"] = str(tmp_path)
    return tmp_path


def states(result) -> dict[str, str]:
    return {getattr(n.task, "name", n.task.family()): n.state for n in result.nodes}


def make(folder: Path, *names: str, mtime: float = 1_700_000_000) -> None:
    for name in names:
        (folder / name).write_text(name)
        os.utime(folder / name, (mtime, mtime))


def test_states_and_exit_codes(folder: Path) -> None:
    result = survey([Step(name="c")])
    assert states(result) == {"In": EXTERNAL_MISSING, "a": BLOCKED, "b": BLOCKED, "c": BLOCKED}
    assert int(result.exit_code) == 3
    make(folder, "in")
    result = survey([Step(name="c")])
    assert states(result) == {"In": COMPLETE, "a": MISSING, "b": MISSING, "c": MISSING}
    assert int(result.exit_code) == 1
    make(folder, "a", "b", "c")
    assert int(survey([Step(name="c")]).exit_code) == 0


def test_a_deleted_intermediate_is_reported_but_not_needed(folder: Path) -> None:
    make(folder, "in", "a", "c")
    result = survey([Step(name="c")])
    top = result.roots[0]
    assert top.label == "complete, upstream missing"
    b = next(n for n in result.nodes if getattr(n.task, "name", "") == "b")
    assert b.state == MISSING and not b.needed
    assert any("--force-from" in reason for reason in b.reasons())
    assert int(result.exit_code) == 0  # run would build nothing


def test_upstream_newer_passes_down_to_every_user(folder: Path) -> None:
    make(folder, "a", "b", "c")
    make(folder, "in", mtime=1_800_000_000)
    labels = {n.task_id: n.label for n in survey([Step(name="c")]).nodes}
    assert all(label == "complete, upstream newer" for tid, label in labels.items()
               if tid.startswith("Step"))
    assert survey([Step(name="c")], newer=False).roots[0].label == "complete"


def test_a_wrapper_is_complete_when_what_it_wraps_is(folder: Path) -> None:
    make(folder, "in", "a", "b")
    result = survey([Both()])
    assert result.roots[0].state == MISSING and result.roots[0].wrapper
    make(folder, "c")
    assert survey([Both()]).roots[0].state == COMPLETE


def test_holders_turn_incomplete_tasks_into_running(folder: Path) -> None:
    make(folder, "in")
    asked: list[list[str]] = []

    def holders(keys: list[str]) -> dict[str, str]:
        asked.append(keys)
        return {"Step(name=b, loop=false)": "host elsewhere-1 pid 7 run x"}

    result = survey([Step(name="c")], holders)
    assert len(asked) == 1 and sorted(asked[0]) == sorted(
        f"Step(name={n}, loop=false)" for n in "abc")
    b = next(n for n in result.nodes if n.task_id == "Step(name=b, loop=false)")
    assert b.state == RUNNING and b.label == "running elsewhere"
    assert "lock held by host elsewhere-1 pid 7 run x" in b.reasons()


def test_a_cycle_is_an_error_naming_the_tasks(folder: Path) -> None:
    with pytest.raises(CycleError, match="Step"):
        survey([Step(name="c", loop=True)])


def test_renderings_name_every_node_and_edge(folder: Path) -> None:
    make(folder, "in", "a")
    result = survey([Step(name="c"), Step(name="b")])
    text = render.tree(result)
    assert text.count("Step(name=b, loop=false)") == 2 and "(shown above)" in text
    assert render.to_dot(result).count(" -> ") == 3
    assert render.to_mermaid(result).count(" --> ") == 3
    assert '"edges": [[' in render.to_json(result)
