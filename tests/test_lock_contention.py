"""Many runs on one plan: a run that meets another holder turns its queue to a random place
and looks at outputs before taking leases, so it neither trails the others task after task
nor takes a lease only to find the task built (a durable grant each on the lock server).

Fakes for the lock provider, executor and clock (milliseconds); bench/lock_bench.py
--runners measures the same through real runs and a real server.
"""

from __future__ import annotations

from pathlib import Path

import batchdeps as bd
from batchdeps.locks.base import Lease, LockProvider
from batchdeps.report.result import Status
from batchdeps.resolver import Step, resolve
from batchdeps.run.attempt import RunOptions
from batchdeps.run.executors import Executor, Outcome
from batchdeps.run.runner import Runner
from batchdeps.targets import Staging


class Out(bd.Task):
    path = bd.Parameter()

    def output(self):
        return bd.FileTarget(self.path)


class Locks:
    """Leases in a set; `other` is held by another run for good."""

    def __init__(self, other: set[str]) -> None:
        self.other = other
        self.ours: set[str] = set()
        self.asked: list[str] = []

    def start(self) -> None:
        pass

    def try_acquire(self, key: str) -> Lease | None:
        self.asked.append(key)
        if key in self.other or key in self.ours:
            return None
        self.ours.add(key)
        return Lease(key, fencing_token=len(self.asked))

    def try_acquire_many(self, keys: list[str]) -> list[Lease | None]:
        return [self.try_acquire(key) for key in keys]

    def acquire_ahead(self, keys: list[str]) -> None:
        pass  # asked for when each starts

    def try_acquire_resource(self, name: str, slots: int) -> Lease | None:
        return Lease(name)

    def holder(self, key: str) -> str:
        return "another run" if key in self.other else ""

    def check(self, lease: Lease) -> None:
        pass

    def release(self, lease: Lease) -> None:
        self.ours.discard(lease.key)

    def close(self) -> None:
        pass


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class OneAtATime:
    """Runs one attempt at a time, writing its output; records the order of starts."""

    inline = False

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.started: list[str] = []
        self.pending: list[Outcome] = []
        self.running: dict[int, float] = {}

    def start(self, steps: list[Step]) -> None:
        pass

    def free_slots(self) -> int:
        return 0 if self.pending else 1

    def prefetch_limit(self) -> int:
        return self.free_slots()

    def submit(self, step: Step, attempt: int, log_path: str | None = None,
               timeout: float | None = None) -> None:
        self.started.append(step.task_id)
        Path(step.task.path).write_text("built")
        self.pending.append(Outcome(step.index, attempt, True, staged=Staging(), duration=1.0))
        self.running[step.index] = self.clock.now

    def wait(self, timeout: float) -> list[Outcome]:
        self.clock.now += max(timeout, 0.001)
        done, self.pending = self.pending, []
        self.running.clear()
        return done

    def terminate(self, grace: float) -> None:
        pass

    def kill_all(self) -> None:
        pass

    def close(self) -> None:
        pass


def _run(tasks: list[Out], locks: Locks, rand: float = 0.5) -> tuple[dict, OneAtATime]:
    clock = Clock()
    executor = OneAtATime(clock)
    provider: LockProvider = locks
    fake: Executor = executor
    runner = Runner(resolve(tasks), provider, fake, [], RunOptions(wait_timeout=5.0),
                    clock=clock, sleep_rand=lambda: rand)
    return runner.run().tasks, executor


def test_a_run_alone_keeps_the_plan_order(tmp_path: Path) -> None:
    tasks = [Out(path=str(tmp_path / f"{n}")) for n in range(10)]
    _, executor = _run(tasks, Locks(set()))
    assert executor.started == [t.task_id for t in tasks]


def test_a_run_that_meets_another_holder_goes_on_from_a_random_place(tmp_path: Path) -> None:
    tasks = [Out(path=str(tmp_path / f"{n}")) for n in range(11)]
    held = tasks[0].task_id
    results, executor = _run(tasks, Locks({held}), rand=0.5)
    # Refused the first task, the queue of the ten others turns by half: 6..10, then 1..5.
    assert executor.started == [t.task_id for t in tasks[6:] + tasks[1:6]]
    assert results[held].status == Status.LOCK_TIMEOUT
    assert all(results[t.task_id].status == Status.BUILT for t in tasks[1:])


def test_outputs_built_by_another_run_are_seen_before_taking_the_lease(tmp_path: Path) -> None:
    tasks = [Out(path=str(tmp_path / f"{n}")) for n in range(6)]
    plan_tasks = list(tasks)
    locks = Locks({tasks[0].task_id})
    clock = Clock()
    executor = OneAtATime(clock)
    plan = resolve(plan_tasks)
    for task in tasks[3:]:  # built by the other run after this run made its plan
        Path(task.path).write_text("by another run")
    provider: LockProvider = locks
    fake: Executor = executor
    results = Runner(plan, provider, fake, [], RunOptions(wait_timeout=5.0), clock=clock,
                     sleep_rand=lambda: 0.0).run().tasks
    for task in tasks[3:]:
        assert results[task.task_id].status == Status.BUILT_ELSEWHERE
        assert task.task_id not in locks.asked  # no lease taken just to find it built
    assert executor.started == [t.task_id for t in tasks[1:3]]
