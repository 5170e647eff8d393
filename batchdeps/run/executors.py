"""Where a task attempt's `run()` executes: inline in this process, or in forked workers.

`Executor` is the interface the runner and the command line use; `InlineExecutor` and
`ForkedExecutor` implement it (`DaskExecutor`, in dask_executor.py, is a third). Executors
are found by name through an `ExecutorRegistry` ("inline", "local", "dask", and any an
installed package declares in the `batchdeps.executors` entry point group), each made from
one `ExecutorSettings` by its `from_settings()`, so a new kind needs no change to the runner.

An attempt runs inside a staging scope; its closed writes come back to the runner as that
`Staging` (each write with its target and storage options), which the runner commits or
discards after checking outputs and the lease. With no kind asked for, forked workers are
used when `workers > 1` or a task has a timeout (only a process can be killed), else the
inline executor; workers are forked after resolution, so a step travels as its index.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ExitCode, UsageError
from ..procinfo import current_pid
from ..targets import Staging, staging_scope

if TYPE_CHECKING:
    from ..dynamic import PausedRun
    from ..resolver import Plan, Step
    from ..task import Task

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
        """Prepare to run attempts of `steps` (a step is then named by its index).

        The list grows while the plan runs (the tasks a `run()` yields): a step past those
        there at the start comes to `submit` too. An attempt is run by `execute()`, which
        drives a yielding `run()` and reports the tasks it asks for in `Outcome.requested`.
        """

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
class ExecutorSettings:
    """Everything an executor kind may need to make itself for one run."""

    workers: int = 1
    plan: Plan | None = None
    attempt_context: AttemptHook | None = None
    #: the run's TaskLogs (None: output is not captured), for executors whose attempts run
    #: where the runner's log folder is not
    task_logs: Any = None
    run_id: str = ""
    kill_grace: float = 5.0
    task_defaults: dict[str, Any] = field(default_factory=dict)
    address: str | None = None  # an existing cluster's scheduler (dask)
    shared_paths: list[str] = field(default_factory=list)  # local folders every worker sees
    upload_pipelines: bool = False  # send single-file pipeline modules to the workers
    storage_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def any_timeout(self) -> bool:
        """Whether some step of the plan has a timeout (only a process can be killed)."""
        default = self.task_defaults.get("timeout")
        steps = self.plan.steps if self.plan is not None else ()
        # A timeout is a class's: each class of the plan asked once, not each step (a
        # generator over the steps is a Python call per step, twice a run)
        classes = {type(step.task) for step in steps}
        return any((getattr(cls, "timeout", None) or default) for cls in classes)


class ExecutorKind(Protocol):
    """An executor class as the registry knows it."""

    def from_settings(self, settings: ExecutorSettings) -> Executor:
        """An executor for one run."""


#: Built-in kinds: name -> "module:Class", imported when first asked for (dask only then).
BUILTIN_EXECUTORS: dict[str, str] = {
    "inline": "batchdeps.run.executors:InlineExecutor",
    "local": "batchdeps.run.executors:ForkedExecutor",
    "dask": "batchdeps.run.dask_executor:DaskExecutor",
}
ENTRY_POINT_GROUP = "batchdeps.executors"

#: How the error of an attempt whose worker process died begins.
WORKER_DIED = "worker process died"


class ExecutorRegistry:
    """Executor kinds by name, each a "module:Class" imported on first use.

    Names not built in are looked up in the `batchdeps.executors` entry point group
    (`ray = "mypkg.executor:RayExecutor"`), only when asked for.
    """

    def __init__(self, kinds: dict[str, str] | None = None, entry_points: bool = True) -> None:
        self.kinds = dict(BUILTIN_EXECUTORS if kinds is None else kinds)
        self.entry_points = entry_points

    def register(self, name: str, spec: str) -> None:
        self.kinds[name] = spec

    def names(self) -> list[str]:
        names = set(self.kinds)
        if self.entry_points:
            names.update(ep.name for ep in _entry_points())
        return sorted(names)

    def load(self, name: str) -> ExecutorKind:
        """The class of kind `name`; UsageError naming the known kinds when there is none."""
        import importlib

        spec = self.kinds.get(name)
        if spec is None and self.entry_points:
            spec = next((ep.value for ep in _entry_points() if ep.name == name), None)
        if spec is None:
            raise UsageError(f"unknown executor {name!r} (known: {', '.join(self.names())})")
        module, _, attribute = spec.partition(":")
        return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


#: The largest pickled exception a worker process sends back for FAILURE handlers.
MAX_EXCEPTION_BYTES = 1 << 20


@dataclass
class Outcome:
    """How one attempt ended, as seen by the process that ran it."""

    index: int
    attempt: int
    ok: bool
    error: str = ""  # one line, as in TaskResult.error
    traceback: str = ""  # the whole text, when run() raised
    staged: Staging = field(default_factory=Staging)  # committed or discarded by the runner
    duration: float = 0.0
    timed_out: bool = False
    worker_pid: int = 0  # the process that ran it (0: not known, e.g. a killed worker)
    #: tasks run() yielded that were not complete: the attempt stopped at the yield and
    #: asks for them (`ok` is False; see dynamic.py)
    requested: list[Task] = field(default_factory=list)
    #: that run() waits at the yield in this process, to be resumed (inline executor only)
    paused: PausedRun | None = None
    worker: str = ""  # where it ran, when not on this machine (a Dask worker's address)
    #: whether the attempt's log file was written, as its capture saw it (None: not known,
    #: e.g. a killed worker; the runner then looks at the file)
    log_written: bool | None = None
    #: what run() raised (for FAILURE handlers); from a worker process it travels pickled
    #: (`portable()`, `unpickled()`), and is None when it does not pickle
    exception: BaseException | bytes | None = None

    def portable(self) -> Outcome:
        """This outcome with its exception pickled, or dropped when it cannot be."""
        if isinstance(self.exception, BaseException):
            import pickle

            try:
                data = pickle.dumps(self.exception)
                pickle.loads(data)  # a class that pickles but cannot be rebuilt stays here
            except Exception:  # noqa: BLE001 - anything: the error text still goes
                self.exception = None
            else:  # one that holds a lot of data is not worth the pipe: its text goes
                self.exception = data if len(data) <= MAX_EXCEPTION_BYTES else None
        return self

    def unpickled(self) -> Outcome:
        """This outcome with the exception a worker process sent rebuilt (None if it fails)."""
        if isinstance(self.exception, bytes):
            import pickle

            try:
                self.exception = pickle.loads(self.exception)
            except Exception:  # noqa: BLE001 - a class this process cannot rebuild
                self.exception = None
        return self


def execute(step: Step, attempt: int, log_path: str | None = None,
            attempt_context: AttemptHook | None = None, *,
            paused: PausedRun | None = None, can_pause: bool = False) -> Outcome:
    """Run one attempt of `step` here; whatever `run()` raises becomes a failed Outcome.

    That includes SystemExit and other BaseExceptions (a task that calls `sys.exit()` fails,
    as in Luigi). Only KeyboardInterrupt, which is how a SIGINT or SIGTERM to the runner
    reaches an attempt running in its thread, discards the attempt's writes and propagates.

    A `run()` that yields tasks not complete ends the attempt with those tasks in
    `Outcome.requested`. With `can_pause` (the runner's own process) the generator and the
    staged writes come back in `Outcome.paused`, and `paused=` goes on from that yield;
    else the generator is closed and the writes are discarded (the next attempt runs
    `run()` from the top).
    """
    task = step.task
    started = time.perf_counter()
    generator: Generator[Any, Any, Any] | None = None
    with staging_scope(paused.staging if paused is not None else None) as staging:
        context = attempt_context(step, attempt, log_path) if attempt_context else None
        try:
            with context if context is not None else contextlib.nullcontext():
                waiting_for = None
                if paused is None:
                    returned = task.run()
                    # (None, the usual answer, spares the ABC's isinstance check)
                    if returned is not None and isinstance(returned, Generator):
                        generator = returned
                else:
                    generator, waiting_for = paused.generator, paused.waiting_for
                if generator is not None:
                    from ..dynamic import PausedRun, drive

                    waiting_for = drive(generator, waiting_for)
                    if waiting_for is not None and not can_pause:
                        generator.close()  # its finally blocks run inside the attempt
        except BaseException as exc:
            staging.discard()
            if generator is not None:
                with contextlib.suppress(BaseException):
                    generator.close()
            if isinstance(exc, KeyboardInterrupt):
                raise
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            return Outcome(step.index, attempt, False, error=_last_line(exc), traceback=text,
                           duration=time.perf_counter() - started, worker_pid=current_pid(),
                           exception=exc)
    if waiting_for is not None:
        paused_run = None
        if can_pause:
            assert generator is not None
            paused_run = PausedRun(generator, staging, waiting_for)
        else:
            staging.discard()
        wanted = waiting_for.flat_requirements
        return Outcome(step.index, attempt, False,
                       error=f"run() yielded {len(wanted)} task(s) not complete yet",
                       duration=time.perf_counter() - started, worker_pid=current_pid(),
                       requested=wanted, paused=paused_run)
    return Outcome(step.index, attempt, True, staged=staging,
                   duration=time.perf_counter() - started, worker_pid=current_pid(),
                   log_written=getattr(context, "wrote", None))


def _last_line(exc: BaseException) -> str:
    """`Type: message` on one line, e.g. "SystemExit: 3" (only the type when no message)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__


class InlineExecutor:
    """Runs each attempt at once, in this process: the fastest path for one worker.

    A stop unwinds the attempt with KeyboardInterrupt; `terminate()` then ends the processes
    the attempt started (children, and their orphans: this process is made their
    subreaper), as forked mode kills a worker's process group.
    """

    inline = True

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> InlineExecutor:
        """Refused for several workers or a task with a timeout: only a process can be
        killed, and one attempt runs at a time here."""
        if settings.workers > 1:
            raise UsageError(f"--executor inline runs one attempt at a time; with --workers "
                             f"{settings.workers} use --executor local")
        if settings.any_timeout():
            raise UsageError("--executor inline cannot stop a task at its timeout (only a "
                             "process can be killed): use --executor local")
        return cls(settings.attempt_context)

    def __init__(self, attempt_context: AttemptHook | None = None) -> None:
        self._done: list[Outcome] = []
        self._attempt_context = attempt_context
        self.running: dict[int, float] = {}
        self._attempt_born = 0.0  # CLOCK_BOOTTIME seconds when the last attempt started
        self._run_born = 0.0  # ... when start() was called
        self._interrupted = False
        self._subreaper: bool | None = None  # None: not asked yet (a run with nothing to do)
        #: run()s stopped at a yield, by step index: the step's next submit resumes it
        self._paused: dict[int, PausedRun] = {}

    def start(self, steps: list[Step]) -> None:
        self._steps = steps
        self._run_born = _boot_clock()

    def free_slots(self) -> int:
        return 1

    def prefetch_limit(self) -> int:
        # Attempts follow each other at once: a batch of leases saves a round trip each.
        return 64

    def submit(self, step: Step, attempt: int, log_path: str | None = None,
               timeout: float | None = None) -> None:
        self.running[step.index] = time.monotonic()
        if self._subreaper is None:  # at the first attempt: ctypes only where a task runs
            self._subreaper = _set_child_subreaper(True)
        self._attempt_born = _boot_clock()
        paused = self._paused.pop(step.index, None)
        if paused is not None and paused.closed:  # given up meanwhile: from the top
            paused = None
        try:
            outcome = execute(step, attempt, log_path, self._attempt_context, paused=paused,
                              can_pause=True)
            if outcome.paused is not None:
                self._paused[step.index] = outcome.paused
            self._done.append(outcome)
        except KeyboardInterrupt:
            self._interrupted = True
            raise
        finally:
            self.running.pop(step.index, None)

    def wait(self, timeout: float) -> list[Outcome]:
        done, self._done = self._done, []
        if not done and timeout > 0:
            time.sleep(timeout)
        return done

    def terminate(self, grace: float) -> None:
        """SIGTERM what the interrupted attempt started, SIGKILL it after `grace` seconds."""
        self.running.clear()
        if self._interrupted:
            self._interrupted = False
            end_process_tree(self._attempt_born, grace)

    def kill_all(self) -> None:
        for pid in _descendants(os.getpid(), self._attempt_born):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        paused, self._paused = self._paused, {}
        for run in paused.values():
            run.close()
        if self._subreaper:
            self._subreaper = False
            _set_child_subreaper(False)
            # Orphans adopted during the run that have exited: collect them, so a long-lived
            # program that calls bd.build() is not left with their zombies.
            _reap(_descendants(os.getpid(), self._run_born, zombies=True))


def _boot_clock() -> float:
    """Seconds since boot, the clock of a process's start time in /proc (0.0 elsewhere)."""
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return 0.0


def _set_child_subreaper(on: bool) -> bool:
    """Make orphans of this process's descendants its children (Linux), so they can be found."""
    if not os.path.isdir("/proc/self"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(36, int(on), 0, 0, 0) == 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:  # noqa: BLE001 - best effort: without it, orphans are not found
        return False


def _descendants(root: int, born_since: float, *, zombies: bool = False) -> list[int]:
    """Pids of `root`'s descendants that started at or after `born_since` (boot seconds).

    Read from /proc (an empty list where there is none). The start-time filter keeps out
    processes the caller started before the attempt (say, a server in the same program).
    Dead ones not yet collected are left out, or with `zombies`, are all that is listed.
    """
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    since = born_since * os.sysconf("SC_CLK_TCK") - 1  # a tick of slack: both round down
    children: dict[int, list[int]] = {}
    alive: dict[int, bool] = {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()  # after "pid (comm) "
        if int(fields[19]) < since:
            continue
        pid = int(name)
        children.setdefault(int(fields[1]), []).append(pid)
        alive[pid] = fields[0] != b"Z"
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return [pid for pid in found if alive[pid] != zombies]


def end_process_tree(born_since: float, grace: float) -> None:
    """SIGTERM this process's descendants born since `born_since`; SIGKILL them after `grace`.

    Dead children among them are collected, so none is left as a zombie.
    """
    me = os.getpid()
    pids = _descendants(me, born_since)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        _reap(_descendants(me, born_since, zombies=True))
        pids = _descendants(me, born_since)
        if pids:
            time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for _ in range(20):
        _reap(_descendants(me, born_since, zombies=True))
        if not _descendants(me, born_since):
            break
        time.sleep(0.05)


def _reap(pids: list[int]) -> None:
    """Collect the exit status of those of `pids` that are this process's children."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


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


def _worker_main(conn: Any, steps: list[Step] | None,
                 attempt_context: AttemptHook | None,
                 storage_options: dict[str, dict[str, Any]] | None = None) -> None:
    """A worker's loop: run the attempts the runner sends until told to stop.

    Forked from the runner, it has the plan (`steps`) and gets step indexes; started by the
    fork server (`steps` is None), it gets each attempt's task with the message, and the
    run's `[storage.*]` options, which a process that was not forked from the runner lacks.
    """
    if storage_options is not None:
        from ..targets import default_storage

        default_storage.configure(storage_options)
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
            os._exit(ExitCode.OK)
        if message is None:
            os._exit(ExitCode.OK)
        index, attempt, log_path, task = message
        step: Any = steps[index] if task is None and steps is not None else _SentStep(index, task)
        try:
            outcome = execute(step, attempt, log_path, attempt_context)
        except KeyboardInterrupt:
            os._exit(ExitCode.INTERRUPTED)
        try:
            conn.send(outcome.portable())
        except (OSError, KeyboardInterrupt):
            os._exit(ExitCode.FAILED)


@dataclass
class _SentStep:
    """What `execute()` needs of a step, for a worker that has no plan."""

    index: int
    task: Any

    @property
    def task_id(self) -> str:
        return str(self.task.task_id)


def _other_threads() -> bool:
    """True when this process runs more than one thread (C threads included, on Linux).

    Forking then copies locks some other thread may hold: Python 3.12 warns about it.
    """
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return int(fields[17]) > 1  # num_threads
    except (OSError, IndexError, ValueError):
        import threading

        return threading.active_count() > 1


def _storage_options() -> dict[str, dict[str, Any]]:
    from ..targets import default_storage

    return default_storage.options


class _Worker:
    def __init__(self, process: Any, conn: Any, has_plan: bool) -> None:
        self.process = process
        self.conn = conn
        self.has_plan = has_plan  # forked from the runner: a step travels as its index
        self.index: int | None = None
        self.attempt = 0
        self.started = 0.0
        self.deadline: float | None = None


class ForkedExecutor:
    """A fixed set of worker processes; a timed-out attempt's worker is killed and replaced.

    A worker is forked from the runner while the runner has one thread: it then shares the
    plan, and starts at once. Once the runner has other threads (a lock-server heartbeat,
    fsspec's I/O loop), forking could copy a lock another thread holds, so workers start
    from multiprocessing's fork server instead and get each attempt's task pickled (task
    classes must then be importable: defined at a module's top level).
    """

    inline = False

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> ForkedExecutor:
        return cls(max(1, settings.workers), settings.attempt_context)

    def __init__(self, workers: int, attempt_context: AttemptHook | None = None) -> None:
        import multiprocessing
        import pickle

        self._pickling_error = pickle.PicklingError

        self._ctx = multiprocessing.get_context("fork")
        self._server_ctx = multiprocessing.get_context("forkserver")
        self._unsent: list[Outcome] = []  # attempts that could not be sent to a worker
        self._size = workers
        self._workers: list[_Worker] = []
        self._attempt_context = attempt_context
        self._steps: list[Step] = []
        self._forked_steps = 0
        self.running: dict[int, float] = {}

    def start(self, steps: list[Step]) -> None:
        self._steps = steps
        self._forked_steps = len(steps)  # steps a forked worker knows by index
        while len(self._workers) < self._size:
            self._workers.append(self._spawn())

    def _spawn(self) -> _Worker:
        forked = not _other_threads()
        ctx: Any = self._ctx if forked else self._server_ctx
        parent_conn, child_conn = ctx.Pipe()
        process = ctx.Process(
            target=_worker_main,
            args=(child_conn, self._steps if forked else None, self._attempt_context,
                  None if forked else _storage_options()),
            daemon=True,
        )
        process.start()
        if forked and process.pid is not None:  # no window where a kill misses the group
            with contextlib.suppress(OSError):
                os.setpgid(process.pid, process.pid)
        child_conn.close()
        return _Worker(process, parent_conn, forked)

    def free_slots(self) -> int:
        return sum(1 for w in self._workers if w.index is None)

    def prefetch_limit(self) -> int:
        # The free slots and one more round for every worker: the leases of the steps that
        # start next are taken while the current ones run, so a slot that frees up starts
        # its next step without waiting for the lock server.
        return self.free_slots() + len(self._workers)

    def submit(self, step: Step, attempt: int, log_path: str | None = None,
               timeout: float | None = None) -> None:
        worker = next(w for w in self._workers if w.index is None)
        worker.index = step.index
        worker.attempt = attempt
        worker.started = time.monotonic()
        worker.deadline = worker.started + timeout if timeout else None
        self.running[step.index] = worker.started
        try:
            # A step added to the plan while it runs (a dynamic dependency) is not in the
            # plan a worker was forked with: its task goes with the message.
            known = worker.has_plan and step.index < self._forked_steps
            worker.conn.send((step.index, attempt, log_path, None if known else step.task))
        except (self._pickling_error, AttributeError, TypeError) as exc:
            # Only a worker from the fork server needs the task pickled; nothing was sent.
            self._free(worker)
            message = (f"cannot hand {step.task_id} to a worker process ({exc}); with "
                       "threads running, workers start from a fork server, so task "
                       "classes must be defined at the top level of an importable module")
            self._unsent.append(Outcome(step.index, attempt, False, error=message))

    def wait(self, timeout: float) -> list[Outcome]:
        from multiprocessing.connection import wait as wait_any

        if self._unsent:
            unsent, self._unsent = self._unsent, []
            return unsent
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
                    outcomes.append(worker.conn.recv().unpickled())
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
        message = f"{WORKER_DIED} ({how})"
        return Outcome(index or 0, attempt, False, error=message,
                       duration=elapsed)

    def _kill_timed_out(self, worker: _Worker, now: float) -> Outcome:
        index, attempt = worker.index, worker.attempt
        limit = (worker.deadline or now) - worker.started
        _signal_group(worker.process, signal.SIGKILL)
        worker.process.join(5.0)
        self._free(worker)
        self._replace(worker)
        message = f"timed out after {limit:g} s"
        return Outcome(index or 0, attempt, False, error=message,
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
