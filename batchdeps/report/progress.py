"""A live progress line on a terminal: done, running, pending and failed, elapsed and time left.

Only when stderr is a terminal; under cron (no terminal) the plain log lines are all there
is. Log lines written while the progress line is shown first clear it and then redraw it
below themselves, so the line stays at the bottom of the screen.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from ..procinfo import current_pid
from .events import (
    Event,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskRetrying,
    TaskStarted,
    TasksYielded,
    WaitingForInput,
)
from .result import Status

_CLEAR = "\r\x1b[K"
_FAILED = frozenset({Status.FAILED, Status.MISSING_INPUT, Status.LOCK_TIMEOUT})


def _clock_text(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressListener:
    """Keeps counts from events and draws them as one line, refreshed every `interval` s."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self.clock = clock
        self.lock = threading.RLock()
        self.total = 0
        self.done = 0
        self.failed = 0
        self.skipped = 0
        self.running: set[str] = set()
        self.waiting: dict[str, float] = {}  # input waited for -> since (epoch seconds)
        self.started = clock()
        self._shown = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._pid = os.getpid()
        self._drawn_at = float("-inf")
        self.min_gap = 0.1  # seconds between redraws caused by events (many tasks, one line)

    # -- counting -----------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        with self.lock:
            if isinstance(event, RunStarted):
                self.total = len(event.plan.steps)
                self.started = self.clock()
                self._start_ticker()
            elif isinstance(event, TasksYielded):
                self.total += event.added  # the plan grew
                self.running.discard(event.task_id)
            elif isinstance(event, TaskStarted):
                self.running.add(event.task_id)
            elif isinstance(event, WaitingForInput):
                self.waiting[event.task_id] = event.since
            elif isinstance(event, TaskRetrying):
                self.running.discard(event.task_id)
            elif isinstance(event, TaskFinished):
                self.running.discard(event.task_id)
                self.waiting.pop(event.task_id, None)
                if event.status in Status.OK:
                    self.done += 1
                elif event.status in _FAILED:
                    self.failed += 1
                else:
                    self.skipped += 1
            elif isinstance(event, RunFinished):
                self.draw(final=True)  # the last state stays on screen, above the summary
                self._stop.set()
                return
            if self.clock() - self._drawn_at >= self.min_gap:
                self.draw()

    def line(self) -> str:
        """The progress line as text (no terminal control characters)."""
        finished = self.done + self.failed + self.skipped
        waiting = len(self.waiting)
        pending = max(0, self.total - finished - len(self.running) - waiting)
        elapsed = self.clock() - self.started
        parts = [f"{self.done}/{self.total} done", f"{len(self.running)} running",
                 f"{pending} pending", f"{self.failed} failed"]
        if waiting:
            import datetime as dt

            since = dt.datetime.fromtimestamp(min(self.waiting.values())).strftime("%H:%M:%S")
            what = next(iter(self.waiting)) if waiting == 1 else f"{waiting} inputs"
            parts.append(f"waiting for {what} since {since}")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        left = "?"
        if finished and elapsed > 0:
            left = "~" + _clock_text((pending + len(self.running)) * elapsed / finished)
        return f"batchdeps: {', '.join(parts)} | {_clock_text(elapsed)} elapsed, {left} left"

    # -- drawing ------------------------------------------------------------------------
    def draw(self, final: bool = False) -> None:
        with self.lock:
            if self._stop.is_set():
                return
            try:
                self.stream.write(_CLEAR + self.line() + ("\n" if final else ""))
                self.stream.flush()
            except (OSError, ValueError):
                return
            self._shown = not final
            self._drawn_at = self.clock()

    def _start_ticker(self) -> None:
        if self._ticker is not None:
            return

        def tick() -> None:
            while not self._stop.wait(self.interval):
                self.draw()

        self._ticker = threading.Thread(target=tick, name="batchdeps-progress", daemon=True)
        self._ticker.start()

    def write_above(self, stream: IO[str], text: str) -> int:
        """Write `text` (a log line) so that the progress line stays below it."""
        if current_pid() != self._pid:  # a forked worker: its lock copy may be held forever
            return stream.write(text)
        with self.lock:
            if not self._shown:
                return stream.write(text)
            tail = self.line() if text.endswith("\n") else ""
            stream.write(_CLEAR + text + tail)  # one write: the line never flickers apart
            stream.flush()
            self._shown = bool(tail)
            return len(text)

    def attach(self, logger: logging.Logger) -> None:
        """Route the logger's stream handlers through `write_above`."""
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                    handler.stream, _AboveProgress):
                handler.setStream(_AboveProgress(self, handler.stream))  # type: ignore[arg-type]


class _AboveProgress:
    """A stream that writes through `ProgressListener.write_above`."""

    def __init__(self, progress: ProgressListener, stream: IO[str]) -> None:
        self.progress = progress
        self.stream = stream

    def write(self, text: str) -> int:
        return self.progress.write_above(self.stream, text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def is_terminal(stream: IO[str]) -> bool:
    """True when `stream` is a terminal that understands carriage return and erase-line."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return bool(tty) and os.environ.get("TERM", "") != "dumb"


def progress_for(config: Any, log_format: str, logger: logging.Logger,
                 stream: IO[str] | None = None) -> ProgressListener | None:
    """A ProgressListener attached to `logger` when its stream is a terminal, else None.

    The line is drawn on the stream of the logger's first stream handler (batchdeps' own
    copy of stderr), so it and the log lines share one stream and one lock.
    """
    if stream is None:
        handlers = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
        stream = handlers[0].stream if handlers else sys.stderr
    if config.batchdeps.get("progress", "auto") == "off" or log_format == "json":
        return None
    if not is_terminal(stream):
        return None
    progress = ProgressListener(stream)
    progress.attach(logger)
    return progress
