"""The run loop: hands ready steps to their lifecycle, collects finished attempts, closes steps.

The runner takes its collaborators (lock provider, executor, listeners) as arguments and
holds the run's schedule: the queue of ready steps, the heap of steps due later, and what
each closed step releases downstream. What happens to one step (lease, resources,
re-check, execute, fence, commit or discard) is `attempt.Lifecycle`'s. Missing external
inputs, when the run waits for them, are `waiting.InputWaiter`'s until they close. All bookkeeping
is O(1) per step and per edge.
"""

from __future__ import annotations

import heapq
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from .. import logs
from ..errors import BatchdepsError, TargetCheckError
from ..locks.base import LockProvider
from ..report.events import (
    Event,
    Listener,
    RunFinished,
    RunStarted,
    TaskFinished,
    TasksYielded,
    routes,
)
from ..report.result import BuildResult, Status, TaskResult, TaskResults
from ..resolver import MISSING, Plan, Step
from ..task import Task
from .attempt import OPTION_DEFAULTS, Lifecycle, Phase, RunOptions, StepRun
from .executors import Executor, InlineExecutor
from .ready import (
    PriorityQueue,
    ReadySteps,
    effective_priorities,
    own_priorities,
    priority_of,
)

if TYPE_CHECKING:
    from .waiting import InputWaiter

__all__ = ["OPTION_DEFAULTS", "RunOptions", "Runner"]

log = logs.get()

#: Ready steps started in one go before finished attempts are looked at again.
START_BATCH = 64

#: What a step's downstream becomes when the step did not end well.
_DOWNSTREAM_OF = {
    Status.MISSING_INPUT: Status.BLOCKED,
    Status.BLOCKED: Status.BLOCKED,
    Status.LOCK_TIMEOUT: Status.NOT_RUN,
    Status.NOT_RUN: Status.NOT_RUN,
}


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
        #: event type -> the listeners that hear it (a listener's `listens_to`)
        self._routes = routes(self.listeners)
        self._hears_finished = self.hears(TaskFinished)
        self.options = options or RunOptions()
        self.clock = clock
        self.stopping = False
        self.result = BuildResult(run_id=self.options.run_id)
        self.results = TaskResults()  # the result's tasks (kept compact: see TaskResults)
        self.result.tasks = self.results
        self.lifecycle = Lifecycle(plan, locks, self.executor, self, self.options, clock,
                                   sleep_rand)
        #: missing external inputs waited for (`wait_for_inputs`); None: they close at once
        self.waiter: InputWaiter | None = None
        if self.options.wait_for_inputs:
            from .waiting import InputWaiter  # a run that does not wait does not import it

            self.waiter = InputWaiter(self, self.options, clock, rand=sleep_rand)

    # -- public --------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to start nothing new and wind down (SIGINT / SIGTERM)."""
        self.stopping = True

    def hears(self, kind: type) -> bool:
        """Whether some listener hears events of type `kind` (else none need be made)."""
        return bool(self._routes.get(kind, True))

    def emit(self, event: Event) -> None:
        for listener in self._routes.get(type(event), self.listeners):
            try:
                listener.on_event(event)
            except Exception:  # a broken listener never changes the run
                log.exception("listener %r failed on %s", listener, type(event).__name__)

    def run(self) -> BuildResult:
        """Run every step; an error that stops the run is recorded on the result (so the
        listeners hear of it in RunFinished) and raised."""
        started = self.clock()
        result = self.result
        result.requested = [t.task_id for t in self.plan.requested]
        for task in self.plan.complete:
            result.tasks[task.task_id] = TaskResult(task.task_id, Status.COMPLETE,
                                                   reason="already complete")
        # by id: a str hashes in C, a task by a call of its own (once per step of the plan)
        requested = {task.task_id for task in self.plan.requested}
        self.results.bind(self.plan.steps,
                          [s for s in self.plan.steps if s.task.task_id in requested])
        self._pending_up = [len(step.upstream) for step in self.plan.steps]
        self._ready: ReadySteps = self._ready_queue()
        awaited = [s for s in self.plan.steps if not s.upstream and s.kind is MISSING] \
            if self.waiter is not None else []
        self._refusals_seen = 0  # refused leases the ready queue was last turned for
        self._delayed: list[tuple[float, int, Step]] = []  # (due, index, step)
        self._open = len(self.plan.steps)
        try:
            # Workers first: listeners start threads when the run starts (the history
            # writer), and workers forked before any thread need no fork server.
            self.executor.start(self.plan.steps)
            self.emit(RunStarted(self.options.run_id, self.plan, self.options.workers))
            if self.waiter is not None:
                self.waiter.start(awaited)
            self._loop()
        except KeyboardInterrupt:
            self.stopping = True
        except BatchdepsError as exc:  # storage or lock server gone: stop, say what was done
            result.stopped_by = exc
            self._wind_down(f"not run: {exc}")
        finally:
            if self.stopping:
                self._wind_down("interrupted")
            self.executor.close()
            self.lifecycle.leftovers.close()
        result.elapsed = self.clock() - started
        self.emit(RunFinished(self.options.run_id, result))
        if result.stopped_by is not None:
            raise result.stopped_by
        return result

    def _ready_queue(self) -> ReadySteps:
        """The steps that can start now: a deque, or by priority when any task has one."""
        steps = self.plan.steps
        waiting = self.waiter is not None  # its missing inputs are the waiter's
        first = [step for step in steps  # (a list: a generator is a call per step)
                 if not step.upstream and not (waiting and step.kind is MISSING)]
        own = own_priorities(steps)
        if own is None:
            return deque(first)
        return PriorityQueue(effective_priorities(steps, own), first)

    # -- the loop ------------------------------------------------------------------------
    def _spread_out(self, ready: ReadySteps, refusals: int) -> None:
        """Other runs work on this plan too: go on from a random place in the ready queue.

        Runs started together walk the same queue in the same order, so each would ask for
        the leases the others just took, and wait for them, task after task; a run that
        catches up with another would trail it the same way. Each time a run is refused a
        lease it turns the queue to a random place, and mostly meets work nobody has taken
        yet. A run alone never turns its queue. Steps whose leases were asked for ahead stay
        in front (they are among the first few: `prefetch` takes them from the front).
        """
        self._refusals_seen = refusals
        if len(ready) > 1 and not isinstance(ready, PriorityQueue):  # its order is its own
            lifecycle = self.lifecycle
            front: list[Step] = []
            ahead = 0
            while ahead < lifecycle.ahead and ready:
                front.append(ready.popleft())
                ahead += lifecycle.is_ahead(front[-1])
            ready.rotate(-int(lifecycle.rand() * len(ready)))
            for step in front:
                ready.append(step)
            ready.rotate(len(front))

    def _loop(self) -> None:
        executor = self.executor
        lifecycle = self.lifecycle
        delayed = self._delayed
        waiter = self.waiter
        while self._open and not self.stopping:
            ready = self._ready  # a dynamic dependency with a priority may change its kind
            now = self.clock()
            if delayed and delayed[0][0] <= now:
                due = []
                while delayed and delayed[0][0] <= now:
                    due.append(heapq.heappop(delayed)[2])
                for step in lifecycle.poll(due):  # lock polls due together: one request
                    ready.append(step)
            awaiting = waiter is not None and bool(waiter.waiting)
            if waiter is not None and awaiting and waiter.due <= now:
                waiter.poll()
            started = 0
            # Inline, an attempt ends inside start(): with priorities, what it makes ready
            # must be in the queue before the next step is chosen.
            batch = 1 if executor.inline and isinstance(ready, PriorityQueue) else START_BATCH
            while ready and not self.stopping and executor.free_slots() > 0:
                # Before each start: steps closed at once (built elsewhere) may use up the
                # leases asked for ahead before a slot is filled.
                lifecycle.prefetch(ready, executor.prefetch_limit())
                lifecycle.start(ready.popleft())
                started += 1
                if lifecycle.refusals != self._refusals_seen:
                    self._spread_out(ready, lifecycle.refusals)
                if started >= batch:  # let finished attempts in between long queues
                    break
            if not self._open or self.stopping:
                break
            if ready and executor.free_slots() > 0:
                timeout = 0.0
            elif delayed:
                timeout = max(0.0, min(0.5, delayed[0][0] - self.clock()))
            else:
                timeout = 0.5
            if waiter is not None and awaiting:  # at most 0.5 s still: a signal ends the wait
                timeout = min(timeout, max(0.0, waiter.due - self.clock()))
            outcomes = executor.wait(timeout if executor.running or delayed or awaiting
                                     else 0.0)
            for outcome in outcomes:
                lifecycle.finish(outcome)
            # The inline executor hands back finished attempts with nothing "running".
            if not outcomes and not executor.running and not ready and not delayed \
                    and not awaiting and self._open and not self.stopping:
                raise RuntimeError("runner stalled with open steps")  # pragma: no cover

    def later(self, step: Step, due: float) -> None:
        heapq.heappush(self._delayed, (due, step.index, step))

    # -- closing steps ---------------------------------------------------------------------
    def close(self, step: Step, status: Status, *, attempts: int = 0, error: str = "",
              reason: str = "", missing_paths: Sequence[str] | None = None,
              holder: str = "") -> None:
        """Record `step`'s final status; ready its downstream, or close it as blocked."""
        run = self.lifecycle.done(step)  # what it knew, for the last time (None: never began)
        duration = run.duration if run is not None else 0.0
        log_path = run.log_path if attempts and run is not None else None
        if log_path is not None:  # per-attempt logs are made only when there is something
            # in them: a built task's capture says whether it wrote one; a failed attempt's
            # log may be made by the task logs' listener, and is looked for
            written = (run.log_written  # type: ignore[union-attr]
                       if status is Status.BUILT else None)
            if written is None:
                written = os.path.exists(log_path)
            if not written:
                log_path = None
        if reason or error or log_path or missing_paths or holder:
            detail = TaskResult(
                step.task.task_id, status, reason=reason or step.reason, attempts=attempts,
                duration=duration, error=error, log_path=log_path,
                missing_paths=list(missing_paths) if missing_paths else (), holder=holder)
            self.results.record(step, status, detail=detail)
        else:  # the plan's reason, nothing more: kept as a status byte and two numbers
            self.results.record(step, status, attempts, duration)
        self._open -= 1
        if self._hears_finished:
            self.emit(TaskFinished(self.options.run_id, step.task.task_id, step.task.family(),
                                   status, attempts, duration, error, log_path,
                                   run.worker_pid if attempts and run is not None else 0,
                                   run.worker if attempts and run is not None else ""))
        if status in Status.OK:
            pending_up = self._pending_up
            closed = self.results.closed
            for down in step.downstream:
                left = pending_up[down.index] - 1
                pending_up[down.index] = left
                if left == 0 and not closed(down.index):
                    self._ready.append(down)
            return
        self._block(step.downstream, step, status, missing_paths)

    def _block(self, stack: list[Step], source: Step, status: Status,
               missing_paths: Sequence[str] | None) -> None:
        """Close the steps of `stack` and everything downstream of them: `source` ended
        with `status`. A step whose run() waits for `source` (it yielded it) fails, or is
        blocked or not run, itself."""
        blocked = _DOWNSTREAM_OF.get(status, Status.UPSTREAM_FAILED)
        stack = list(stack)
        results = self.results
        while stack:
            down = stack.pop()
            if results.closed(down.index):
                continue
            run = self.lifecycle.done(down)
            status_here, attempts, error = blocked, 0, f"{status}: {source.task_id}"
            duration = run.duration if run is not None else 0.0
            if run is not None and run.phase is Phase.DEPENDS:
                self.lifecycle.release(run)
                attempts = run.attempts
                if blocked is Status.UPSTREAM_FAILED:
                    status_here = Status.FAILED
                    error = f"task {source.task_id} that run() yielded {status}"
            results.record(down, status_here, detail=TaskResult(
                down.task_id, status_here, reason=f"{status}: {source.task_id}",
                attempts=attempts, duration=duration,
                error=error if status_here is Status.FAILED else "",
                missing_paths=list(missing_paths) if missing_paths else (),
            ))
            self._open -= 1
            self.emit(TaskFinished(self.options.run_id, down.task_id, down.task.family(),
                                   status_here, attempts, duration, error))
            stack.extend(down.downstream)

    # -- dynamic dependencies --------------------------------------------------------------
    def depend(self, step: Step, tasks: list[Task]) -> None:
        """`step`'s run() yielded `tasks`, not all complete: the plan gains the steps they
        need (resolved as any other), `step` waits for them, and is ready again when they
        are closed well (a yielded task that fails fails `step`)."""
        run = self.lifecycle.run_of(step)
        seen_before = run.yielded is not None and all(t in run.yielded for t in tasks)
        run.yielded = (run.yielded or set()) | set(tasks)
        try:
            added = self.plan.extend(tasks)
        except TargetCheckError:
            raise  # a check that cannot decide (storage down) stops the run
        except BatchdepsError as exc:  # a yielded task's definition is wrong
            self._fail_waiting(step, run, str(exc).splitlines()[-1])
            return
        check_keys = self.options.check_keys
        if check_keys is not None and added:
            try:
                check_keys(new.task_id for new in added)
            except BatchdepsError as exc:  # the lock server could not lock them
                self._add_steps(added, step, refused=str(exc).splitlines()[-1])
                self._fail_waiting(step, run, str(exc).splitlines()[-1])
                return
        self._add_steps(added, step)
        by_task = self.plan.by_task()
        results = self.results
        pending = 0
        waited: list[Step] = []
        for task in dict.fromkeys(tasks):
            child = by_task.get(task)
            if child is None:
                continue  # complete when the plan was extended
            if child is step:
                self._fail_waiting(step, run, "run() yielded its own task")
                return
            waited.append(child)
            done = results.at(child.index)
            if done is None:
                pending += 1
            elif done.status not in Status.OK:
                self._block([step], child, done.status, done.missing_paths)
                return
        cycle = self._requires_step(waited, step)
        if cycle is not None:
            self._fail_waiting(step, run, f"dependency cycle: {step.task.task_id} yields "
                               f"{cycle.task_id}, which requires {step.task.task_id}")
            return
        for child in waited:
            if not results.closed(child.index):
                child.downstream = (*child.downstream, step)
                step.upstream = (*step.upstream, child)
        self.emit(TasksYielded(self.options.run_id, step.task.task_id, step.task.family(),
                               tuple(t.task_id for t in tasks), len(added), tuple(tasks)))
        if pending:
            self._pending_up[step.index] = pending
        elif seen_before:
            names = ", ".join(t.task_id for t in tasks[:3]) + (" ..." if len(tasks) > 3 else "")
            self._fail_waiting(step, run, f"run() yielded {names} again, which this run "
                               "built and which is still not complete (a yielded task needs "
                               "outputs that exist once built, or a complete() that turns "
                               "true)")
        else:
            self._ready.append(step)  # complete meanwhile: run() goes on at once

    def _add_steps(self, added: list[Step], needed_by: Step, refused: str = "") -> None:
        """Steps new to the plan get their bookkeeping; ready ones start, blocked ones close
        (all of them close as failed with the reason `refused`, when given)."""
        if not added:
            return
        if refused:
            self.lifecycle.runs.extend(None for _ in added)
            self._pending_up.extend(0 for _ in added)
            self._open += len(added)
            for new in added:
                if not self.results.closed(new.index):
                    self.close(new, Status.FAILED, error=refused)
            return
        own = [priority_of(step) for step in added]
        ready = self._ready
        if isinstance(ready, PriorityQueue):
            ready.add_steps(added, own, ready.effective[needed_by.index])
        elif any(own):  # the first priority of the run: the queue goes by priorities now
            steps = self.plan.steps
            before = [priority_of(step) for step in steps[:len(steps) - len(added)]]
            effective = effective_priorities(steps, before + own)
            self._ready = PriorityQueue(effective, ready)
        results = self.results
        self.lifecycle.runs.extend(None for _ in added)
        self._open += len(added)
        pending_up = self._pending_up
        for new in added:
            pending = 0
            for up in new.upstream:
                done = results.at(up.index)
                if done is None:
                    pending += 1
                elif done.status not in Status.OK and not results.closed(new.index):
                    self._block([new], up, done.status, done.missing_paths)
            pending_up.append(pending)
            if not pending and not results.closed(new.index):
                if self.waiter is not None and new.kind is MISSING:
                    self.waiter.add([new])
                else:
                    self._ready.append(new)

    def _fail_waiting(self, step: Step, run: StepRun, error: str) -> None:
        self.lifecycle.release(run)
        self.close(step, Status.FAILED, attempts=run.attempts, error=error)

    def _requires_step(self, starts: list[Step], target: Step) -> Step | None:
        """One of `starts` from which open steps lead upstream to `target` (one walk over
        what they need together, each step looked at once)."""
        closed = self.results.closed
        seen = {start.index for start in starts}
        stack = [(start, start) for start in starts]
        while stack:
            step, start = stack.pop()
            for up in step.upstream:
                if up is target:
                    return start
                if up.index not in seen and not closed(up.index):
                    seen.add(up.index)
                    stack.append((up, start))
        return None

    def _wind_down(self, reason: str) -> None:
        """Stopped: kill running attempts, remove their temporary files, free every lock."""
        self.result.interrupted = self.result.stopped_by is None
        running = list(self.executor.running)
        self.executor.terminate(grace=self.options.kill_grace)
        lifecycle = self.lifecycle
        for index in running:
            lifecycle.leftovers.clean(self.plan.steps[index].outputs, fresh=True)
        for run in lifecycle.runs:
            if run is not None:
                lifecycle.release(run)
        for step in self.plan.steps:
            if not self.results.closed(step.index):
                lifecycle.done(step)
                self.results.record(step, Status.NOT_RUN, detail=TaskResult(
                    step.task.task_id, Status.NOT_RUN, reason=reason))
