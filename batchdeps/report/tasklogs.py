"""Per-attempt task logs: a task's stdout, stderr and logging captured into a file of its own.

Layout: `<log_dir>/<family>/<params>/<run_id>/<attempt>.log`, where `<params>` is the task's
parameters made safe as one path component (`day=2026-11-24,root=data`). Each run keeps its
own folder, so a rerun never overwrites the logs of the run before; run folders older than
the history's retention are removed at the end of a run (at most once an hour).

Capture redirects file descriptors 1 and 2, so output of child processes and C code is
caught too, into one *scratch* file per process that is truncated and reused for every
attempt. Only when an attempt wrote something or failed (mode "auto") is the scratch copied
to the attempt's log file, so a run of many quiet tasks pays a few system calls per attempt
and no file each; mode "always" keeps a file for every attempt. Where the process is ours
(a worker, or the command line's runner: `hold_fds`), fds 1 and 2 stay on the scratch file
from one attempt to the next instead of being put back and pointed away again each time (six
system calls an attempt); anything that lands on them between attempts is passed on to the
real stderr, and `release()` puts them back. A worker killed in the middle
of an attempt (timeout, stop) cannot copy its own scratch file: the runner's process does it
when it hears of the failed attempt (`AttemptFailed`), and appends the reason to the log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import shutil
import signal
import sys
import time
import traceback
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..procinfo import current_pid, hostname
from .events import AttemptFailed, Event, RunFinished, RunStarted

if TYPE_CHECKING:
    from ..resolver import Step

MODES = ("auto", "always", "off")
SCRATCH_DIR = ".scratch"
SCRATCH_MAX_AGE = 24 * 3600.0  # a scratch folder untouched this long belongs to a dead run
PRUNE_MARKER = ".pruned"  # its mtime: when old run folders were last removed
PRUNE_EVERY = 3600.0
_MAX_COMPONENT = 150
_SAFE_CHARS = "=,+-_@"
#: ASCII characters `quote(text, safe=_SAFE_CHARS)` encodes, each to its `%XX`.
_ASCII_QUOTED = {code: f"%{code:02X}" for code in range(128) if not (
    chr(code).isalnum() or chr(code) in "_.-~" + _SAFE_CHARS)}


def percent_encoded(text: str) -> str:
    """`urllib.parse.quote(text, safe="=,+-_@")`: the same text; ASCII text is encoded by
    one `str.translate` (quote() calls a function per character: a few microseconds of
    every attempt for a long task id), other text by quote() itself."""
    if text.isascii():
        return text.translate(_ASCII_QUOTED)
    from urllib.parse import quote

    return quote(text, safe=_SAFE_CHARS)
_COPY_CHUNK = 1 << 20
#: the scratch file of a process whose fds 1 and 2 stay on it grows from one attempt to
#: the next and is emptied at the first attempt after it passed this size
SCRATCH_KEEP = 1 << 20


def safe_params_component(task_id: str) -> str:
    """The parameter part of `task_id` as one filesystem-safe path component.

    `Family(a=1, b=x/y)` gives `a=1,b=x%2Fy`; a task without parameters gives `_`. Unsafe
    characters are percent-encoded; an overlong result is cut and ends in a digest of the
    full task id, so distinct tasks keep distinct folders.
    """
    start = task_id.find("(")
    params = task_id[start + 1 : -1] if start >= 0 and task_id.endswith(")") else task_id
    if not params:
        return "_"
    safe = percent_encoded(params.replace(", ", ","))
    if safe.startswith("."):
        safe = "%2E" + safe[1:]
    if len(safe) > _MAX_COMPONENT:
        digest = hashlib.sha1(task_id.encode("utf-8")).hexdigest()[:12]
        safe = f"{safe[: _MAX_COMPONENT - 13]}-{digest}"
    return safe


class _FdStream:
    """A text stream that writes straight to file descriptor 2 (wherever it points now)."""

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "replace")
        while data:
            written = os.write(2, data)
            data = data[written:]
        return len(text)

    def flush(self) -> None:
        pass


_clock_text: tuple[int, str] = (-1, "")


def _now_text() -> str:
    """The local time to the second with its UTC offset, made once per second (a run of
    quick tasks starts hundreds of attempts within one)."""
    global _clock_text
    second = int(time.time())
    if _clock_text[0] != second:
        moment = dt.datetime.fromtimestamp(second).astimezone()
        _clock_text = (second, moment.isoformat(timespec="seconds"))
    return _clock_text[1]


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed or odd stream must not fail the task
                pass


class TaskLogs:
    """Captures each attempt into its log file; also a listener of the runner's events.

    Args:
        log_dir: root folder of the logs (made when the first log is written).
        mode: "auto" (a file when the attempt wrote something or failed), "always", "off".
        level: lowest level of the task's `logging` records that go into its log.
        run_id: the run's id: the folder of this run's logs, and in each log's first line.
        retention: seconds a run's logs are kept (None: for ever).
    """

    def __init__(self, log_dir: str, mode: str = "auto", level: int = logging.INFO,
                 run_id: str = "", retention: float | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"task log mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.log_dir = os.path.abspath(log_dir)
        self.mode = mode
        self.level = level
        self.run_id = run_id
        self.retention = retention
        self.host = hostname()
        self._pid = -1
        self._scratch_fd = -1
        self._saved_fds = (-1, -1)
        self._handler: logging.Handler | None = None
        self._fd_streams: tuple[Any, Any] = (None, None)
        self._saved_streams: tuple[Any, Any] = (None, None)
        #: keep fds 1 and 2 on the scratch file between attempts in the process that made
        #: this object (forked and fork-server workers always do: attempts are all they run)
        self.hold_fds = False
        self._owner_pid = current_pid()
        self._held = False  # fds 1 and 2 point at the scratch file now, between attempts
        self._scratch_end = 0  # the scratch file's size when the last attempt ended
        #: `path()`'s table of family folders (`log_dir/family/`), for the run id it was
        #: made for, and whether that id joins as plain text
        self._family_dirs: dict[str, str] = {}
        self._path_run = ""
        self._plain_run = True

    # -- paths ------------------------------------------------------------------------
    def path(self, family: str, task_id: str, attempt: int) -> str:
        """`log_dir/family/params/run/attempt.log`, as `os.path.join` makes it.

        Made for every attempt: each family's folder is joined once, and the rest is put
        together by one format, where that is what `os.path.join` would give (the params
        part is never empty nor begins with a slash; a run id is looked at once).
        """
        run = self.run_id or "run"
        if run != self._path_run:
            self._path_run = run
            self._family_dirs = {}
            self._plain_run = not (run.startswith("/") or run.endswith("/"))
        if not self._plain_run:
            return os.path.join(self.log_dir, family, safe_params_component(task_id), run,
                                f"{attempt}.log")
        folder = self._family_dirs.get(family)
        if folder is None:
            folder = self._family_dirs[family] = os.path.join(self.log_dir, family, "")
        return f"{folder}{safe_params_component(task_id)}/{run}/{attempt}.log"

    def path_for(self, step: Step, attempt: int) -> str | None:
        """The log file of one attempt (for `RunOptions.log_path_for`)."""
        if self.mode == "off":
            return None
        return self.path(step.task.family(), step.task.task_id, attempt)

    def _scratch_dir(self) -> str:
        return os.path.join(self.log_dir, SCRATCH_DIR, self.run_id or "run")

    # -- capture (runs where the attempt runs: a forked worker or this process) ----------
    def attempt_context(self, step: Step, attempt: int, log_path: str | None) -> Any:
        """A context manager around one attempt's `run()` (the executors' hook)."""
        if self.mode == "off" or log_path is None:
            return None
        return _Capture(self, step.task.task_id, attempt, log_path)

    def _prepare_process(self) -> int:
        """Open this process's scratch file and keep its original fds 1 and 2 (once)."""
        pid = current_pid()
        if self._pid != pid:
            directory = self._scratch_dir()
            os.makedirs(directory, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
            self._scratch_fd = os.open(os.path.join(directory, f"{pid}.log"), flags, 0o644)
            self._saved_fds = (os.dup(1), os.dup(2))
            for fd in self._saved_fds:
                os.set_inheritable(fd, False)
            handler = logging.StreamHandler(_FdStream())  # type: ignore[arg-type]
            handler.setLevel(self.level)
            handler.setFormatter(logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
            self._handler = handler
            # print() goes to sys.stdout, which need not be fd 1 (a notebook, a test
            # runner): during an attempt sys.stdout/err are text streams on fds 1 and 2.
            self._fd_streams = (  # open for the life of the process, closed by no one
                open(1, "w", buffering=1, closefd=False, errors="backslashreplace"),  # noqa: SIM115
                open(2, "w", buffering=1, closefd=False, errors="backslashreplace"),  # noqa: SIM115
            )
            root = logging.getLogger()
            self._root_level: int | None = None
            if root.getEffectiveLevel() > self.level:
                self._root_level = root.level  # put back when the run's capture closes
                root.setLevel(self.level)  # once per process: setLevel clears logging's caches
            self._held = False  # a new process (a worker) starts with its fds where they are
            self._scratch_end = 0
            self._pid = pid
        return self._scratch_fd

    def _pass_on_strays(self) -> None:
        """Copy to the real stderr what reached fds 1 and 2 since the last attempt ended."""
        size = os.fstat(self._scratch_fd).st_size
        with contextlib.suppress(OSError):  # a closed stderr: nothing to pass on to
            _copy_range(self._scratch_fd, self._saved_fds[1], self._scratch_end, size)
        self._scratch_end = size

    def release(self) -> None:
        """Point fds 1 and 2 back where they were, if attempts left them on the scratch file
        (the end of a run; before this process prints anything of its own)."""
        if not self._held or self._pid != current_pid():
            return
        _flush_std_streams()
        self._pass_on_strays()
        _put_back_fds(self._saved_fds)
        self._held = False

    def header(self, task_id: str, attempt: int) -> str:
        return f"# {task_id} attempt {attempt} of run {self.run_id} on {self.host}"

    # -- the listener side (the runner's process) ----------------------------------------
    #: the events the listener side acts on (a task's own start and end are not among them)
    listens_to = (RunStarted, AttemptFailed, RunFinished)

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.run_id = self.run_id or event.run_id
            self._remove_abandoned_scratch()
        elif isinstance(event, AttemptFailed) and event.log_path and self.mode != "off":
            self._note_failure(event)
        elif isinstance(event, RunFinished):
            self.release()
            self._close_scratch()
            if self.retention is not None:
                self.prune(self.retention)

    def prune(self, retention: float, every: float = PRUNE_EVERY) -> int:
        """Remove run folders (and loose logs) untouched for `retention` seconds; skipped
        when the last pruning was less than `every` seconds ago. Returns folders removed."""
        marker = os.path.join(self.log_dir, PRUNE_MARKER)
        now = time.time()
        try:
            if now - os.stat(marker).st_mtime < every:
                return 0
        except OSError:
            pass
        try:
            with open(marker, "w"):
                pass
        except OSError:
            return 0  # no log folder yet, or not ours to write
        cutoff = now - retention
        removed = 0
        for family in _subdirs(self.log_dir):
            if os.path.basename(family) == SCRATCH_DIR:
                continue
            for params in _subdirs(family):
                for entry in os.scandir(params):
                    try:
                        if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path, ignore_errors=True)
                            removed += 1
                        elif entry.name.endswith(".log"):  # the layout before run folders
                            os.unlink(entry.path)
                    except OSError:
                        continue
                _remove_if_empty(params)
            _remove_if_empty(family)
        return removed

    def _note_failure(self, event: AttemptFailed) -> None:
        """Make sure a failed attempt's log exists, holds what it wrote, and says why."""
        path = event.log_path
        assert path is not None
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            scratch = self._find_scratch(event.task_id, event.attempt)
            if scratch is not None:
                _copy_from(scratch[0], scratch[1], path)
            else:
                with open(path, "w", encoding="utf-8") as log_file:
                    log_file.write(self.header(event.task_id, event.attempt) + "\n")
        with open(path, "a", encoding="utf-8") as log_file:
            log_file.write(f"# attempt {event.attempt} failed: {event.error}\n")

    def _find_scratch(self, task_id: str, attempt: int) -> tuple[str, int] | None:
        """The scratch file a killed worker left for this attempt and where the attempt's
        part of it begins (the last header of the attempt in it), if any."""
        prefix = (self.header(task_id, attempt) + ",").encode("utf-8")
        directory = self._scratch_dir()
        try:
            names = os.listdir(directory)
        except OSError:
            return None
        for name in names:
            candidate = os.path.join(directory, name)
            try:
                with open(candidate, "rb") as handle:
                    content = handle.read()
            except OSError:
                continue
            if content.startswith(prefix):
                at = 0
            else:
                at = content.rfind(b"\n" + prefix)
                if at < 0:
                    continue
                at += 1
            return candidate, at
        return None

    def _remove_abandoned_scratch(self, max_age: float = SCRATCH_MAX_AGE) -> None:
        """Remove scratch folders of runs killed with -9 (untouched for `max_age` s)."""
        root = os.path.join(self.log_dir, SCRATCH_DIR)
        try:
            runs = os.listdir(root)
        except OSError:
            return
        now = time.time()
        for run in runs:
            folder = os.path.join(root, run)
            try:
                newest = max([os.stat(folder).st_mtime] + [
                    entry.stat().st_mtime for entry in os.scandir(folder)])
            except OSError:
                continue
            if now - newest > max_age:
                shutil.rmtree(folder, ignore_errors=True)

    def _close_scratch(self) -> None:
        self.release()
        if self._pid == current_pid():
            root = logging.getLogger()
            if self._root_level is not None and root.level == self.level:  # not set since
                root.setLevel(self._root_level)
            for fd in (self._scratch_fd, *self._saved_fds):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._pid = -1
        directory = self._scratch_dir()
        shutil.rmtree(directory, ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(directory))  # only when no other run uses it
        except OSError:
            pass


def _subdirs(folder: str) -> list[str]:
    try:
        return [e.path for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _remove_if_empty(folder: str) -> None:
    try:
        os.rmdir(folder)
    except OSError:
        pass


class _Capture:
    """Redirects fds 1 and 2 and the root logger into the scratch file for one attempt."""

    __slots__ = ("attempt", "header_size", "log_path", "logs", "start", "task_id", "wrote")

    def __init__(self, logs: TaskLogs, task_id: str, attempt: int, log_path: str) -> None:
        self.logs = logs
        self.task_id = task_id
        self.attempt = attempt
        self.log_path = log_path
        self.start = 0  # where this attempt's part of the scratch file begins
        self.header_size = 0  # where its header ends (an offset in the scratch file)
        #: whether the attempt's log file was written (None: not known yet)
        self.wrote: bool | None = None

    def __enter__(self) -> _Capture:  # noqa: PYI034 - typing.Self needs Python 3.11
        logs = self.logs
        pid = current_pid()
        fd = logs._scratch_fd if logs._pid == pid else logs._prepare_process()
        try:
            self._redirect(logs, fd, pid)
        except BaseException:  # a stop signal can land half-way: never leave fds pointed away
            self._restore()
            raise
        return self

    def _redirect(self, logs: TaskLogs, fd: int, pid: int) -> None:
        # (Per attempt: the steps are written out here, not in helpers: a run of quick
        # tasks makes this a few thousand times a second.)
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001, S110 - as _flush_std_streams
                    pass
        held = logs._held
        if held:
            # fds 1 and 2 stayed on the scratch file: what reached them since the last
            # attempt ended is passed on (as `_pass_on_strays`), and the attempt's part
            # begins there; the file is emptied only once it grew past SCRATCH_KEEP, not
            # for every attempt (a journalled metadata change on a disk's file system)
            size = os.fstat(fd).st_size
            if size > logs._scratch_end:
                try:  # a closed stderr: nothing to pass on to
                    _copy_range(fd, logs._saved_fds[1], logs._scratch_end, size)
                except OSError:
                    pass
            self.start = logs._scratch_end = size
        if not held or self.start > SCRATCH_KEEP:
            os.ftruncate(fd, 0)
            self.start = logs._scratch_end = 0
        header = (f"{logs.header(self.task_id, self.attempt)}, pid {pid}, "
                  f"started {_now_text()}\n").encode()
        os.write(fd, header)
        self.header_size = self.start + len(header)
        if not held:
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            logs._held = True
        logs._saved_streams = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = logs._fd_streams
        handler = logs._handler
        if handler is not None:
            # getLogger() without a name: root. What addHandler does, without its four
            # calls of logging's module lock around one list append (the GIL keeps the
            # append whole); the handler is on the root logger only during the attempt,
            # so a basicConfig() of the program's between attempts or after the run works.
            handlers = logging.root.handlers
            if handler not in handlers:
                handlers.append(handler)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        logs = self.logs
        fd = logs._scratch_fd
        try:
            if exc is not None:
                if isinstance(exc, Exception):
                    text = "".join(traceback.format_exception(exc_type, exc, tb))
                else:
                    text = f"# interrupted ({type(exc).__name__})\n"
                _flush_std_streams()
                os.write(fd, text.encode("utf-8", "replace"))
        finally:
            self._restore(keep_fds=logs.hold_fds or current_pid() != logs._owner_pid)
        size = os.fstat(fd).st_size
        logs._scratch_end = size
        self.wrote = size > self.header_size or exc is not None or logs.mode == "always"
        if self.wrote:
            self._copy_out(fd, size)

    def _restore(self, keep_fds: bool = False) -> None:
        """Put sys.stdout/stderr and the root logger back, and fds 1 and 2 unless `keep_fds`
        (they then stay on the scratch file until the next attempt or `release()`)."""
        logs = self.logs
        handler = logs._handler
        if handler is not None:  # what removeHandler does (as addHandler in `_redirect`)
            handlers = logging.root.handlers
            if handler in handlers:  # (run() may have called basicConfig(force=True))
                handlers.remove(handler)
        for stream in (sys.stdout, sys.stderr):  # (as _flush_std_streams, written out)
            if stream is not None:
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001, S110 - a closed or odd stream
                    pass
        if logs._saved_streams[0] is not None:
            sys.stdout, sys.stderr = logs._saved_streams
            logs._saved_streams = (None, None)
        if logs._held and not keep_fds:
            _put_back_fds(logs._saved_fds)
            logs._held = False

    def _copy_out(self, fd: int, size: int) -> None:
        """Copy the scratch file out to the attempt's log. An attempt that goes on after
        the tasks its run() yielded were built has its log already: that part is added."""
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        try:
            out = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                          0o644)
            start = self.start
        except FileExistsError:
            out, start = self._continued_log()
        try:
            _copy_range(fd, out, start, size)
        finally:
            os.close(out)

    def _continued_log(self) -> tuple[int, int]:
        """The log of this attempt, open to add to (and where its scratch part starts), or
        (made anew) from the start when the file is another attempt's."""
        header = self.logs.header(self.task_id, self.attempt).encode()
        with open(self.log_path, "rb") as existing:
            same = existing.read(len(header)) == header
        if not same:
            return os.open(self.log_path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC), self.start
        out = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        os.write(out, f"# the tasks run() yielded are built: the attempt goes on, "
                      f"{_now_text()}\n".encode())
        return out, self.header_size


def _copy_from(source: str, offset: int, target: str) -> None:
    """Copy file `source` from byte `offset` on into a new file `target`."""
    with open(source, "rb") as given, open(target, "wb") as out:
        given.seek(offset)
        shutil.copyfileobj(given, out)


def _copy_range(source: int, target: int, start: int, end: int) -> None:
    """Write bytes `start` to `end` of file `source` to `target`, a chunk at a time."""
    offset = start
    while offset < end:
        chunk = os.pread(source, min(_COPY_CHUNK, end - offset), offset)
        if not chunk:
            break
        os.write(target, chunk)
        offset += len(chunk)


def _put_back_fds(saved: tuple[int, int]) -> None:
    """Point fds 1 and 2 at `saved`; signals wait meanwhile so a stop cannot land half-way."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def task_logs_from(config: Any, *, default_dir: str | None, level: int = logging.INFO,
                   run_id: str = "", log_dir: str | None = None,
                   retention: float | None = None) -> TaskLogs | None:
    """TaskLogs from `[batchdeps] log_dir` / `task_logs`; None when logs are off.

    `default_dir` applies when the config names no `log_dir` (the command line passes
    `<config folder>/logs`; `bd.build()` passes None: no logs unless configured); an
    explicit `log_dir` wins over both.
    """
    settings = config.batchdeps
    mode = settings.get("task_logs", "auto")
    log_dir = log_dir or settings.get("log_dir")
    if log_dir is not None and not os.path.isabs(log_dir):
        log_dir = os.path.join(config.root, log_dir)
    log_dir = log_dir or default_dir
    if mode == "off" or not log_dir:
        return None
    return TaskLogs(log_dir, mode, level=level, run_id=run_id, retention=retention)
