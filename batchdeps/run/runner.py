"""Execution of a plan: locks, resources, retries, output checks, commits, results.

The runner takes its collaborators (lock provider, executor, listeners) as arguments.
One loop in this process hands ready steps to the executor and handles what comes back;
all bookkeeping is O(1) per step and per edge.
"""

from __future__ import annotations

import heapq
import logging
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..backoff import Backoff, retry_delay
from ..errors import BatchdepsError, LeaseLostError
from ..locks.base import Lease, LockProvider
from ..report.events import (
    AttemptFailed,
    Event,
    Listener,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskRetrying,
    TaskStarted,
    TaskWaiting,
)
from ..report.result import BuildResult, Status, TaskResult
from ..resolver import MISSING, Plan, Step
from ..targets import Leftovers, Staging, check_exists
from ..task import Task, WrapperTask
from .executors import Executor, InlineExecutor, Outcome

log = logging.getLogger("batchdeps")

#: Built-in task option defaults; `[batchdeps]` in config and class attributes override.
OPTION_DEFAULTS: dict[str, Any] = {
    "retries": 0,
    "retry_delay": 1.0,
    "retry_backoff": 2.0,
    "max_retry_delay": 300.0,
    "timeout": None,
}


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


#: A task whose lease is lost this often in one run fails instead of waiting again.
MAX_LEASES_LOST = 3


@dataclass
class _State:
    attempts: int = 0
    lease: Lease | None = None
    resource_leases: list[Lease] = field(default_factory=list)
    waiting_since: float | None = None
    polls: int = 0
    contended: bool = False
    duration: float = 0.0
    leases_lost: int = 0  # times another holder took the lease mid-attempt
    fresh_lease: bool = False  # lease just taken: completeness must be checked again
    prefetch_missed: bool = False  # a batched acquire found the task held elsewhere
    log_path: str | None = None  # the current attempt's log file (made only if needed)


#: Polling for a task held elsewhere, and for a free resource slot (capped by
#: `RunOptions.lock_poll_max`); no jitter: the holder's release is not a crowd.
LOCK_POLL = Backoff(first=0.03, factor=1.5, jitter=0.0)
RESOURCE_POLL = Backoff(first=0.015, factor=1.5, jitter=0.0)


class Runner:
    """Runs a plan to the end (or until stopped) and returns what happened per task."""

    def __init__(
        self,
        plan: Plan,
        locks: LockProvider,
        executor: Executor | None = None,
        listeners: Iterable[Listener] = (),
        options: RunOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep_rand: Callable[[], float] = random.random,
    ) -> None:
        self.plan = plan
        self.locks = locks
        self.executor: Executor = executor if executor is not None else InlineExecutor()
        self.listeners = list(listeners)
        self.options = options or RunOptions()
        self.clock = clock
        self._rand = sleep_rand
        self._stop_requested = False
        self.result = BuildResult(run_id=self.options.run_id)

    # -- public --------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to start nothing new and wind down (SIGINT / SIGTERM)."""
        self._stop_requested = True

    def option(self, step: Step, name: str) -> Any:
        value = getattr(type(step.task), name, None)
        if value is None:
            value = self.options.task_defaults.get(name, OPTION_DEFAULTS[name])
        return value

    def emit(self, event: Event) -> None:
        for listener in self.listeners:
            try:
                listener.on_event(event)
            except Exception:  # a broken listener never changes the run
                log.exception("listener %r failed on %s", listener, type(event).__name__)

    def run(self) -> BuildResult:
        started = self.clock()
        self._leftovers = Leftovers()  # this run's look at temporary folders
        result = self.result
        result.requested = [t.task_id for t in self.plan.requested]
        for task in self.plan.complete:
            result.tasks[task.task_id] = TaskResult(task.task_id, Status.COMPLETE,
                                                   reason="already complete")
        self.emit(RunStarted(self.options.run_id, self.plan, self.options.workers))
        self._states = {step.index: _State() for step in self.plan.steps}
        self._pending_up = {step.index: len(step.upstream) for step in self.plan.steps}
        self._ready: deque[Step] = deque(s for s in self.plan.steps if not s.upstream)
        self._delayed: list[tuple[float, int, Step]] = []  # (due, index, step)
        self._open = len(self.plan.steps)
        try:
            self.executor.start(self.plan.steps)
            self._loop()
        except KeyboardInterrupt:
            self._stop_requested = True
        except BatchdepsError as exc:  # storage or lock server gone: stop, say what was done
            result.stopped_by = exc
            self._wind_down(f"not run: {exc}")
        finally:
            if self._stop_requested:
                self._wind_down("interrupted")
            self.executor.close()
            self._leftovers.close()
        result.elapsed = self.clock() - started
        self.emit(RunFinished(self.options.run_id, result))
        if result.stopped_by is not None:
            raise result.stopped_by
        return result

    # -- the loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        executor = self.executor
        while self._open and not self._stop_requested:
            now = self.clock()
            delayed = self._delayed
            while delayed and delayed[0][0] <= now:
                self._ready.append(heapq.heappop(delayed)[2])
            polled = 0
            self._prefetch_leases(executor.prefetch_limit())
            while self._ready and not self._stop_requested and executor.free_slots() > 0:
                self._begin(self._ready.popleft())
                polled += 1
                if polled >= 64:  # let finished attempts in between long ready queues
                    break
            if not self._open or self._stop_requested:
                break
            if self._ready and executor.free_slots() > 0:
                timeout = 0.0
            elif delayed:
                timeout = max(0.0, min(0.5, delayed[0][0] - self.clock()))
            else:
                timeout = 0.5
            outcomes = executor.wait(timeout if executor.running or delayed else 0.0)
            for outcome in outcomes:
                self._finish(outcome)
            # The inline executor hands back finished attempts with nothing "running".
            if not outcomes and not executor.running and not self._ready and not delayed \
                    and self._open and not self._stop_requested:
                raise RuntimeError("runner stalled with open steps")  # pragma: no cover

    def _needs_lease(self, step: Step) -> bool:
        task = step.task
        return step.kind != MISSING and (
            not isinstance(task, WrapperTask) or task in self.plan.forced)

    def _prefetch_leases(self, limit: int) -> None:
        """Take the leases of the next `limit` ready steps in one round trip.

        Only the steps about to start are covered, so a run never sits on leases of work
        it will not start soon (another machine may take that work meanwhile).
        """
        acquire_many = getattr(self.locks, "try_acquire_many", None)
        if acquire_many is None or limit < 2:
            return
        batch: list[Step] = []
        for step in self._ready:
            if len(batch) >= limit:
                break
            state = self._states[step.index]
            if state.lease is None and not state.prefetch_missed and self._needs_lease(step):
                batch.append(step)
        if len(batch) < 2:
            return
        leases = acquire_many([step.task_id for step in batch])
        for step, lease in zip(batch, leases):
            state = self._states[step.index]
            if lease is None:
                state.prefetch_missed = True
            else:
                state.lease = lease
                state.fresh_lease = True

    def _begin(self, step: Step) -> None:
        """Take a ready step: missing input, wrapper, lock, resources, re-check, submit."""
        state = self._states[step.index]
        task = step.task
        if step.kind == MISSING:
            self._close(step, Status.MISSING_INPUT, error=step.reason,
                        missing_paths=step.missing_paths)
            return
        forced = task in self.plan.forced
        if isinstance(task, WrapperTask) and not forced:
            self._close(step, Status.BUILT)
            return
        if state.lease is not None and (not state.fresh_lease or state.lease.lost):
            # Held since an earlier attempt or a wait for resources: it may have run out
            # meanwhile (a pause, a server outage), and another worker may run the task now.
            try:
                self.locks.check(state.lease)
            except LeaseLostError as exc:
                log.warning("%s: lease lost before the next attempt (%s); waiting for the "
                            "lock again", step.task_id, state.lease.lost_reason or exc)
                state.leases_lost += 1
                state.lease = None
                self._release_resources(state)
                state.waiting_since = None
                state.contended = True
        if state.lease is None:
            if state.prefetch_missed:
                state.prefetch_missed = False
                lease = None
            else:
                lease = self.locks.try_acquire(task.task_id)
            if lease is None:
                self._wait_for_lock(step, state)
                return
            state.lease = lease
            state.fresh_lease = True
        if state.fresh_lease:
            state.fresh_lease = False
            try:
                done_now = ((not forced or state.contended)
                            and (state.attempts == 0 or state.leases_lost)
                            and self._complete_now(step))
            except BatchdepsError:
                raise  # a check that cannot decide (storage down) stops the run, as before
            except Exception as exc:  # a complete() of the user's that raised: this task fails
                self._release(state)
                message = f"checking completeness after taking the lock failed: " \
                          f"{type(exc).__name__}: {exc}"
                self._close(step, Status.FAILED, error=message, tail=message.splitlines()[-1])
                return
            if done_now:
                status = Status.BUILT_ELSEWHERE if state.contended else Status.COMPLETE
                self._release(state)
                self._close(step, status, reason="built by another run" if state.contended
                            else "complete when locked")
                return
        if not self._take_resources(step, state):
            return
        state.attempts += 1
        # After a failed attempt, look again: it may have left some.
        self._leftovers.clean(step.outputs, fresh=state.attempts > 1)
        log_path = self.options.log_path_for(step, state.attempts) if self.options.log_path_for else None
        state.log_path = log_path
        self.emit(TaskStarted(self.options.run_id, task.task_id, task.family(), state.attempts,
                              step.reason))
        self.executor.submit(step, state.attempts, log_path, self.option(step, "timeout"))

    def _wait_for_lock(self, step: Step, state: _State) -> None:
        now = self.clock()
        if state.waiting_since is None:
            state.waiting_since = now
            state.contended = True
            holder = self.locks.holder(step.task_id)
            self.emit(TaskWaiting(self.options.run_id, step.task_id, holder))
        wait_timeout = self.options.wait_timeout
        if wait_timeout is not None and now - state.waiting_since >= wait_timeout:
            holder = self.locks.holder(step.task_id) or "another worker"
            self._close(step, Status.LOCK_TIMEOUT, holder=holder,
                        error=f"still held by {holder} after waiting {wait_timeout:g} s")
            return
        state.polls += 1
        delay = min(self.options.lock_poll_max, LOCK_POLL.delay(state.polls))
        if wait_timeout is not None:
            delay = min(delay, max(0.0, state.waiting_since + wait_timeout - now))
        heapq.heappush(self._delayed, (now + delay, step.index, step))

    def _take_resources(self, step: Step, state: _State) -> bool:
        wanted = getattr(type(step.task), "resources", None) or {}
        caps = self.options.resources
        for name, amount in wanted.items():
            cap = caps.get(name)
            if cap is None:
                continue  # a pool with no cap in config is unlimited
            for _ in range(min(int(amount), cap)):
                lease = self.locks.try_acquire_resource(name, cap)
                if lease is None:
                    for held in state.resource_leases:
                        self.locks.release(held)
                    state.resource_leases.clear()
                    state.polls += 1
                    delay = min(self.options.lock_poll_max, RESOURCE_POLL.delay(state.polls))
                    heapq.heappush(self._delayed, (self.clock() + delay, step.index, step))
                    return False
                state.resource_leases.append(lease)
        return True

    def _complete_now(self, step: Step) -> bool:
        """Completeness after taking the lock: another run may have built it meanwhile."""
        task = step.task
        if type(task).complete is Task.complete:
            return bool(step.outputs) and all(check_exists(step.outputs))
        return bool(task.complete())

    def _finish(self, outcome: Outcome) -> None:
        step = self.plan.steps[outcome.index]
        state = self._states[step.index]
        state.duration += outcome.duration
        error, tail = outcome.traceback or outcome.error, outcome.error
        if outcome.ok:
            try:
                self._commit(step, state, outcome.staged)
            except BatchdepsError as exc:
                error, tail = str(exc), str(exc).splitlines()[-1]
            else:
                self._hook(step, "on_success")
                self._release(state)
                self._close(step, Status.BUILT, attempts=state.attempts)
                return
        else:
            outcome.staged.discard()
            if outcome.timed_out:
                self._leftovers.clean(step.outputs, fresh=True)
        log_path = state.log_path
        self.emit(AttemptFailed(self.options.run_id, step.task_id, step.task.family(),
                                state.attempts, tail or error, log_path, outcome.timed_out))
        if (state.lease is not None and state.lease.lost and not self._stop_requested
                and state.leases_lost < MAX_LEASES_LOST):
            # Not this attempt's fault: wait for the lock like any other contended task,
            # then re-check; if the new holder built it, nothing runs again.
            log.warning("%s: %s; waiting for the lock again", step.task_id, tail or error)
            state.leases_lost += 1
            state.lease = None
            self._release_resources(state)
            state.waiting_since = None
            state.contended = True
            heapq.heappush(self._delayed, (self.clock(), step.index, step))
            return
        retries = int(self.option(step, "retries"))
        if state.attempts <= retries and not self._stop_requested and not (
            state.lease is not None and state.lease.lost
        ):
            delay = retry_delay(state.attempts, float(self.option(step, "retry_delay")),
                                float(self.option(step, "retry_backoff")),
                                float(self.option(step, "max_retry_delay")), self._rand)
            self.emit(TaskRetrying(self.options.run_id, step.task_id, step.task.family(),
                                   state.attempts, delay, tail))
            self._release_resources(state)
            heapq.heappush(self._delayed, (self.clock() + delay, step.index, step))
            return
        self._release(state)
        self._hook(step, "on_failure", RuntimeError(tail or error))
        self._close(step, Status.FAILED, attempts=state.attempts, error=error, tail=tail)

    def _commit(self, step: Step, state: _State, staged: Staging) -> None:
        """Check every output, re-check the lease, then make the staged writes visible."""
        unstaged = [t for t in step.outputs if t.url not in staged]
        if unstaged:
            exists = check_exists(unstaged)
            missing = [t.url for t, ok in zip(unstaged, exists) if not ok]
            if missing:
                staged.discard()
                raise BatchdepsError(
                    f"run() returned but output {', '.join(missing)} does not exist"
                )
        try:
            if state.lease is not None:
                self.locks.check(state.lease)
        except LeaseLostError:
            staged.discard()
            raise
        staged.commit(step.outputs)  # all or nothing (targets/commit.py)

    def _hook(self, step: Step, name: str, *args: Any) -> None:
        try:
            getattr(step.task, name)(*args)
        except Exception as exc:
            log.warning("%s.%s raised %s: %s", step.task_id, name, type(exc).__name__, exc)

    def _release_resources(self, state: _State) -> None:
        for lease in state.resource_leases:
            self.locks.release(lease)
        state.resource_leases.clear()

    def _release(self, state: _State) -> None:
        self._release_resources(state)
        if state.lease is not None:
            self.locks.release(state.lease)
            state.lease = None

    # -- closing steps ---------------------------------------------------------------------
    def _close(self, step: Step, status: Status, *, attempts: int = 0, error: str = "",
               tail: str = "", reason: str = "", missing_paths: list[str] | None = None,
               holder: str = "") -> None:
        state = self._states[step.index]
        log_path = state.log_path if attempts else None
        if log_path is not None and not os.path.exists(log_path):
            log_path = None  # per-attempt logs are made only when there is something in them
        self.result.tasks[step.task_id] = TaskResult(
            step.task_id, status, reason=reason or step.reason, attempts=attempts,
            duration=state.duration, error=tail or error, log_path=log_path,
            missing_paths=list(missing_paths or []), holder=holder,
        )
        self._open -= 1
        self.emit(TaskFinished(self.options.run_id, step.task_id, step.task.family(), status,
                               attempts, state.duration, tail or error, log_path))
        if status in Status.OK:
            for down in step.downstream:
                left = self._pending_up[down.index] - 1
                self._pending_up[down.index] = left
                if left == 0 and down.task_id not in self.result.tasks:
                    self._ready.append(down)
            return
        blocked = {
            Status.MISSING_INPUT: Status.BLOCKED,
            Status.BLOCKED: Status.BLOCKED,
            Status.LOCK_TIMEOUT: Status.NOT_RUN,
            Status.NOT_RUN: Status.NOT_RUN,
        }.get(status, Status.UPSTREAM_FAILED)
        stack = list(step.downstream)
        while stack:
            down = stack.pop()
            if down.task_id in self.result.tasks:
                continue
            self.result.tasks[down.task_id] = TaskResult(
                down.task_id, blocked, reason=f"{status}: {step.task_id}",
                missing_paths=list(missing_paths or []),
            )
            self._open -= 1
            self.emit(TaskFinished(self.options.run_id, down.task_id, down.task.family(),
                                   blocked, 0, 0.0, f"{status}: {step.task_id}"))
            stack.extend(down.downstream)

    def _wind_down(self, reason: str) -> None:
        """Stopped: kill running attempts, remove their temporary files, free every lock."""
        self.result.interrupted = self.result.stopped_by is None
        running = list(self.executor.running)
        self.executor.terminate(grace=self.options.kill_grace)
        for index in running:
            self._leftovers.clean(self.plan.steps[index].outputs, fresh=True)
        for state in self._states.values():
            self._release(state)
        for step in self.plan.steps:
            if step.task_id not in self.result.tasks:
                self.result.tasks[step.task_id] = TaskResult(
                    step.task_id, Status.NOT_RUN, reason=reason)
