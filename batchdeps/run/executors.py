"""Where a task attempt's `run()` executes: inline in this process, or in forked workers.

`Executor` is the interface the runner and the command line use; `InlineExecutor` and
`ForkedExecutor` implement it. An attempt runs inside a staging scope; its closed writes
come back to the runner as {url: temporary path}, and the runner commits them after
checking outputs and the lease. Forked workers are used when `workers > 1` or a task has a
timeout (only a process can be killed); they are forked after resolution, so a step
travels as its index in the plan.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..targets import staging_scope

if TYPE_CHECKING:
    from ..resolver import Step

AttemptHook = Callable[["Step", int, str | None], Any]


class Executor(Protocol):
    """Runs attempts of a plan's steps; every call the runner and the command line make."""

    #: Step index -> monotonic time its attempt started, for attempts not yet handed back.
    running: dict[int, float]
    #: True when `submit()` runs the attempt in the calling thread and returns when it ends;
    #: a stop signal must then interrupt that thread (the command line raises
    #: KeyboardInterrupt in its handler).
    inline: bool

    def start(self, steps: list[Step]) -> None:
        """Prepare to run attempts of `steps` (a step is then named by its index)."""

    def free_slots(self) -> int:
        """How many attempts `submit()` can take now."""

    def prefetch_limit(self) -> int:
        """How many ready steps' leases the runner may take ahead, in one batch."""

    def submit(self, step: Step, attempt: int, log_path: str | None = None,
               timeout: float | None = None) -> None:
        """Start attempt number `attempt` of `step` (its output captured into `log_path`)."""

    def wait(self, timeout: float) -> list[Outcome]:
        """Attempts that ended, waiting up to `timeout` seconds for one if none has."""

    def terminate(self, grace: float) -> None:
        """Stop running attempts: SIGTERM their processes, SIGKILL after `grace` seconds."""

    def kill_all(self) -> None:
        """SIGKILL every process the attempts started, now, without waiting."""

    def close(self) -> None:
        """Release the executor's processes; no attempt is running."""


@dataclass
class Outcome:
    """How one attempt ended, as seen by the process that ran it."""

    index: int
    attempt: int
    ok: bool
    error: str = ""
    error_tail: str = ""
    staged: dict[str, str] = field(default_factory=dict)
    duration: float = 0.0
    timed_out: bool = False


def execute(step: Step, attempt: int, log_path: str | None = None,
            attempt_context: AttemptHook | None = None) -> Outcome:
    """Run one attempt of `step` here; exceptions become a failed Outcome.

    KeyboardInterrupt and SystemExit discard the attempt's writes and propagate.
    """
    task = step.task
    started = time.perf_counter()
    with staging_scope() as staging:
        context = attempt_context(step, attempt, log_path) if attempt_context else None
        try:
            with context if context is not None else contextlib.nullcontext():
                task.run()
        except BaseException as exc:
            staging.discard()
            if not isinstance(exc, Exception):
                raise
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            tail = f"{type(exc).__name__}: {exc}".strip().splitlines()
            return Outcome(
                step.index, attempt, False, error=text,
                error_tail=tail[-1] if tail else type(exc).__name__,
                duration=time.perf_counter() - started,
            )
        staged = {url: write.tmp_path for url, write in staging.pending.items()}
        staging.pending.clear()
    return Outcome(step.index, attempt, True, staged=staged,
                   duration=time.perf_counter() - started)


class InlineExecutor:
    """Runs each attempt at once, in this process: the fastest path for one worker."""

    inline = True

    def __init__(self, attempt_context: AttemptHook | None = None) -> None:
        self._done: list[Outcome] = []
        self._attempt_context = attempt_context
        self.running: dict[int, float] = {}

    def start(self, steps: list[Step]) -> None:
        self._steps = steps

    def free_slots(self) -> int:
        return 1

    def prefetch_limit(self) -> int:
        # Attempts follow each other at once: a batch of leases saves a round trip each.
        return 64

    def submit(self, step: Step, attempt: int, log_path: str | None = None,
               timeout: float | None = None) -> None:
        self.running[step.index] = time.monotonic()
        try:
            self._done.append(execute(step, attempt, log_path, self._attempt_context))
        finally:
            self.running.pop(step.index, None)

    def wait(self, timeout: float) -> list[Outcome]:
        done, self._done = self._done, []
        if not done and timeout > 0:
            time.sleep(timeout)
        return done

    def terminate(self, grace: float) -> None:
        self.running.clear()

    def kill_all(self) -> None:
        pass

    def close(self) -> None:
        pass


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the runner process dies (best effort)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _own_process_group() -> None:
    """Lead a process group of its own, so a kill reaches the task's child processes too.

    It also keeps a terminal's Ctrl-C away from workers: the runner decides what it does.
    """
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)


def _signal_group(process: Any, signum: int) -> None:
    """Send `signum` to a worker's process group, else to the worker alone."""
    pid = process.pid
    if pid is None:
        return
    try:
        os.killpg(pid, signum)  # the group outlives its leader while the task's children live
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


def _worker_main(conn: Any, steps: list[Step], attempt_context: AttemptHook | None) -> None:
    _die_with_parent()
    _own_process_group()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides what a Ctrl-C does

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            os._exit(0)
        if message is None:
            os._exit(0)
        index, attempt, log_path = message
        try:
            outcome = execute(steps[index], attempt, log_path, attempt_context)
        except KeyboardInterrupt:
            os._exit(130)
        try:
            conn.send(outcome)
        except (OSError, KeyboardInterrupt):
            os._exit(1)


class _Worker:
    def __init__(self, process: Any, conn: Any) -> None:
        self.process = process
        self.conn = conn
        self.index: int | None = None
        self.attempt = 0
        self.started = 0.0
        self.deadline: float | None = None


class ForkedExecutor:
    """A fixed set of forked worker processes; a timed-out attempt's worker is killed."""

    inline = False

    def __init__(self, workers: int, attempt_context: AttemptHook | None = None) -> None:
        import multiprocessing

        self._ctx = multiprocessing.get_context("fork")
        self._size = workers
        self._workers: list[_Worker] = []
        self._attempt_context = attempt_context
        self._steps: list[Step] = []
        self.running: dict[int, float] = {}

    def start(self, steps: list[Step]) -> None:
        self._steps = steps
        while len(self._workers) < self._size:
            self._workers.append(self._spawn())

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker_main, args=(child_conn, self._steps, self._attempt_context),
            daemon=True,
        )
        process.start()
        if process.pid is not None:  # also here: no window where a kill misses the group
            with contextlib.suppress(OSError):
                os.setpgid(process.pid, process.pid)
        child_conn.close()
        return _Worker(process, parent_conn)

    def free_slots(self) -> int:
        return sum(1 for w in self._workers if w.index is None)

    def prefetch_limit(self) -> int:
        return self.free_slots()

    def submit(self, step: Step, attempt: int, log_path: str | None = None,
               timeout: float | None = None) -> None:
        worker = next(w for w in self._workers if w.index is None)
        worker.index = step.index
        worker.attempt = attempt
        worker.started = time.monotonic()
        worker.deadline = worker.started + timeout if timeout else None
        self.running[step.index] = worker.started
        worker.conn.send((step.index, attempt, log_path))

    def wait(self, timeout: float) -> list[Outcome]:
        from multiprocessing.connection import wait as wait_any

        busy = [w for w in self._workers if w.index is not None]
        now = time.monotonic()
        deadlines = [w.deadline for w in busy if w.deadline is not None]
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - now))
        ready = wait_any([w.conn for w in busy], timeout) if busy else []
        if not busy and timeout > 0:
            time.sleep(timeout)
        outcomes: list[Outcome] = []
        for worker in busy:
            if worker.conn in ready:
                try:
                    outcomes.append(worker.conn.recv())
                except (EOFError, OSError):
                    outcomes.append(self._replace_dead(worker))
                    continue
                self._free(worker)
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.index is not None and worker.deadline is not None and now >= worker.deadline:
                outcomes.append(self._kill_timed_out(worker, now))
        return outcomes

    def _free(self, worker: _Worker) -> None:
        if worker.index is not None:
            self.running.pop(worker.index, None)
        worker.index = None
        worker.deadline = None

    def _replace(self, worker: _Worker) -> None:
        self._workers.remove(worker)
        with contextlib.suppress(Exception):
            worker.conn.close()
        self._workers.append(self._spawn())

    def _replace_dead(self, worker: _Worker) -> Outcome:
        worker.process.join(1.0)
        code = worker.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        index, attempt = worker.index, worker.attempt
        elapsed = time.monotonic() - worker.started
        self._free(worker)
        self._replace(worker)
        message = f"worker process died ({how})"
        return Outcome(index or 0, attempt, False, error=message, error_tail=message,
                       duration=elapsed)

    def _kill_timed_out(self, worker: _Worker, now: float) -> Outcome:
        index, attempt = worker.index, worker.attempt
        limit = (worker.deadline or now) - worker.started
        _signal_group(worker.process, signal.SIGKILL)
        worker.process.join(5.0)
        self._free(worker)
        self._replace(worker)
        message = f"timed out after {limit:g} s"
        return Outcome(index or 0, attempt, False, error=message, error_tail=message,
                       duration=now - worker.started, timed_out=True)

    def terminate(self, grace: float) -> None:
        """SIGTERM busy workers, SIGKILL those still alive after `grace` seconds."""
        busy = [w for w in self._workers if w.index is not None]
        for worker in busy:
            _signal_group(worker.process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for worker in busy:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            # SIGKILL the group even when the worker is gone: its task may have left children.
            _signal_group(worker.process, signal.SIGKILL)
            if worker.process.is_alive():
                worker.process.join(1.0)
            self._free(worker)

    def kill_all(self) -> None:
        """SIGKILL every worker and its children now, without waiting (a second Ctrl-C)."""
        for worker in self._workers:
            _signal_group(worker.process, signal.SIGKILL)

    def close(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(Exception):
                worker.conn.send(None)
        for worker in self._workers:
            worker.process.join(2.0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1.0)
            with contextlib.suppress(Exception):
                worker.conn.close()
        self._workers.clear()
