"""One step's lifecycle in a run: lease, resources, re-check, execute, fence, commit/discard.

Each step of the plan has a `StepRun` whose `phase` says where it stands:

    AHEAD (lease asked for ahead, answer picked up when the step starts) ──> LEASE
    LEASE ──granted──> RECHECK ──still missing──> RESOURCES ──slots──> EXECUTE
      │                   └─ complete: closed (built elsewhere / complete)      │
      └─refused─> WAITING ─(poll; outputs re-checked)─> RECHECK                 │
                    └─ outputs appeared: closed (built elsewhere)               v
    CONFIRM (a lease kept across a retry delay or a wait for slots) ──> RESOURCES
    EXECUTE ──run() returned──> FENCE (outputs there? lease still ours?) ──> COMMIT ──> built
       │        └──failed──────> DISCARD ──> retry (CONFIRM) / lease lost (LEASE) / failed
       └──run() yielded tasks not complete──> DEPENDS (lease kept, slots given back)
                 └─ the yielded tasks closed well ──> CONFIRM ──> RESOURCES ──> EXECUTE
                    (the same attempt goes on: resumed at the yield, or run() from the top)

`Lifecycle` makes the transitions with the collaborators it is given (a `LockProvider`,
an `Executor`, a clock) and tells its `Host` (the runner's loop) when a step waits, is
submitted or is closed. Losing a lease is handled in one place, `Lifecycle.lose_lease`.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from .. import logs
from ..backoff import Backoff
from ..errors import BatchdepsError, LeaseLostError
from ..locks.base import Lease, LockProvider
from ..paths import shown_all
from ..report.events import AttemptFailed, Event, TaskRetrying, TaskStarted, TaskWaiting
from ..report.result import Status
from ..resolver import MISSING, Plan, Step
from ..targets import Leftovers, Staging, check_exists
from ..task import Task, WrapperTask
from .executors import Executor, Outcome

if TYPE_CHECKING:
    from ..dynamic import PausedRun

log = logs.get()

#: Built-in task option defaults; `[batchdeps]` in config and class attributes override.
OPTION_DEFAULTS: dict[str, Any] = {
    "retries": 0,
    "retry_delay": 1.0,
    "retry_backoff": 2.0,
    "max_retry_delay": 300.0,
    "timeout": None,
}

#: A task whose lease is lost this often in one run fails instead of waiting again.
MAX_LEASES_LOST = 3

#: Once other runs are seen, `prefetch` looks at the outputs of at most this many ready
#: steps per lease it asks for (the ones found built are closed without a lease).
PREFETCH_LOOKS = 4

#: Leases asked for ahead: `prefetch` asks for up to this many rounds (of free slots and
#: one per worker) while steps find their answers still on the way (waiting this long).
MAX_ROUNDS_AHEAD = 4
LATE_ANSWER = 0.002

#: Polling for a task held elsewhere, and for a free resource slot (capped by
#: `lock_poll_max`); no jitter: the holder's release is not a crowd.
LOCK_POLL = Backoff(first=0.03, factor=1.5, jitter=0.0)
RESOURCE_POLL = Backoff(first=0.015, factor=1.5, jitter=0.0)
#: Looking at a waited-for task's outputs: another run may have built it while its lease
#: outlives it (a release that did not reach a restarted lock server waits for the TTL).
RECHECK_POLL = Backoff(first=0.2, factor=2.0, cap=5.0, jitter=0.0)


class Phase(Enum):
    """Where a step stands in its lifecycle (see the module docstring)."""

    AHEAD = "ahead"            # its lease is on its way (asked for ahead): pick it up
    LEASE = "lease"            # take the task's lease
    WAITING = "waiting"        # held elsewhere: poll for the lease, re-check outputs meanwhile
    RECHECK = "re-check"       # lease just taken: did another run build it meanwhile?
    CONFIRM = "confirm"        # lease kept from before a delay: is it still ours?
    RESOURCES = "resources"    # take the resource slots the task needs
    EXECUTE = "execute"        # an attempt runs in the executor
    FENCE = "fence"            # run() returned: outputs there and lease still ours?
    COMMIT = "commit"          # the staged writes become visible
    DISCARD = "discard"        # the staged writes are thrown away
    DEPENDS = "depends"        # run() yielded tasks: waits for them, its lease kept
    DONE = "done"              # closed with a final status


@dataclass(slots=True)
class StepRun:
    """What one run knows about one step between its phases."""

    phase: Phase = Phase.LEASE
    attempts: int = 0
    lease: Lease | None = None
    #: resource slots held; a list of its own only while some are (most tasks take none)
    resource_leases: list[Lease] | tuple[()] = ()
    contended: bool = False  # another holder had the task at some point in this run
    leases_lost: int = 0
    waiting_since: float | None = None
    polls: int = 0  # lock or resource polls since the last wait began
    rechecks: int = 0
    next_recheck: float = 0.0
    duration: float = 0.0
    log_path: str | None = None  # the current attempt's log file (made only if needed)
    #: whether the current attempt's log file was written, as its captures said (None:
    #: one could not say, e.g. a killed worker: the file is looked at)
    log_written: bool | None = False
    worker_pid: int = 0  # the process that ran the last attempt (history)
    #: DEPENDS: the run() stopped at its yield in this process (None: it runs again from
    #: the top); handed to the executor when the attempt goes on
    paused: PausedRun | None = None
    continuing: bool = False  # the next submit goes on with the current attempt
    yielded: set[Task] | None = None  # every task run() yielded in this run
    inputs: dict[str, Any] | None = None  # input identities for the build record
    worker: str = ""  # where it ran when not on this machine (a Dask worker's address)


class _ClosedRun(StepRun):
    """The StepRun of a step that has its result: shared, so it cannot be changed."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a closed step's StepRun cannot change ({name})")


#: The StepRun of every step that has its result (one shared object).
CLOSED = StepRun(phase=Phase.DONE)
CLOSED.__class__ = _ClosedRun


@dataclass
class RunOptions:
    """Settings of one run that are not collaborators."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    workers: int = 1  # attempts at a time (for listeners; the executor enforces it)
    wait_timeout: float | None = None  # None: wait as long as the holder keeps its lock
    resources: dict[str, int] = field(default_factory=dict)
    task_defaults: dict[str, Any] = field(default_factory=dict)
    log_path_for: Callable[[Step, int], str | None] | None = None
    lock_poll_max: float = 1.0
    kill_grace: float = 5.0  # seconds between SIGTERM and SIGKILL of running attempts on stop
    #: raises TaskDefinitionError for task ids the lock provider cannot take (the lock
    #: server's key limits); for the steps a yielding run() adds to the plan
    check_keys: Callable[[Iterable[str]], None] | None = None
    #: commit a build record beside each task's outputs (staleness.py; off by default)
    record_builds: bool = False
    #: seconds to wait for missing external inputs (run/waiting.py); None: do not wait
    wait_for_inputs: float | None = None
    poll: float = 60.0  # the longest delay between two looks at inputs waited for


class Host(Protocol):
    """What the lifecycle asks of the loop that drives it (the runner)."""

    stopping: bool

    def emit(self, event: Event) -> None:
        """Tell every listener."""

    def hears(self, kind: type) -> bool:
        """Whether some listener hears events of type `kind` (else none need be made)."""

    def later(self, step: Step, due: float) -> None:
        """Start `step` again (from its phase) at clock time `due`."""

    def close(self, step: Step, status: Status, *, attempts: int = 0, error: str = "",
              reason: str = "", missing_paths: Sequence[str] | None = None,
              holder: str = "") -> None:
        """`step` reached its final status (its phase becomes DONE); release what depends
        on it."""

    def depend(self, step: Step, tasks: list[Task]) -> None:
        """`step`'s run() yielded `tasks` (not complete): run them, then `step` again."""


class Lifecycle:
    """The transitions of every step of one plan, with the run's collaborators."""

    def __init__(self, plan: Plan, locks: LockProvider, executor: Executor, host: Host,
                 options: RunOptions, clock: Callable[[], float],
                 rand: Callable[[], float] = random.random) -> None:
        self.plan = plan
        self.locks = locks
        self.executor = executor
        self.host = host
        self.options = options
        self.clock = clock
        self.rand = rand
        self.leftovers = Leftovers()  # this run's look at temporary folders
        #: times this run met other runs' work on its plan: a lease another holder refused
        #: us, or a task planned as missing found complete once locked
        self.refusals = 0
        self.ahead = 0  # ready steps in phase AHEAD (their leases asked for, not picked up)
        #: how many rounds of leases `prefetch` asks for ahead: doubled (up to
        #: MAX_ROUNDS_AHEAD) each time a step had to wait for its answer to come back
        self.rounds_ahead = 2
        #: by step index: None until the step begins, CLOSED once it has its result (a
        #: step keeps its StepRun only while it is under way)
        self.runs: list[StepRun | None] = [None] * len(plan.steps)
        self._announce_starts = host.hears(TaskStarted)  # made only when someone hears it

    def run_of(self, step: Step) -> StepRun:
        """`step`'s StepRun, made when the step begins."""
        run = self.runs[step.index]
        if run is None:
            run = self.runs[step.index] = StepRun()
        return run

    def done(self, step: Step) -> StepRun | None:
        """`step` has its result: its StepRun goes (the last look at it is returned)."""
        run = self.runs[step.index]
        self.runs[step.index] = CLOSED
        return None if run is CLOSED else run

    def option(self, step: Step, name: str) -> Any:
        """A task option: the class attribute, else `[batchdeps]`, else the built-in."""
        value = getattr(type(step.task), name, None)
        if value is None:
            value = self.options.task_defaults.get(name, OPTION_DEFAULTS[name])
        return value

    # -- before an attempt -----------------------------------------------------------------
    def prefetch(self, ready: Any, limit: int) -> None:
        """Ask for the leases of the next ready steps ahead, without waiting for them.

        Once no more than `limit` steps are ahead, the next ones up to `rounds_ahead *
        limit` are asked for in one batch: their answers have the time the `limit` steps
        before them take to start to come back, and a run never sits on leases of work it
        will not start soon (another machine may take that work meanwhile). Each step
        picks its answer up when it starts. Once other runs are seen working on this plan,
        a step's outputs are looked at first: one that is built is closed without a lease
        (at most PREFETCH_LOOKS looks per lease asked for; the walk stops there).
        """
        if limit < 2 or self.ahead > limit:
            return
        runs = self.runs
        forced = self.plan.forced
        batch: list[Step] = []
        built: list[Step] = []
        wanted = self.rounds_ahead * limit - self.ahead
        looks = PREFETCH_LOOKS * wanted  # outputs looked at, at most, in one go
        for step in ready:
            if len(batch) >= wanted:
                break
            run = runs[step.index]
            if (run is None or run.phase is Phase.LEASE) and step.kind is not MISSING and (
                    not isinstance(step.task, WrapperTask) or step.task in forced):
                if self.refusals and not (run is not None and run.attempts) \
                        and step.task not in forced:
                    if not looks:
                        break  # the rest waits for the next turn, or is looked at as it starts
                    looks -= 1
                    if self._built_now(step):
                        built.append(step)
                        continue
                batch.append(step)
        for step in built:  # closed after the walk (closing readies what is downstream);
            self.host.close(step, Status.BUILT_ELSEWHERE,  # passed over when they come up
                            reason="built by another run (seen before taking its lock)")
        if not batch:
            return
        self.locks.acquire_ahead([step.task.task_id for step in batch])
        for step in batch:
            self.run_of(step).phase = Phase.AHEAD
        self.ahead += len(batch)

    def is_ahead(self, step: Step) -> bool:
        """Whether `step`'s lease was asked for ahead and is not picked up yet."""
        run = self.runs[step.index]
        return run is not None and run.phase is Phase.AHEAD

    def poll(self, due: list[Step]) -> list[Step]:
        """Steps whose wait is over: their lock polls in one round trip; the steps that
        go on to the ready queue.

        Steps waiting for a lease held elsewhere first look at their outputs when that is
        due (built there: closed), then are asked for together (one acquire-many);
        refused again, a step waits on without entering the ready queue. A lone poll and
        whatever else was waiting (a retry, a resource poll) go on to the ready queue as
        they are. Refused polls are due again together (the poll backoff has no jitter),
        so polls stay batched.
        """
        runs = self.runs
        polls = [step for step in due if runs[step.index].phase is Phase.WAITING
                 and runs[step.index].waiting_since is not None]
        if len(polls) < 2:
            return due
        polled = set(polls)
        ready = [step for step in due if step not in polled]
        polls = [step for step in polls if not self._built_while_waiting(step, runs[step.index])]
        if len(polls) == 1:
            return [*ready, *polls]
        for step, lease in zip(polls, self.locks.try_acquire_many(
                [step.task.task_id for step in polls]) if polls else ()):
            run = runs[step.index]
            if lease is None:
                self._wait(step, run)  # checks the wait timeout, then polls again later
            else:
                run.lease = lease
                run.phase = Phase.RECHECK
                ready.append(step)
        return ready

    def start(self, step: Step) -> None:
        """Drive a ready step from its phase until it is submitted, waits, or is closed."""
        run = self.runs[step.index]
        if run is CLOSED:  # closed while it waited in the queue (built elsewhere)
            return
        if run is None or (run.phase is Phase.LEASE and run.attempts == 0
                           and not run.contended):
            if step.kind is MISSING:
                self.host.close(step, Status.MISSING_INPUT, error=step.reason,
                                missing_paths=step.missing_paths)
                return
            if isinstance(step.task, WrapperTask) and step.task not in self.plan.forced:
                self.host.close(step, Status.BUILT)
                return
            if run is None:
                run = self.run_of(step)
        while True:
            phase = run.phase
            if phase is Phase.RESOURCES:
                # (a task with no resources, the usual one, needs no call to say so)
                if not getattr(type(step.task), "resources", None) or \
                        self._take_resources(step, run):
                    self._submit(step, run)
                return
            if phase is Phase.LEASE or phase is Phase.WAITING or phase is Phase.AHEAD:
                if phase is Phase.AHEAD:  # asked for already: picked up whatever it is
                    self.ahead -= 1
                elif phase is Phase.WAITING:
                    if self._built_while_waiting(step, run):
                        return
                elif self.refusals and self._built_before_lease(step, run):
                    return
                asked = self.clock()
                lease = self.locks.try_acquire(step.task.task_id)
                if phase is Phase.AHEAD and self.clock() - asked > LATE_ANSWER and \
                        self.rounds_ahead < MAX_ROUNDS_AHEAD:
                    self.rounds_ahead *= 2  # its answer was still on the way: ask further ahead
                if lease is None:
                    run.phase = Phase.WAITING
                    self._wait(step, run)
                    return
                run.lease = lease
                run.phase = Phase.RECHECK
            elif phase is Phase.RECHECK:
                assert run.lease is not None
                if run.lease.lost:  # taken ahead in a batch, and lost before its turn came
                    log.warning("%s: lease lost before the attempt (%s); waiting for the "
                                "lock again", step.task.task_id, run.lease.lost_reason)
                    self.lose_lease(run)
                    continue
                if self._complete_after_lease(step, run):
                    return
                run.phase = Phase.RESOURCES
            elif phase is Phase.DEPENDS:  # what run() yielded is there: go on
                run.phase = Phase.CONFIRM if run.lease is not None else Phase.LEASE
            elif phase is Phase.CONFIRM:
                # Held across a retry delay or a wait for slots: it may have run out meanwhile
                # (a pause, a server outage), and another worker may run the task now.
                assert run.lease is not None
                try:
                    self.locks.check(run.lease)
                except LeaseLostError as exc:
                    log.warning("%s: lease lost before the next attempt (%s); waiting for the "
                                "lock again", step.task.task_id, run.lease.lost_reason or exc)
                    self.lose_lease(run)
                    continue
                run.phase = Phase.RESOURCES
            else:  # pragma: no cover - EXECUTE, FENCE, COMMIT, DISCARD, DONE never start
                raise RuntimeError(f"{step.task.task_id} started in phase {phase.value}")

    def _wait(self, step: Step, run: StepRun) -> None:
        """Held elsewhere: announce the wait once, give up at the wait timeout, else poll."""
        now = self.clock()
        if run.waiting_since is None:
            run.waiting_since = now
            run.contended = True
            self.refusals += 1
            run.polls = 0
            run.rechecks = 0
            run.next_recheck = now + RECHECK_POLL.delay(1)
            self.host.emit(TaskWaiting(self.options.run_id, step.task.task_id,
                                       self.locks.holder(step.task.task_id)))
        wait_timeout = self.options.wait_timeout
        if wait_timeout is not None and now - run.waiting_since >= wait_timeout:
            holder = self.locks.holder(step.task.task_id) or "another worker"
            self.host.close(step, Status.LOCK_TIMEOUT, holder=holder,
                            error=f"still held by {holder} after waiting {wait_timeout:g} s")
            return
        run.polls += 1
        delay = min(self.options.lock_poll_max, LOCK_POLL.delay(run.polls))
        if wait_timeout is not None:
            delay = min(delay, max(0.0, run.waiting_since + wait_timeout - now))
        self.host.later(step, now + delay)

    def _built_before_lease(self, step: Step, run: StepRun) -> bool:
        """Once other runs are seen working on this plan, look at a step's outputs before
        taking its lease: one of them may have built it since the plan was made, and a
        lease taken only to find that out costs a durable grant on the lock server."""
        if not self.refusals or run.attempts or step.task in self.plan.forced:
            return False
        return self._closed_if_built_elsewhere(step, "seen before taking its lock")

    def _built_while_waiting(self, step: Step, run: StepRun) -> bool:
        """Now and then while waiting, look at the outputs: the holder may have built the
        task already and still hold (or have failed to give back) its lease."""
        now = self.clock()
        if now < run.next_recheck or step.task in self.plan.forced:
            return False
        run.rechecks += 1
        run.next_recheck = now + RECHECK_POLL.delay(run.rechecks + 1)
        return self._closed_if_built_elsewhere(step, "seen while waiting for its lock")

    def _closed_if_built_elsewhere(self, step: Step, seen: str) -> bool:
        """Close `step` as built elsewhere when it is complete now, before this run holds
        its lease."""
        if not self._built_now(step, seen):
            return False
        self.host.close(step, Status.BUILT_ELSEWHERE, reason=f"built by another run ({seen})")
        return True

    def _built_now(self, step: Step, seen: str = "seen before taking its lock") -> bool:
        """Whether `step` is complete now, before this run holds its lease. A complete() of
        the user's that raises is decided after the lease."""
        try:
            return self._complete_now(step)
        except BatchdepsError:
            raise  # a check that cannot decide (storage down) stops the run
        except Exception as exc:  # noqa: BLE001 - the user's complete(): decided after the lease
            log.debug("%s: complete() raised (%s): %s", step.task.task_id, seen, exc)
            return False

    def _complete_after_lease(self, step: Step, run: StepRun) -> bool:
        """With the lease just taken, is the task complete (another run built it)? Closes
        the step when it is, or when its complete() raised."""
        plan = self.plan
        # (the sets are looked in only when not empty: a task hashes by a call of its own)
        if plan.forced and step.task in plan.forced and step.task not in plan.stale \
                and not run.contended:
            return False
        try:
            complete = self._complete_now(step)
        except BatchdepsError:
            raise  # a check that cannot decide (storage down) stops the run
        except Exception as exc:  # noqa: BLE001 - the user's complete() raised: this task fails
            self.release(run)
            message = ("checking completeness after taking the lock failed: "
                       f"{type(exc).__name__}: {exc}").splitlines()[-1]
            self.host.close(step, Status.FAILED, error=message)
            return True
        if not complete:
            return False
        self.release(run)
        if run.contended or step.task in plan.stale:
            self.host.close(step, Status.BUILT_ELSEWHERE, reason="built by another run")
        else:
            self.refusals += 1  # someone built it since the plan was made: look before leasing
            self.host.close(step, Status.COMPLETE, reason="complete when locked")
        return True

    def _complete_now(self, step: Step) -> bool:
        task = step.task
        if type(task).complete is Task.complete:
            complete = bool(step.outputs) and all(check_exists(step.outputs))
        else:
            complete = bool(task.complete())
        if complete and self.plan.stale and task in self.plan.stale:
            from ..staleness import still_stale

            return not still_stale(task, step.outputs, self.plan.rerun_triggers)
        return complete

    def _take_resources(self, step: Step, run: StepRun) -> bool:
        wanted = getattr(type(step.task), "resources", None)
        if not wanted:
            return True
        caps = self.options.resources
        for name, amount in wanted.items():
            cap = caps.get(name)
            if cap is None:
                continue  # a pool with no cap in config is unlimited
            for _ in range(min(int(amount), cap)):
                lease = self.locks.try_acquire_resource(name, cap)
                if lease is None:
                    self.release_resources(run)
                    run.polls += 1
                    delay = min(self.options.lock_poll_max, RESOURCE_POLL.delay(run.polls))
                    if run.lease is not None:
                        run.phase = Phase.CONFIRM  # the wait may outlast the lease
                    self.host.later(step, self.clock() + delay)
                    return False
                if not isinstance(run.resource_leases, list):
                    run.resource_leases = []
                run.resource_leases.append(lease)
        return True

    def _submit(self, step: Step, run: StepRun) -> None:
        run.polls = 0
        run.paused = None  # the executor that paused it resumes it
        if run.continuing:  # after the tasks run() yielded: the same attempt goes on
            run.continuing = False
        else:
            run.attempts += 1
            run.log_written = False
            # After a failed attempt, look again: it may have left some.
            cleaned = step.outputs
            if self.options.record_builds:
                cleaned = self._prepare_record(step, run)
            self.leftovers.clean(cleaned, fresh=run.attempts > 1)
            log_path_for = self.options.log_path_for
            run.log_path = (log_path_for(step, run.attempts) if log_path_for is not None
                            else None)
            if self._announce_starts:
                task = step.task
                self.host.emit(TaskStarted(self.options.run_id, task.task_id, task.family(),
                                           run.attempts, step.reason))
        run.phase = Phase.EXECUTE
        self.executor.submit(step, run.attempts, run.log_path, self.option(step, "timeout"))

    # -- after an attempt ------------------------------------------------------------------
    def finish(self, outcome: Outcome) -> None:
        """An attempt ended: fence and commit, or discard; then built, retry or failed."""
        step = self.plan.steps[outcome.index]
        run = self.runs[step.index]
        if run is None or run is CLOSED:  # pragma: no cover - only a step under way ends
            if outcome.staged is not None:
                outcome.staged.discard()
            return
        run.duration += outcome.duration
        run.worker_pid = outcome.worker_pid
        run.worker = outcome.worker
        if outcome.log_written is None or run.log_written is None:
            run.log_written = None
        elif outcome.log_written:
            run.log_written = True
        error = outcome.error
        if outcome.requested:
            if self.host.stopping:  # it will not go on; the wind-down closes it as not run
                if outcome.paused is not None:
                    outcome.paused.close()
                self.release(run)
                return
            self._depend(step, run, outcome)
            return
        if outcome.ok:
            try:
                run.phase = Phase.FENCE
                self._fence(step, run, outcome.staged)
                run.phase = Phase.COMMIT
                if self.options.record_builds:
                    self._stage_record(step, run, outcome.staged)
                outcome.staged.commit(step.outputs)  # all or nothing (targets/commit.py)
            except BatchdepsError as exc:
                error = str(exc).splitlines()[-1]
            else:
                if type(step.task).on_success is not Task.on_success:  # (the base does nothing)
                    self._hook(step, "on_success")
                self.release(run)
                self.host.close(step, Status.BUILT, attempts=run.attempts)
                return
        else:
            run.phase = Phase.DISCARD
            outcome.staged.discard()
            if outcome.timed_out:
                self.leftovers.clean(step.outputs, fresh=True)
        if not error:
            error = outcome.traceback.strip().rsplit("\n", 1)[-1]
        host = self.host
        exception = outcome.exception if isinstance(outcome.exception, BaseException) else None
        host.emit(AttemptFailed(self.options.run_id, step.task.task_id, step.task.family(),
                                run.attempts, error, run.log_path, outcome.timed_out,
                                outcome.worker_pid, outcome.worker, exception))
        lost = run.lease is not None and run.lease.lost
        if lost and not host.stopping and run.leases_lost < MAX_LEASES_LOST:
            # Not this attempt's fault: wait for the lock like any other contended task,
            # then re-check; if the new holder built it, nothing runs again.
            log.warning("%s: %s; waiting for the lock again", step.task.task_id, error)
            self.lose_lease(run)
            host.later(step, self.clock())
            return
        if not lost and not host.stopping and run.attempts <= int(self.option(step, "retries")):
            delay = Backoff(float(self.option(step, "retry_delay")),
                            float(self.option(step, "retry_backoff")),
                            float(self.option(step, "max_retry_delay"))
                            ).delay(run.attempts, self.rand)
            host.emit(TaskRetrying(self.options.run_id, step.task.task_id, step.task.family(),
                                   run.attempts, delay, error))
            self.release_resources(run)
            run.phase = Phase.CONFIRM if run.lease is not None else Phase.LEASE
            host.later(step, self.clock() + delay)
            return
        self.release(run)
        self._hook(step, "on_failure", RuntimeError(error))
        self.host.close(step, Status.FAILED, attempts=run.attempts, error=error)

    def _depend(self, step: Step, run: StepRun, outcome: Outcome) -> None:
        """run() yielded tasks not complete: keep the lease, give back the slots (the
        yielded tasks may need them), and wait for those tasks."""
        run.phase = Phase.DEPENDS
        run.paused = outcome.paused
        run.continuing = True
        self.release_resources(run)
        log.debug("%s: run() yielded %d task(s) not complete: waiting for them",
                  step.task.task_id, len(outcome.requested))
        self.host.depend(step, outcome.requested)

    def _fence(self, step: Step, run: StepRun, staged: Staging) -> None:
        """Every output there (staged or written directly) and the lease still ours; else
        the staged writes are discarded and the reason raised."""
        unstaged = [t for t in step.outputs if t.url not in staged]
        if unstaged:
            exists = check_exists(unstaged)
            missing = [t.url for t, ok in zip(unstaged, exists) if not ok]
            if missing:
                run.phase = Phase.DISCARD
                staged.discard()
                raise BatchdepsError(
                    f"run() returned but output {shown_all(missing)} does not exist")
        if run.lease is not None:
            try:
                self.locks.check(run.lease)
            except LeaseLostError:
                run.phase = Phase.DISCARD
                staged.discard()
                raise

    def _prepare_record(self, step: Step, run: StepRun) -> list[Any]:
        """Before an attempt: its inputs' identities for the build record; the targets to
        clean, the record's among them."""
        from ..staleness import capture_inputs
        from ..targets.sidecar import record_target

        record = record_target(step.outputs)
        if record is None:
            return step.outputs
        run.inputs = capture_inputs(step.task)
        return [*step.outputs, record]

    def _stage_record(self, step: Step, run: StepRun, staged: Staging) -> None:
        """The build record, one more write of the attempt's commit (targets/sidecar.py)."""
        from ..staleness import build_record
        from ..targets import sidecar

        record = sidecar.record_target(step.outputs)
        if record is not None and run.inputs is not None:
            sidecar.stage(staged, record, build_record(step.task, run.inputs))

    def _hook(self, step: Step, name: str, *args: Any) -> None:
        try:
            getattr(step.task, name)(*args)
        except Exception as exc:  # noqa: BLE001 - a hook of the user's never changes the result
            log.warning("%s.%s raised %s: %s", step.task.task_id, name, type(exc).__name__, exc)

    # -- leases ----------------------------------------------------------------------------
    def lose_lease(self, run: StepRun) -> None:
        """The lease is gone (expired, taken over): drop it and its slots, wait for it anew."""
        run.leases_lost += 1
        run.lease = None
        self.release_resources(run)
        self.give_up_paused(run)
        run.waiting_since = None
        run.contended = True
        run.phase = Phase.LEASE

    def release_resources(self, run: StepRun) -> None:
        if run.resource_leases:
            for lease in run.resource_leases:
                self.locks.release(lease)
            run.resource_leases = ()

    def give_up_paused(self, run: StepRun) -> None:
        """The attempt waiting for what its run() yielded will not go on as it is: a run()
        paused here is ended and its staged writes thrown away."""
        run.continuing = False
        if run.paused is not None:
            run.paused.close()
            run.paused = None

    def release(self, run: StepRun) -> None:
        """Give back the lease and the slots `run` holds (and a paused run()'s writes)."""
        if run.continuing:
            self.give_up_paused(run)
        if run.resource_leases:
            self.release_resources(run)
        if run.lease is not None:
            self.locks.release(run.lease)
            run.lease = None
