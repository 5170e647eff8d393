"""The worker side of the Dask executor: one attempt in a process of its own on a Dask worker.

`run_attempt(request)` is the function the runner submits to Dask, once per attempt. It runs
in a Dask worker's thread and hands the attempt to an *attempt process*: a child that this
thread keeps (started with `python -m batchdeps.run.dask_attempt`, in a session of its own)
and reuses from one attempt to the next, so that an attempt can be stopped with its
children (a signal to the process group) without touching the Dask worker. The thread
watches the attempt and ends its process group when

* the attempt's timeout passes (SIGKILL, as the local executor does; "timed out after N s"),
* Dask no longer wants the result (the runner cancelled it on a stop, or the runner's
  client went away: SIGTERM, then SIGKILL after the grace period).

The attempt process dies with its worker: it watches its parent and kills its own group
when the parent is gone (kill -9 of a Dask worker). Its writes are staged where the
runner can commit them (`Staging.hand_over`: S3 writes become staging objects); the reply
carries that Staging, the attempt's captured output and the worker's address. Nothing here
commits: the runner checks the lease and commits.

This module imports `distributed` only inside `run_attempt`, so the attempt process does
not load it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ExitCode
from .executors import Outcome, _SentStep, execute

#: Seconds between looks at the attempt (finished? timed out? still wanted?).
POLL = 0.02
#: The event topic on which workers tell the runner where an attempt runs and that a
#: stopped one is gone (`<topic>-<run_id>`).
TOPIC = "batchdeps"


@dataclass
class AttemptRequest:
    """What one attempt needs on a worker; the task travels pickled, unpickled there."""

    run_id: str
    index: int
    attempt: int
    task_id: str
    module: str  # the task class's module, for the message when a worker lacks it
    task_bytes: bytes
    timeout: float | None = None
    kill_grace: float = 5.0
    storage_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    cwd: str = ""  # the runner's folder: relative paths mean the same there
    log_mode: str | None = None  # the runner's task log mode; None: output not captured
    log_level: int = 20


@dataclass
class AttemptReply:
    """How the attempt ended, and what it printed (for the runner's log folder)."""

    outcome: Outcome
    log_text: str = ""


# -- in the Dask worker ------------------------------------------------------------------
def run_attempt(request: AttemptRequest) -> AttemptReply | None:
    """Run one attempt in this thread's attempt process; None when Dask no longer wants it."""
    from distributed import get_worker
    from distributed.worker import thread_state

    worker = get_worker()
    where = str(worker.address)
    key = getattr(thread_state, "key", None)
    topic = f"{TOPIC}-{request.run_id}"
    with contextlib.suppress(Exception):
        worker.log_event(topic, {"key": key, "worker": where, "started": True})
    started = time.monotonic()

    def failed(error: str, **extra: Any) -> AttemptReply:
        return AttemptReply(Outcome(request.index, request.attempt, False, error=error,
                                    duration=time.monotonic() - started, worker=where,
                                    **extra))

    try:
        pickle.loads(request.task_bytes)
    except (ImportError, AttributeError) as exc:
        return failed(f"Dask worker {where} cannot import module {request.module!r} of "
                      f"{request.task_id} ({type(exc).__name__}: {exc}); install the "
                      f"pipeline on every worker, or use --upload-pipelines")
    child = _child_of_this_thread(worker)
    log_dir = os.path.join(str(worker.local_directory), "batchdeps-logs", request.run_id)
    log_path = (os.path.join(log_dir, f"{request.index}-{request.attempt}.log")
                if request.log_mode not in (None, "off") else None)
    try:
        child.send((request, log_dir, log_path, list(sys.path)))
    except OSError as exc:
        child.kill()
        return failed(f"cannot start the attempt process on Dask worker {where}: {exc}")
    deadline = started + request.timeout if request.timeout else None
    while True:
        try:
            answer = child.receive(POLL)
        except EOFError:
            code = child.kill()
            how = f"killed by signal {-code}" if code is not None and code < 0 \
                else f"exit code {code}"
            return failed(f"the attempt's process on Dask worker {where} died ({how})",
                          worker_pid=child.pid)
        if answer is not None:
            outcome: Outcome = answer
            outcome.worker = where
            return AttemptReply(outcome, _take_log(log_path))
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            pid = child.pid
            child.kill()
            text = _take_scratch(log_dir, pid, request.run_id)
            reply = failed(f"timed out after {request.timeout:g} s", timed_out=True,
                           worker_pid=pid)
            reply.log_text = text
            return reply
        if not _still_wanted(worker, key):
            child.stop(request.kill_grace)
            with contextlib.suppress(Exception):
                worker.log_event(topic, {"key": key, "worker": where, "stopped": True})
            return None


def _still_wanted(worker: Any, key: Any) -> bool:
    """False once Dask released or cancelled this task (the runner cancelled it, or the
    runner's client is gone)."""
    if key is None:
        return True
    state = worker.state.tasks.get(key)
    return state is not None and state.state not in ("cancelled", "released", "forgotten")


def _take_log(log_path: str | None) -> str:
    if log_path is None:
        return ""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return ""
    with contextlib.suppress(OSError):
        os.unlink(log_path)
    return text


def _take_scratch(log_dir: str, pid: int, run_id: str) -> str:
    """What a killed attempt printed: its process's scratch file (see report/tasklogs.py)."""
    from ..report.tasklogs import SCRATCH_DIR

    return _take_log(os.path.join(log_dir, SCRATCH_DIR, run_id, f"{pid}.log"))


class _Child:
    """One attempt process and the pipes to it (length-prefixed pickles)."""

    def __init__(self, worker: Any) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        env = dict(os.environ)
        # The worker's import path, with the folder --upload-pipelines sends files to.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "batchdeps.run.dask_attempt", str(to_child_r),
             str(from_child_w)],
            pass_fds=(to_child_r, from_child_w), start_new_session=True, env=env,
            stdin=subprocess.DEVNULL, cwd=str(worker.local_directory))
        os.close(to_child_r)
        os.close(from_child_w)
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, message: Any) -> None:
        _send(self._to_child, message)

    def receive(self, timeout: float) -> Any:
        """The child's answer, None if none came within `timeout`; EOFError if it died."""
        ready, _, _ = select.select([self._from_child], [], [], timeout)
        if not ready:
            return None
        return _receive(self._from_child)

    def stop(self, grace: float) -> None:
        """SIGTERM the attempt's process group (the attempt discards its writes), SIGKILL
        it after `grace` seconds."""
        _signal_group(self.pid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self) -> int | None:
        """SIGKILL the process group (the task's children too); the exit code."""
        _signal_group(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5.0)
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        _children.pop(threading.get_ident(), None)
        return self.process.returncode


#: Dask worker thread -> its attempt process.
_children: dict[int, _Child] = {}


def _child_of_this_thread(worker: Any) -> _Child:
    child = _children.get(threading.get_ident())
    if child is None or not child.alive():
        child = _children[threading.get_ident()] = _Child(worker)
    return child


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signum)


def _send(fd: int, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(struct.pack("!Q", len(data)) + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _receive(fd: int) -> Any:
    header = _read_exactly(fd, 8)
    (size,) = struct.unpack("!Q", header)
    return pickle.loads(_read_exactly(fd, size))


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


# -- in the attempt process --------------------------------------------------------------
def _watch_parent() -> None:
    """Kill this process group when the Dask worker that started it is gone."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.1)
            if os.getppid() != parent:
                _signal_group(os.getpid(), signal.SIGKILL)
                os._exit(ExitCode.FAILED)

    threading.Thread(target=watch, daemon=True, name="batchdeps-watch-parent").start()


def _attempt_loop(read_fd: int, write_fd: int) -> None:
    """Run the attempts the worker thread sends, one at a time, until the pipe closes."""
    from ..targets import default_storage

    _watch_parent()

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configured: Any = None
    task_logs: dict[tuple[str, str, int], Any] = {}
    while True:
        try:
            request, log_dir, log_path, worker_path = _receive(read_fd)
        except (EOFError, OSError, KeyboardInterrupt):
            os._exit(ExitCode.OK)
        # Folders the worker's import path gained since (Client.upload_file's among them).
        sys.path[:0] = [entry for entry in worker_path if entry not in sys.path]
        if request.storage_options != configured:
            default_storage.configure(request.storage_options)
            configured = request.storage_options
        if request.cwd and os.path.isdir(request.cwd):
            os.chdir(request.cwd)
        context = None
        if log_path is not None:
            from ..report.tasklogs import TaskLogs

            logs_key = (log_dir, str(request.log_mode), request.log_level)
            logs = task_logs.get(logs_key)
            if logs is None:
                logs = task_logs[logs_key] = TaskLogs(log_dir, request.log_mode,
                                                      request.log_level, request.run_id)
            context = logs.attempt_context
        try:
            step = _SentStep(request.index, pickle.loads(request.task_bytes))
            outcome = execute(step, request.attempt, log_path, context)  # type: ignore[arg-type]
            if outcome.ok:
                try:
                    outcome.staged.hand_over()
                except Exception as exc:  # noqa: BLE001 - the attempt fails, with the reason
                    outcome = Outcome(request.index, request.attempt, False,
                                      error=f"{type(exc).__name__}: {exc}".splitlines()[0],
                                      duration=outcome.duration, worker_pid=os.getpid())
        except KeyboardInterrupt:
            os._exit(ExitCode.INTERRUPTED)
        except BaseException as exc:  # noqa: BLE001 - unpickling failed here: say so
            outcome = Outcome(request.index, request.attempt, False,
                              error=f"{type(exc).__name__}: {exc}".splitlines()[0],
                              worker_pid=os.getpid())
        try:
            _send(write_fd, outcome.portable())
        except (OSError, KeyboardInterrupt):
            os._exit(ExitCode.FAILED)


if __name__ == "__main__":  # pragma: no cover - the attempt process
    _attempt_loop(int(sys.argv[1]), int(sys.argv[2]))
