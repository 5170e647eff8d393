"""The run loop: hands ready steps to their lifecycle, collects finished attempts, closes steps.

The runner takes its collaborators (lock provider, executor, listeners) as arguments and
holds the run's schedule: the queue of ready steps, the heap of steps due later, and what
each closed step releases downstream. What happens to one step (lease, resources,
re-check, execute, fence, commit or discard) is `attempt.Lifecycle`'s. All bookkeeping
is O(1) per step and per edge.
"""

from __future__ import annotations

import heapq
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable

from .. import logs
from ..errors import BatchdepsError
from ..locks.base import LockProvider
from ..report.events import Event, Listener, RunFinished, RunStarted, TaskFinished
from ..report.result import BuildResult, Status, TaskResult
from ..resolver import Plan, Step
from .attempt import OPTION_DEFAULTS, Lifecycle, Phase, RunOptions
from .executors import Executor, InlineExecutor

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
        self.options = options or RunOptions()
        self.clock = clock
        self.stopping = False
        self.result = BuildResult(run_id=self.options.run_id)
        self.lifecycle = Lifecycle(plan, locks, self.executor, self, self.options, clock,
                                   sleep_rand)

    # -- public --------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to start nothing new and wind down (SIGINT / SIGTERM)."""
        self.stopping = True

    def emit(self, event: Event) -> None:
        for listener in self.listeners:
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
        self._pending_up = [len(step.upstream) for step in self.plan.steps]
        self._ready: deque[Step] = deque(s for s in self.plan.steps if not s.upstream)
        self._refusals_seen = 0  # refused leases the ready queue was last turned for
        self._delayed: list[tuple[float, int, Step]] = []  # (due, index, step)
        self._open = len(self.plan.steps)
        try:
            # Workers first: listeners start threads when the run starts (the history
            # writer), and workers forked before any thread need no fork server.
            self.executor.start(self.plan.steps)
            self.emit(RunStarted(self.options.run_id, self.plan, self.options.workers))
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

    # -- the loop ------------------------------------------------------------------------
    def _spread_out(self, ready: deque[Step], refusals: int) -> None:
        """Other runs work on this plan too: go on from a random place in the ready queue.

        Runs started together walk the same queue in the same order, so each would ask for
        the leases the others just took, and wait for them, task after task; a run that
        catches up with another would trail it the same way. Each time a run is refused a
        lease it turns the queue to a random place, and mostly meets work nobody has taken
        yet. A run alone never turns its queue.
        """
        self._refusals_seen = refusals
        if len(ready) > 1:
            ready.rotate(-int(self.lifecycle.rand() * len(ready)))

    def _loop(self) -> None:
        executor = self.executor
        lifecycle = self.lifecycle
        ready = self._ready
        delayed = self._delayed
        while self._open and not self.stopping:
            now = self.clock()
            while delayed and delayed[0][0] <= now:
                ready.append(heapq.heappop(delayed)[2])
            started = 0
            lifecycle.prefetch(ready, executor.prefetch_limit())
            while ready and not self.stopping and executor.free_slots() > 0:
                lifecycle.start(ready.popleft())
                started += 1
                if lifecycle.refusals != self._refusals_seen:
                    self._spread_out(ready, lifecycle.refusals)
                if started >= START_BATCH:  # let finished attempts in between long queues
                    break
            if not self._open or self.stopping:
                break
            if ready and executor.free_slots() > 0:
                timeout = 0.0
            elif delayed:
                timeout = max(0.0, min(0.5, delayed[0][0] - self.clock()))
            else:
                timeout = 0.5
            outcomes = executor.wait(timeout if executor.running or delayed else 0.0)
            for outcome in outcomes:
                lifecycle.finish(outcome)
            # The inline executor hands back finished attempts with nothing "running".
            if not outcomes and not executor.running and not ready and not delayed \
                    and self._open and not self.stopping:
                raise RuntimeError("runner stalled with open steps")  # pragma: no cover

    def later(self, step: Step, due: float) -> None:
        heapq.heappush(self._delayed, (due, step.index, step))

    # -- closing steps ---------------------------------------------------------------------
    def close(self, step: Step, status: Status, *, attempts: int = 0, error: str = "",
              reason: str = "", missing_paths: list[str] | None = None,
              holder: str = "") -> None:
        """Record `step`'s final status; ready its downstream, or close it as blocked."""
        run = self.lifecycle.runs[step.index]
        run.phase = Phase.DONE
        log_path = run.log_path if attempts else None
        if log_path is not None and not os.path.exists(log_path):
            log_path = None  # per-attempt logs are made only when there is something in them
        self.result.tasks[step.task_id] = TaskResult(
            step.task_id, status, reason=reason or step.reason, attempts=attempts,
            duration=run.duration, error=error, log_path=log_path,
            missing_paths=list(missing_paths or []), holder=holder,
        )
        self._open -= 1
        self.emit(TaskFinished(self.options.run_id, step.task_id, step.task.family(), status,
                               attempts, run.duration, error, log_path,
                               run.worker_pid if attempts else 0))
        if status in Status.OK:
            pending_up = self._pending_up
            for down in step.downstream:
                left = pending_up[down.index] - 1
                pending_up[down.index] = left
                if left == 0 and down.task_id not in self.result.tasks:
                    self._ready.append(down)
            return
        blocked = _DOWNSTREAM_OF.get(status, Status.UPSTREAM_FAILED)
        stack = list(step.downstream)
        while stack:
            down = stack.pop()
            if down.task_id in self.result.tasks:
                continue
            self.lifecycle.runs[down.index].phase = Phase.DONE
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
        lifecycle = self.lifecycle
        for index in running:
            lifecycle.leftovers.clean(self.plan.steps[index].outputs, fresh=True)
        for run in lifecycle.runs:
            lifecycle.release(run)
        for step in self.plan.steps:
            if step.task_id not in self.result.tasks:
                lifecycle.runs[step.index].phase = Phase.DONE
                self.result.tasks[step.task_id] = TaskResult(
                    step.task_id, Status.NOT_RUN, reason=reason)
