"""Forcing and blocked steps in resolution: --force, --force-upstream, --force-from."""

from __future__ import annotations

from pathlib import Path

import pytest

import batchdeps as bd
from batchdeps.errors import UsageError
from batchdeps.resolver import MISSING, complete_many, resolve


class Raw(bd.ExternalTask):
    name = bd.Parameter()
    root = bd.Parameter()

    def output(self):
        return bd.FileTarget(f"{self.root}/raw-{self.name}")


class Step(bd.Task):
    """A diamond: d needs b and c, both need a; a needs the external raw input."""

    name = bd.Parameter()
    root = bd.Parameter()

    def requires(self):
        needs = {"d": ["b", "c"], "b": ["a"], "c": ["a"], "a": []}[self.name]
        reqs = [Step(name=n, root=self.root) for n in needs]
        return reqs + [Raw(name="a", root=self.root)] if self.name == "a" else reqs

    def output(self):
        return bd.FileTarget(f"{self.root}/{self.name}")

    def run(self):
        with self.output().open("w") as out:
            out.write("rebuilt")


@pytest.fixture
def built(tmp_path: Path) -> Path:
    for name in ("raw-a", "a", "b", "c", "d"):
        (tmp_path / name).write_text(name)
    return tmp_path


def reasons(plan) -> dict[str, str]:
    return {step.task.name: step.reason for step in plan.steps}


def test_force_rebuilds_only_the_requested_task(built: Path) -> None:
    plan = resolve([Step(name="d", root=str(built))], force=True)
    assert reasons(plan) == {"d": "forced"}


def test_force_upstream_rebuilds_everything_but_external_tasks(built: Path) -> None:
    plan = resolve([Step(name="d", root=str(built))], force_upstream=True)
    top = "Step(name=d, root=" + str(built) + ")"
    assert reasons(plan) == {"d": "forced", "b": f"forced: upstream of {top}",
                             "c": f"forced: upstream of {top}", "a": f"forced: upstream of {top}"}
    assert plan.steps[0].task.name == "a"


def test_force_from_family_rebuilds_it_and_its_downstream_only(built: Path) -> None:
    root = str(built)
    plan = resolve([Step(name="d", root=root)], force_from=[f"Step(name=b, root={root})"])
    assert reasons(plan) == {"b": "forced", "d": f"forced: downstream of Step(name=b, root={root})"}


def test_force_from_an_external_family_rebuilds_what_reads_it(built: Path) -> None:
    plan = resolve([Step(name="d", root=str(built))], force_from=["Raw"])
    assert set(reasons(plan)) == {"a", "b", "c", "d"}
    assert all(r.startswith("forced: downstream of Raw(") for r in reasons(plan).values())


def test_force_from_a_selector_matching_nothing_is_a_usage_error(built: Path) -> None:
    with pytest.raises(UsageError, match="'Nope' matches no task"):
        resolve([Step(name="d", root=str(built))], force_from=["Nope"])


def test_steps_below_a_missing_external_input_are_blocked(tmp_path: Path) -> None:
    plan = resolve([Step(name="d", root=str(tmp_path))])
    kinds = {step.task.family(): step.kind for step in plan.steps if step.kind == MISSING}
    assert kinds == {"Raw": MISSING}
    blocked = [step.task.name for step in plan.steps if step.blocked_by is not None]
    assert sorted(blocked) == ["a", "b", "c", "d"]
    assert plan.counts() == {"run": 0, "blocked": 4, "missing": 1}
    assert plan.exit_code == 3
    assert any(line.startswith("blocked ") and "raw-a missing" in line
               for line in plan.describe())


def test_plan_exit_code_is_0_when_complete_and_1_with_work(built: Path) -> None:
    assert resolve([Step(name="d", root=str(built))]).exit_code == 0
    (built / "b").unlink()
    (built / "d").unlink()
    plan = resolve([Step(name="d", root=str(built))])
    assert plan.exit_code == 1
    assert plan.counts() == {"run": 2, "blocked": 0, "missing": 0}


def test_complete_many_checks_each_task(built: Path) -> None:
    (built / "c").unlink()
    tasks = [Step(name=n, root=str(built)) for n in ("a", "c", "d")]
    assert complete_many(tasks) == [True, False, True]


def test_bd_build_takes_the_forcing_options_of_the_command_line(built: Path) -> None:
    root = str(built)
    result = bd.build(Step(name="d", root=root), force_from=[f"Step(name=b, root={root})"])
    assert sorted(r.task_id for r in result.by_status("built")) == [
        f"Step(name=b, root={root})", f"Step(name=d, root={root})"]
    assert (built / "b").read_text() == "rebuilt" and (built / "c").read_text() == "c"
    result = bd.build(Step(name="d", root=root), force_upstream=True)
    assert len(result.by_status("built")) == 4  # a, b, c, d; never the external input
    assert (built / "raw-a").read_text() == "raw-a"
