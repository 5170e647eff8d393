"""The listener that records a run into the local history file, a batch at a time.

Rows are kept in memory and written in one transaction when `batch` of them piled up or
`interval` seconds passed since the last write, and at the end of the run; a run of
10,000 tasks therefore costs a few dozen transactions, not 30,000. History must never fail
a run: a write that fails (disk full, file locked too long) is logged once and recording
stops for the rest of the run.

The writes happen in the runner's own thread. A writer thread was tried and measured worse:
SQLite gives Python's GIL back around every row, so a thread writing beside the runner
forced a hand-over of the GIL at nearly every system call of the runner (0.8 s of a
2.4 s build of 10,000 tasks on tmpfs), where writing the same 20,000 rows in the runner's
thread costs under 0.1 s. A small thread still wakes once per `interval` and writes rows
left pending through a quiet stretch (a long task shows as running while it runs); in a
busy run it finds nothing to do.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .. import logs
from ..report.events import (
    AttemptFailed,
    Event,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskStarted,
)
from .records import Recorder, Row

if TYPE_CHECKING:
    from .remote import RemoteHistory
    from .store import HistoryStore

log = logs.get()

HISTORY_FILE = "batchdeps-history.db"
DEFAULT_RETENTION_DAYS = 30.0


def state_dir(config: Any) -> str:
    """`[batchdeps] state_dir` (relative to the config's folder), else the config's folder."""
    folder = config.batchdeps.get("state_dir")
    if folder is None:
        return str(config.root)
    return folder if os.path.isabs(folder) else os.path.join(config.root, folder)


def history_path(config: Any) -> str:
    return os.path.join(state_dir(config), HISTORY_FILE)


def retention_seconds(config: Any) -> float:
    return float(config.history.get("retention_days", DEFAULT_RETENTION_DAYS)) * 86400.0


class HistoryListener:
    """Writes one run's events into the history file at `path` (made on the first write),
    and hands the same rows to `remote` (the lock server) when one is given.

    A task that starts and finishes in one attempt between two writes is written as its
    finished row alone, which carries the start time and the reason it ran too (a third
    fewer rows in a run of quick tasks).

    Args:
        path: the SQLite file (None: no local history).
        remote: the queue to the lock server (None: local only).
        retention: seconds of history kept; older runs are removed when the run ends.
        batch: rows that trigger a write.
        interval: seconds after which pending rows are written anyway.
    """

    def __init__(self, path: str | None, *, remote: RemoteHistory | None = None,
                 retention: float = DEFAULT_RETENTION_DAYS * 86400.0,
                 batch: int = 2000, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.remote = remote
        self.retention = retention
        self.batch = batch
        self.interval = interval
        self.clock = clock
        self.recorder = Recorder()
        self.broken = False
        self._pending: list[Row | _Start] = []
        self._started_at: dict[str, int] = {}  # task id -> its pending started row
        self._lock = threading.Lock()  # the quiet-stretch thread writes too
        self._store: HistoryStore | None = None
        self._ticker: _Ticker | None = None
        self._last_write = clock()
        self._closed = False
        #: a task's first start kept as its event until its row is written (`_first_start`);
        #: False: the row made at once (the rows then are the same; a test compares them)
        self.lazy_starts = remote is None and path is not None

    def on_event(self, event: Event) -> None:
        if self._closed:
            return
        kind = type(event)
        if self.lazy_starts:
            if kind is TaskStarted and event.attempt == 1:  # type: ignore[union-attr]
                self._first_start(event)  # type: ignore[arg-type]
                return
            if kind is RunStarted:
                self._run_started(event)  # type: ignore[arg-type]
                return
            if kind is TaskFinished and event.attempts == 1 and \
                    self._finished_in_place(event):  # type: ignore[union-attr, arg-type]
                return
        task_id = getattr(event, "task_id", None)
        if task_id is not None and task_id in self._started_at:
            self._start_row_made(task_id)  # its start time is this event's to know
        rows = self.recorder.rows(event)
        if self.remote is not None:
            changed = isinstance(event, (RunStarted, RunFinished))
            self.remote.put(rows, self.recorder.run if changed else None)
        if rows and self.path is not None:
            with self._lock:
                pending = self._pending
                if type(event) is TaskStarted:
                    if event.attempt == 1:
                        self._started_at[event.task_id] = len(pending)
                elif type(event) is TaskFinished and event.attempts == 1:
                    index = self._started_at.pop(event.task_id, -1)
                    if index >= 0:
                        pending[index] = rows[0]
                        rows = []
                elif type(event) is AttemptFailed:  # its rows stay in order after the start
                    self._started_at.pop(event.task_id, None)
                pending.extend(rows)
        if isinstance(event, RunFinished):
            self.close()
        elif type(event) is RunStarted:
            self.flush()  # the run shows at once
        else:
            self._flush_when_due()

    def _flush_when_due(self) -> None:
        """A batch or a time slice at a time."""
        if len(self._pending) >= self.batch or (
                self._pending and self.clock() - self._last_write >= self.interval):
            self.flush()

    # A task's first start is kept as the event (`_Start`) while its row is pending: the
    # row is made when it is written, or never, when the task's finished row (which says
    # when it started, and why) takes its place before that (most tasks of a busy run).
    def _first_start(self, event: TaskStarted) -> None:
        start = _Start(event, self.recorder.clock())
        with self._lock:
            pending = self._pending
            self._started_at[event.task_id] = len(pending)
            pending.append(start)
        self._flush_when_due()

    def _finished_in_place(self, event: TaskFinished) -> bool:
        """The finished row of a task whose start is still pending, in the start's place."""
        with self._lock:
            pending = self._pending
            index = self._started_at.get(event.task_id, -1)
            if index < 0 or type(pending[index]) is not _Start:
                return False
            del self._started_at[event.task_id]
            start = pending[index]
            pending[index] = self.recorder.finished_row(event, self.recorder.clock(),
                                                        start.now, start.event.reason)
        self._flush_when_due()
        return True

    def _start_row_made(self, task_id: str) -> None:
        """Make the pending start of `task_id` a row (the recorder then knows its start)."""
        with self._lock:
            index = self._started_at.get(task_id, -1)
            if index >= 0 and type(self._pending[index]) is _Start:
                self._pending[index] = self._row(self._pending[index])

    def _row(self, entry: Row | _Start) -> Row:
        if type(entry) is _Start:
            return self.recorder.started_row(entry.event, entry.now)
        return entry  # type: ignore[return-value]

    def _rows(self, pending: list[Row | _Start]) -> Iterator[Row]:
        return (self._row(entry) for entry in pending)

    def _run_started(self, event: RunStarted) -> None:
        """The plan's rows, written as they are made, in one transaction with the run
        record (the run shows at once, whole)."""
        rows = self.recorder.planned(event)
        with self._lock:
            pending, self._pending = self._pending, []
            self._started_at.clear()
            self._last_write = self.clock()
            run = self.recorder.run
            self._write(itertools.chain(self._rows(pending), rows),
                        dict(run) if run is not None else None)
        if self._ticker is None and not self._closed:
            self._ticker = _Ticker(self.interval, self._tick)

    def flush(self, *, final: bool = False) -> None:
        """Write the pending rows and the run record (also with no rows when `final`)."""
        if self.path is None or not (self._pending or final):
            return
        with self._lock:
            rows, self._pending = self._pending, []
            self._started_at.clear()
            self._last_write = self.clock()
            run = self.recorder.run
            self._write(self._rows(rows), dict(run) if run is not None else None)
        if self._ticker is None and not self._closed:
            self._ticker = _Ticker(self.interval, self._tick)

    def _tick(self) -> None:
        """Nothing was written for `interval` s: write what is pending (a task that started
        and runs long shows while it runs)."""
        if self._pending and not self._closed and (
                self.clock() - self._last_write >= self.interval):
            self.flush()

    def _write(self, rows: Iterable[Row], run: dict[str, Any] | None) -> None:
        if self.broken:
            return
        try:
            if self._store is None:
                from .store import HistoryStore

                folder = os.path.dirname(self.path or "")
                if folder:
                    os.makedirs(folder, exist_ok=True)
                self._store = HistoryStore(str(self.path))
            if run is not None:
                run["last_seen"] = time.time()
            self._store.write(rows, run)
        except Exception as exc:  # noqa: BLE001 - sqlite3.Error, OSError: never fail the run
            log.warning("run history is off for this run: cannot write %s: %s", self.path, exc)
            self.broken = True

    def close(self) -> None:
        """Write what is pending, remove history past the retention, close the file."""
        if self._closed:
            return
        self._closed = True
        if self._ticker is not None:
            self._ticker.stop()
        self.flush(final=self.recorder.run is not None)
        if self._store is not None:
            if not self.broken:
                try:
                    self._store.prune(time.time() - self.retention)
                except Exception as exc:  # noqa: BLE001
                    log.warning("could not remove old history from %s: %s", self.path, exc)
            self._store.close()
            self._store = None
        if self.remote is not None:
            self.remote.close()


class _Start:
    """A task's first start, its row not made yet (see `HistoryListener._first_start`)."""

    __slots__ = ("event", "now")

    def __init__(self, event: TaskStarted, now: float) -> None:
        self.event = event
        self.now = now


class _Ticker:
    """A daemon thread that calls `tick` every `interval` seconds until stopped."""

    def __init__(self, interval: float, tick: Callable[[], None]) -> None:
        self._stopped = threading.Event()
        self._tick = tick
        self._interval = interval
        self._thread = threading.Thread(target=self._loop, name="batchdeps-history-ticker",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval):
            self._tick()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


def lock_token() -> str:
    """The lock server token: $BATCHDEPS_LOCK_TOKEN, else the file $BATCHDEPS_LOCK_TOKEN_FILE."""
    token = os.environ.get("BATCHDEPS_LOCK_TOKEN", "")
    token_file = os.environ.get("BATCHDEPS_LOCK_TOKEN_FILE")
    if not token and token_file:
        try:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError:
            token = ""  # the lock client reports the unreadable file; history stays quiet
    return token


def history_listener(config: Any, lock_url: str | Sequence[str] | None, *,
                     local: bool = True) -> HistoryListener | None:
    """The run's history listener from `[history]`: the local file unless `local` is False
    or history is disabled, plus the lock server at `lock_url` (one URL or its replicas)
    when there is one."""
    settings = config.history
    if not settings.get("enabled", True):
        return None
    path = history_path(config) if local else None
    remote = None
    if lock_url and settings.get("send_to_server", True):
        from .remote import RemoteHistory

        remote = RemoteHistory(lock_url, lock_token())
    if path is None and remote is None:
        return None
    return HistoryListener(path, remote=remote, retention=retention_seconds(config))
