"""A step's lifecycle with a fake lock provider, a fake executor and a fake clock.

Lease loss, retry delays, waits for resources and for tasks held elsewhere, in
milliseconds; the end-to-end tests (test_lock_e2e.py, test_production.py) run the same
paths through real processes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import batchdeps as bd
from batchdeps.errors import ExitCode, LeaseLostError
from batchdeps.locks.base import Lease, LockProvider
from batchdeps.report.events import TaskRetrying, TaskStarted, TaskWaiting
from batchdeps.report.result import Status
from batchdeps.resolver import Step, resolve
from batchdeps.run.attempt import LOCK_POLL, MAX_LEASES_LOST, RESOURCE_POLL, Phase, RunOptions
from batchdeps.run.executors import Executor, Outcome
from batchdeps.run.runner import Runner
from batchdeps.targets import Staging

OTHER = "process 99 on elsewhere"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeLocks:
    """Leases in a dict: `other` holds what another run holds; `lost()` takes ours over."""

    def __init__(self) -> None:
        self.ours: dict[str, Lease] = {}
        self.other: set[str] = set()
        self.slots: dict[str, int] = {}
        self.granted: list[str] = []
        self.checks = 0
        self.ahead: dict[str, Lease | None] = {}  # answers to acquire_ahead, not picked up

    def start(self) -> None:
        pass

    def acquire_ahead(self, keys: list[str]) -> None:
        # Taken now, in one batch, as the lock server client's acquirer thread would.
        self.ahead.update(zip(keys, self.try_acquire_many(keys)))

    def try_acquire(self, key: str) -> Lease | None:
        if key in self.ahead:
            return self.ahead.pop(key)
        if key in self.other or key in self.ours:
            return None
        lease = self.ours[key] = Lease(key, fencing_token=len(self.granted) + 1)
        self.granted.append(key)
        return lease

    def try_acquire_many(self, keys: list[str]) -> list[Lease | None]:
        return [self.try_acquire(key) for key in keys]

    def try_acquire_resource(self, name: str, slots: int) -> Lease | None:
        if self.slots.get(name, 0) >= slots:
            return None
        self.slots[name] = self.slots.get(name, 0) + 1
        return Lease(f"resource:{name}", handle=name)

    def holder(self, key: str) -> str:
        return OTHER if key in self.other else ""

    def check(self, lease: Lease) -> None:
        self.checks += 1
        if lease.lost or self.ours.get(lease.key) is not lease:
            raise LeaseLostError(f"lease on {lease.key} lost")

    def release(self, lease: Lease) -> None:
        if lease.handle is not None:
            self.slots[lease.handle] -= 1
        elif self.ours.get(lease.key) is lease:
            del self.ours[lease.key]

    def close(self) -> None:
        pass

    def take_over(self, key: str) -> None:
        """Another run gets the lease (ours expired): ours is lost."""
        lease = self.ours.pop(key, None)
        if lease is not None:
            lease.lost = True
            lease.lost_reason = "taken over"
        self.other.add(key)


Work = Callable[[Step, int], "tuple[float, bool]"]


class FakeExecutor:
    """Attempts end after the fake seconds `work(step, attempt)` says; `wait` moves the
    clock instead of sleeping. `work` may write outputs and move leases, as a run would."""

    inline = False

    def __init__(self, clock: Clock, work: Work, slots: int = 1,
                 at: dict[float, Callable[[], None]] | None = None) -> None:
        self.clock = clock
        self.work = work
        self.slots = slots
        self.at = dict(at or {})  # fake time -> something another run does then
        self.running: dict[int, float] = {}
        self.pending: list[tuple[float, Outcome]] = []
        self.started: list[tuple[float, str, int]] = []
        self.peak = 0

    def start(self, steps: list[Step]) -> None:
        pass

    def free_slots(self) -> int:
        return self.slots - len(self.running)

    def prefetch_limit(self) -> int:
        return self.free_slots()

    def submit(self, step: Step, attempt: int, log_path: str | None = None,
               timeout: float | None = None) -> None:
        self.started.append((self.clock.now, step.task_id, attempt))
        self.running[step.index] = self.clock.now
        self.peak = max(self.peak, len(self.running))
        duration, ok = self.work(step, attempt)
        outcome = Outcome(step.index, attempt, ok, error="" if ok else "RuntimeError: boom",
                          staged=Staging(), duration=duration)
        self.pending.append((self.clock.now + duration, outcome))

    def wait(self, timeout: float) -> list[Outcome]:
        until = self.clock.now + timeout
        due = min([when for when, _ in self.pending] + [until])
        for when in sorted(self.at):
            if when <= due:
                self.clock.now = max(self.clock.now, when)
                self.at.pop(when)()
        self.clock.now = max(self.clock.now, due)
        done = [o for when, o in self.pending if when <= self.clock.now]
        self.pending = [(w, o) for w, o in self.pending if w > self.clock.now]
        for outcome in done:
            self.running.pop(outcome.index, None)
        return done

    def terminate(self, grace: float) -> None:
        self.running.clear()

    def kill_all(self) -> None:
        pass

    def close(self) -> None:
        pass


class Out(bd.Task):
    """A task with one output file and options set per test through subclasses."""

    path = bd.Parameter()

    def output(self):
        return bd.FileTarget(self.path)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_event(self, event: Any) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def writes(ok_from_attempt: int = 1, duration: float = 1.0) -> Work:
    """run() writes the output directly (no staging) and succeeds from the given attempt."""
    def work(step: Step, attempt: int) -> tuple[float, bool]:
        if attempt >= ok_from_attempt:
            Path(step.task.path).write_text("built")
        return duration, attempt >= ok_from_attempt
    return work


def run(tasks: list[bd.Task], locks: FakeLocks, executor: FakeExecutor, clock: Clock,
        **options: Any) -> tuple[Any, Recorder]:
    fake_locks: LockProvider = locks
    fake_executor: Executor = executor
    recorder = Recorder()
    runner = Runner(resolve(tasks), fake_locks, fake_executor, [recorder],
                    RunOptions(**options), clock=clock, sleep_rand=lambda: 1.0)
    return runner.run(), recorder


def test_retries_wait_the_growing_retry_delay_on_the_injected_clock(tmp_path: Path) -> None:
    class Retried(Out):
        retries = 3
        retry_delay = 10.0
        retry_backoff = 3.0

    clock, locks = Clock(), FakeLocks()
    executor = FakeExecutor(clock, writes(ok_from_attempt=3, duration=1.0))
    result, events = run([Retried(path=str(tmp_path / "r"))], locks, executor, clock)
    assert result.exit_code == ExitCode.OK
    assert [e.delay for e in events.of(TaskRetrying)] == [10.0, 30.0]
    assert [when for when, _, _ in executor.started] == [0.0, 11.0, 42.0]
    assert locks.granted == ["Retried(path=%s)" % (tmp_path / "r")]  # one lease throughout
    assert locks.checks == 3  # confirmed before each retry, and at the commit


def test_a_lease_lost_during_the_attempt_is_not_committed_and_the_new_holders_work_counts(
        tmp_path: Path) -> None:
    path = tmp_path / "x"
    task = Out(path=str(path))
    clock, locks = Clock(), FakeLocks()

    def work(step: Step, attempt: int) -> tuple[float, bool]:
        locks.take_over(step.task_id)  # our lease expires while run() works
        return 5.0, True  # ... and run() returns fine, without writing (staged, discarded)

    def other_finishes() -> None:
        path.write_text("by the other run")
        locks.other.discard(task.task_id)

    executor = FakeExecutor(clock, work, at={7.0: other_finishes})
    result, events = run([task], locks, executor, clock)
    only = result.tasks[task.task_id]
    assert only.status == Status.BUILT_ELSEWHERE, only
    assert len(executor.started) == 1  # run() was not started again
    assert path.read_text() == "by the other run"
    waiting = events.of(TaskWaiting)
    assert [w.holder for w in waiting] == [OTHER]


def test_a_lease_lost_during_a_retry_delay_is_noticed_before_the_next_attempt(
        tmp_path: Path) -> None:
    class Retried(Out):
        retries = 1
        retry_delay = 60.0

    path = tmp_path / "y"
    task = Retried(path=str(path))
    clock, locks = Clock(), FakeLocks()
    executor = FakeExecutor(clock, writes(ok_from_attempt=2), at={
        30.0: lambda: locks.take_over(task.task_id),  # paused past the lease: taken over
        90.0: lambda: (path.write_text("theirs"), locks.other.discard(task.task_id)),
    })
    result, _ = run([task], locks, executor, clock)
    assert result.tasks[task.task_id].status == Status.BUILT_ELSEWHERE
    assert len(executor.started) == 1 and path.read_text() == "theirs"


def test_a_task_that_keeps_losing_its_lease_fails_after_the_limit(tmp_path: Path) -> None:
    class NeverDone(Out):
        def complete(self):
            return False  # so the re-check after each new lease never ends it

    task = NeverDone(path=str(tmp_path / "z"))
    clock, locks = Clock(), FakeLocks()

    def work(step: Step, attempt: int) -> tuple[float, bool]:
        Path(step.task.path).write_text("ours")
        locks.take_over(step.task_id)
        locks.other.discard(step.task_id)  # ... and the other run gives up at once
        return 1.0, True

    executor = FakeExecutor(clock, work)
    result, _ = run([task], locks, executor, clock)
    only = result.tasks[task.task_id]
    assert only.status == Status.FAILED and "lost" in only.error
    assert len(executor.started) == MAX_LEASES_LOST + 1


def test_a_task_waits_for_resource_slots_polling_with_backoff(tmp_path: Path) -> None:
    class Pooled(Out):
        resources = {"db": 1}  # noqa: RUF012 - the task option, as users write it

    clock, locks = Clock(), FakeLocks()
    executor = FakeExecutor(clock, writes(duration=1.0), slots=2)
    tasks = [Pooled(path=str(tmp_path / f"p{n}")) for n in range(2)]
    result, _ = run(tasks, locks, executor, clock, resources={"db": 1})
    assert result.exit_code == ExitCode.OK
    assert executor.peak == 1  # the pool of one kept them apart despite two workers
    polls = [RESOURCE_POLL.delay(n) for n in range(1, 20)]
    waited, n = 0.0, 0
    while waited < 1.0:  # the second starts at the first poll after the first ended
        waited += polls[n]
        n += 1
    assert executor.started[1][0] == pytest.approx(waited)
    assert locks.slots == {"db": 0}


def test_a_wait_for_a_task_held_elsewhere_runs_out_at_the_wait_timeout(tmp_path: Path) -> None:
    task = Out(path=str(tmp_path / "held"))
    clock, locks = Clock(), FakeLocks()
    locks.other.add(task.task_id)
    executor = FakeExecutor(clock, writes())
    result, events = run([task], locks, executor, clock, wait_timeout=5.0)
    only = result.tasks[task.task_id]
    assert result.exit_code == ExitCode.LOCK_WAIT_TIMEOUT
    assert only.status == Status.LOCK_TIMEOUT and only.holder == OTHER
    assert clock.now == pytest.approx(5.0)
    assert executor.started == [] and len(events.of(TaskWaiting)) == 1


def test_a_waiting_run_sees_the_outputs_appear_without_the_lease(tmp_path: Path) -> None:
    path = tmp_path / "slow"
    task = Out(path=str(path))
    clock, locks = Clock(), FakeLocks()
    locks.other.add(task.task_id)  # held elsewhere, and never given back
    executor = FakeExecutor(clock, writes(), at={20.0: lambda: path.write_text("theirs")})
    result, _ = run([task], locks, executor, clock)
    only = result.tasks[task.task_id]
    assert only.status == Status.BUILT_ELSEWHERE and "seen while waiting" in only.reason
    assert locks.granted == [] and executor.started == []
    assert 20.0 <= clock.now <= 25.0  # within one re-check interval (capped at 5 s)


def test_lock_polls_follow_the_backoff_up_to_the_cap(tmp_path: Path) -> None:
    task = Out(path=str(tmp_path / "w"))
    clock, locks = Clock(), FakeLocks()
    locks.other.add(task.task_id)
    tried: list[float] = []
    acquire = locks.try_acquire

    def counting(key: str) -> Lease | None:
        tried.append(clock.now)
        return acquire(key)

    locks.try_acquire = counting  # type: ignore[method-assign]
    executor = FakeExecutor(clock, writes(),
                            at={10.0: lambda: locks.other.discard(task.task_id)})
    result, _ = run([task], locks, executor, clock, lock_poll_max=1.0)
    assert result.tasks[task.task_id].status == Status.BUILT
    gaps = [b - a for a, b in itertools.pairwise(tried)]
    expected = [min(1.0, LOCK_POLL.delay(n)) for n in range(1, len(gaps) + 1)]
    assert gaps == pytest.approx(expected) and gaps[-1] == pytest.approx(1.0)


class Chained(Out):
    upstream = bd.Parameter(default="")

    def requires(self):
        return Chained(path=self.upstream) if self.upstream else None


def test_every_step_ends_in_phase_done_with_every_lease_given_back(tmp_path: Path) -> None:
    clock, locks = Clock(), FakeLocks()
    bad = str(tmp_path / "bad")

    def work(step: Step, attempt: int) -> tuple[float, bool]:
        if step.task.path == bad:
            return 1.0, False
        Path(step.task.path).write_text("ok")
        return 1.0, True

    executor = FakeExecutor(clock, work)
    tasks = [Out(path=str(tmp_path / f"d{n}")) for n in range(3)]
    tasks.append(Chained(path=str(tmp_path / "after"), upstream=bad))  # upstream fails
    recorder = Recorder()
    runner = Runner(resolve(tasks), locks, executor, [recorder], RunOptions(), clock=clock)
    result = runner.run()
    assert {run.phase for run in runner.lifecycle.runs} == {Phase.DONE}
    assert len(recorder.of(TaskStarted)) == 4 and locks.ours == {}
    assert result.tasks[tasks[-1].task_id].status == Status.UPSTREAM_FAILED


def test_a_lease_taken_ahead_and_lost_before_its_turn_is_not_used(tmp_path: Path) -> None:
    clock, locks = Clock(), FakeLocks()
    first, second = (Out(path=str(tmp_path / name)) for name in ("first", "second"))
    path = Path(second.path)

    def work(step: Step, attempt: int) -> tuple[float, bool]:
        Path(step.task.path).write_text("ours")
        if step.task == first:  # meanwhile the lease taken ahead for `second` runs out
            locks.take_over(second.task_id)
        return 1.0, True

    def other_finishes() -> None:
        path.write_text("theirs")
        locks.other.discard(second.task_id)

    executor = FakeExecutor(clock, work, slots=2, at={3.0: other_finishes})
    executor.free_slots = lambda: 1 if len(executor.running) < 1 else 0  # type: ignore[method-assign]
    executor.prefetch_limit = lambda: 2  # type: ignore[method-assign]
    result, _ = run([first, second], locks, executor, clock)
    assert result.tasks[second.task_id].status == Status.BUILT_ELSEWHERE
    assert [task_id for _, task_id, _ in executor.started] == [first.task_id]
    assert path.read_text() == "theirs"


def test_once_another_run_is_seen_outputs_are_looked_at_before_taking_a_lease(
        tmp_path: Path) -> None:
    class BuiltMeanwhile(Out):
        asked = 0

        def complete(self):  # missing when planned, there when its turn comes
            type(self).asked += 1
            return type(self).asked > 1

    held, later = Out(path=str(tmp_path / "held")), BuiltMeanwhile(path=str(tmp_path / "b"))
    clock, locks = Clock(), FakeLocks()
    locks.other.add(held.task_id)  # the first step meets another run
    executor = FakeExecutor(clock, writes())
    result, _ = run([held, later], locks, executor, clock, wait_timeout=1.0)
    only = result.tasks[later.task_id]
    assert only.status == Status.BUILT_ELSEWHERE and "before taking its lock" in only.reason
    assert later.task_id not in locks.granted and executor.started == []


def test_lock_polls_due_together_go_in_one_request_and_answer_as_lone_polls(
        tmp_path: Path) -> None:
    """Three tasks held elsewhere are polled together (one acquire-many per round, no
    single acquire after the first refusals), on the same backoff as a lone poll, and end
    as a lone task's wait ends: built once the other run gives them back."""

    def waits(count: int) -> tuple[Any, list[tuple[float, str, int]]]:
        tasks = [Out(path=str(tmp_path / f"n{count}-{i}")) for i in range(count)]
        clock, locks = Clock(), FakeLocks()
        locks.other.update(task.task_id for task in tasks)
        calls: list[tuple[float, str, int]] = []
        single = locks.try_acquire

        def one(key: str) -> Lease | None:
            if key not in locks.ahead:  # an answer asked for ahead is no request
                calls.append((clock.now, "single", 1))
            return single(key)

        def batch(keys: list[str]) -> list[Lease | None]:
            calls.append((clock.now, "many", len(keys)))
            return [single(key) for key in keys]

        locks.try_acquire = one  # type: ignore[method-assign]
        locks.try_acquire_many = batch  # type: ignore[method-assign]
        executor = FakeExecutor(clock, writes(), slots=count, at={
            3.0: lambda: locks.other.difference_update(t.task_id for t in tasks)})
        result, _ = run(tasks, locks, executor, clock, lock_poll_max=1.0)
        assert result.exit_code == 0
        assert {r.status for r in result.tasks.values()} == {Status.BUILT}
        return result, calls

    _, alone = waits(1)
    _, together = waits(3)
    polls_alone = [when for when, _, _ in alone[1:]]  # after the first refusal
    first = [call for call in together if call[0] == 0.0]
    later = [call for call in together if call[0] > 0.0]
    assert all(kind == "many" and size == 3 for _, kind, size in later), together
    assert [when for when, _, _ in later] == pytest.approx(polls_alone)
    assert sum(size for _, _, size in first) == 3  # each task asked for once at the start


def _executor_asking_ahead(clock: Clock, work: Any) -> FakeExecutor:
    """Two slots whose runner asks ahead for its free slots plus one round per slot."""
    executor = FakeExecutor(clock, work, slots=2)
    executor.prefetch_limit = (  # type: ignore[method-assign]
        lambda: executor.free_slots() + executor.slots)
    return executor


def test_leases_asked_for_ahead_cover_only_the_next_rounds(tmp_path: Path) -> None:
    """With a forked executor's limit (free slots and one round per worker), a run holds
    at most twice that many leases ahead besides the running ones, asked for in batches:
    it never sits on leases of work it will not start soon."""
    tasks = [Out(path=str(tmp_path / f"t{n}")) for n in range(120)]
    clock, locks = Clock(), FakeLocks()
    held_peak = asked = 0
    take_ahead = locks.acquire_ahead

    def ahead(keys: list[str]) -> None:
        nonlocal held_peak, asked
        asked += 1
        take_ahead(keys)
        held_peak = max(held_peak, len(locks.ours))

    locks.acquire_ahead = ahead  # type: ignore[method-assign]
    executor = _executor_asking_ahead(clock, writes())
    result, _ = run(tasks, locks, executor, clock)
    assert result.exit_code == ExitCode.OK and len(locks.granted) == 120
    assert locks.granted == [task.task_id for task in tasks]  # in the plan's order
    assert 2 <= held_peak <= 2 * (2 + 2) + 2, held_peak
    assert asked <= 120 / 2, asked  # in batches of at least two


def test_leases_asked_for_ahead_pass_over_steps_another_run_built(tmp_path: Path) -> None:
    """Once another run is met (the first task is held elsewhere), the outputs of the next
    steps are looked at before their leases are asked for ahead: the ones built meanwhile
    are closed as built elsewhere without a lease."""
    tasks = [Out(path=str(tmp_path / f"p{n}")) for n in range(12)]
    clock, locks = Clock(), FakeLocks()
    locks.other.add(tasks[0].task_id)
    asked: list[str] = []
    take_ahead = locks.acquire_ahead

    def ahead(keys: list[str]) -> None:
        asked.extend(keys)
        take_ahead(keys)

    def work(step: Step, attempt: int) -> tuple[float, bool]:
        for task in tasks[8:]:  # meanwhile the other run builds the last four
            Path(task.path).write_text("theirs")
        Path(step.task.path).write_text("ours")
        return 1.0, True

    locks.acquire_ahead = ahead  # type: ignore[method-assign]
    executor = _executor_asking_ahead(clock, work)
    result, _ = run(tasks, locks, executor, clock, wait_timeout=1.0)
    assert set(asked) == {task.task_id for task in tasks[:8]}
    for task in tasks[8:]:
        only = result.tasks[task.task_id]
        assert only.status == Status.BUILT_ELSEWHERE and "before taking its lock" in only.reason
        assert Path(task.path).read_text() == "theirs"
    assert {result.tasks[t.task_id].status for t in tasks[1:8]} == {Status.BUILT}


def test_leases_are_asked_for_further_ahead_while_their_answers_come_late(
        tmp_path: Path) -> None:
    """A step that has to wait for the answer asked for ahead (here each takes 10 ms of
    the fake clock) doubles the rounds asked for ahead, up to four."""
    tasks = [Out(path=str(tmp_path / f"t{n}")) for n in range(120)]
    clock, locks = Clock(), FakeLocks()
    held_peak = 0
    take_ahead, pick_up = locks.acquire_ahead, locks.try_acquire

    def ahead(keys: list[str]) -> None:
        nonlocal held_peak
        take_ahead(keys)
        held_peak = max(held_peak, len(locks.ours))

    def late(key: str) -> Lease | None:
        if key in locks.ahead:
            clock.now += 0.01  # the answer was still on its way
        return pick_up(key)

    locks.acquire_ahead = ahead  # type: ignore[method-assign]
    locks.try_acquire = late  # type: ignore[method-assign]
    executor = _executor_asking_ahead(clock, writes())
    result, _ = run(tasks, locks, executor, clock)
    assert result.exit_code == ExitCode.OK and len(locks.granted) == 120
    assert 2 * (2 + 2) + 2 < held_peak <= 4 * (2 + 2) + 2, held_peak
