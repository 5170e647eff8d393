"""The listener that records a run into the local history file, a batch at a time.

Rows are kept in memory and written in one transaction when `batch` of them piled up or
`interval` seconds passed since the last write, and at the end of the run; a run of
10,000 tasks therefore costs a few dozen transactions, not 30,000, and they run in a
thread beside the runner. History must never fail a run: a write that fails (disk full,
file locked too long) is logged once and recording stops for the rest of the run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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

log = logging.getLogger("batchdeps")

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

    The runner's thread only turns events into rows; the writes happen in a thread of
    their own, so SQLite's work overlaps the run's. A task that starts and finishes in
    one attempt between two writes is written as its finished row alone, which carries
    the start time and the reason it ran too (a third fewer rows in a run of quick tasks).

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
        self._pending: list[Row] = []
        self._started_at: dict[str, int] = {}  # task id -> its pending started row
        self._lock = threading.Lock()  # the writer's thread flushes too (quiet stretches)
        self._writer: _Writer | None = None
        self._last_write = clock()
        self._closed = False

    def on_event(self, event: Event) -> None:
        if self._closed:
            return
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
        elif type(event) is RunStarted or len(self._pending) >= self.batch or (
                self._pending and self.clock() - self._last_write >= self.interval):
            self.flush()  # the run shows at once; then a batch or a time slice at a time

    def flush(self, *, final: bool = False) -> None:
        """Hand the pending rows and the run record to the writer (also with no rows when
        `final`)."""
        if self.path is None or not (self._pending or final):
            return
        with self._lock:
            self._last_write = self.clock()
            if self._writer is None:
                self._writer = _Writer(self.path, self.interval, self._tick)
            run = self.recorder.run
            self._writer.put(self._pending, dict(run) if run is not None else None)
            self._pending = []
            self._started_at.clear()

    def _tick(self) -> None:
        """The writer found nothing to write for `interval` s: take what is pending (a task
        that started and runs long shows while it runs)."""
        if self._pending and not self._closed:
            self.flush()

    def wait(self) -> None:
        """Return when everything handed to the writer is written (tests, the end)."""
        if self._writer is not None:
            self._writer.queue.join()

    @property
    def broken(self) -> bool:
        return self._writer is not None and self._writer.broken

    def close(self) -> None:
        """Write what is pending, remove history past the retention, close the file."""
        if self._closed:
            return
        self._closed = True
        self.flush(final=self.recorder.run is not None)
        if self._writer is not None:
            self._writer.finish(time.time() - self.retention)
        if self.remote is not None:
            self.remote.close()


class _Writer:
    """The thread that owns the history file: writes batches in order, then prunes."""

    def __init__(self, path: str, interval: float, tick: Callable[[], None]) -> None:
        import queue

        self.path = path
        self.interval = interval
        self.tick = tick
        self.queue: queue.Queue[tuple[list[Row], dict[str, Any] | None] | None] = queue.Queue()
        self.broken = False
        self.prune_before: float | None = None
        self._store: HistoryStore | None = None
        self._thread = threading.Thread(target=self._loop, name="batchdeps-history-writer",
                                        daemon=True)
        self._thread.start()

    def put(self, rows: list[Row], run: dict[str, Any] | None) -> None:
        self.queue.put((rows, run))

    def finish(self, prune_before: float) -> None:
        """Write everything queued, prune, close; returns when done."""
        self.prune_before = prune_before
        self.queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        import queue

        while True:
            try:
                item = self.queue.get(timeout=self.interval)
            except queue.Empty:
                self.tick()
                continue
            try:
                if item is None:
                    self._close()
                    return
                if not self.broken:
                    self._write(*item)
            finally:
                self.queue.task_done()

    def _write(self, rows: list[Row], run: dict[str, Any] | None) -> None:
        try:
            if self._store is None:
                from .store import HistoryStore

                folder = os.path.dirname(self.path)
                if folder:
                    os.makedirs(folder, exist_ok=True)
                self._store = HistoryStore(self.path)
            if run is not None:
                run["last_seen"] = time.time()
            self._store.write(rows, run)
        except Exception as exc:  # noqa: BLE001 - sqlite3.Error, OSError: never fail the run
            log.warning("run history is off for this run: cannot write %s: %s", self.path, exc)
            self.broken = True

    def _close(self) -> None:
        if self._store is None:
            return
        if not self.broken and self.prune_before is not None:
            try:
                self._store.prune(self.prune_before)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not remove old history from %s: %s", self.path, exc)
        self._store.close()
        self._store = None


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


def history_listener(config: Any, lock_url: str | None, *,
                     local: bool = True) -> HistoryListener | None:
    """The run's history listener from `[history]`: the local file unless `local` is False
    or history is disabled, plus the lock server at `lock_url` when there is one."""
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
