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
