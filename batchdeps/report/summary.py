"""Listeners that tell a person what happened: per-task log lines and the final summary."""

from __future__ import annotations

import logging
import sys
from typing import IO

from .. import logs
from ..paths import shown_all
from .events import (
    AttemptFailed,
    Event,
    RunFinished,
    TaskFinished,
    TaskRetrying,
    TaskStarted,
    TaskWaiting,
    TasksYielded,
    WaitingForInput,
)
from .result import BuildResult, Status, TaskResults

log = logs.get()

_ORDER = [
    Status.BUILT, Status.BUILT_ELSEWHERE, Status.COMPLETE, Status.FAILED,
    Status.UPSTREAM_FAILED, Status.MISSING_INPUT, Status.BLOCKED, Status.LOCK_TIMEOUT,
    Status.NOT_RUN,
]


class LogListener:
    """One log line per task start, retry, wait and end.

    Each record carries `event`, `run_id`, `task_id` and `attempt` as extra attributes, so
    a structured formatter (`--log-format json`) can print them as fields.
    """

    #: what it writes lines for (the run's start and end are the summary's, or the JSON
    #: lines' subclass's)
    listens_to: tuple[type, ...] | None = (AttemptFailed, TaskStarted, TaskFinished,
                                       TaskRetrying, WaitingForInput, TaskWaiting,
                                       TasksYielded)

    def __init__(self) -> None:
        self._failed_log: dict[str, str] = {}  # task id -> log of its last failed attempt

    def on_event(self, event: Event) -> None:
        # (a task's start and end first: two of them per task)
        if isinstance(event, TaskStarted):
            if log.isEnabledFor(logging.INFO):
                attempt = f" (attempt {event.attempt})" if event.attempt > 1 else ""
                logs.write(log, logging.INFO, "start %s%s: %s", event.task_id, attempt,
                           event.reason, extra=lambda: _fields("task_started", event,
                                                               attempt=event.attempt))
        elif isinstance(event, AttemptFailed):
            if event.log_path:
                self._failed_log[event.task_id] = event.log_path
        elif isinstance(event, TaskFinished):
            on = f" on {event.worker}" if event.worker else ""
            if event.status in Status.OK and log.isEnabledFor(logging.INFO):
                # the usual line: its fields are made only if logging's path needs them
                logs.write(log, logging.INFO, "%s %s%s", event.status, event.task_id, on,
                           extra=lambda: _finished_fields(event))
                return
            fields = _finished_fields(event)
            if event.status == Status.FAILED:
                where = f" (log {event.log_path})" if event.log_path else ""
                log.error("FAILED %s after %d attempt(s)%s: %s%s", event.task_id,
                          event.attempts, on, event.error, where,
                          extra={**fields, "error": event.error})
            elif event.status in (Status.UPSTREAM_FAILED, Status.BLOCKED, Status.NOT_RUN):
                log.debug("%s %s", event.status, event.task_id, extra=fields)
            elif log.isEnabledFor(logging.INFO):
                logs.emit(log, logging.INFO, "%s %s%s", event.status, event.task_id, on,
                          extra=fields)
        elif isinstance(event, TaskRetrying):
            log_path = self._failed_log.pop(event.task_id, None)
            where = f" (log {log_path})" if log_path else ""
            log.warning("retry %s in %.3g s after attempt %d failed: %s%s", event.task_id,
                        event.delay, event.attempt, event.error, where,
                        extra=_fields("task_retrying", event, attempt=event.attempt,
                                      delay=round(event.delay, 3), error=event.error,
                                      log_path=log_path))
        elif isinstance(event, WaitingForInput):
            log.info("waiting for input %s until %s: %s", event.task_id, _clock(event.until),
                     event.reason, extra=_fields("waiting_for_input", event,
                                                 paths=list(event.paths),
                                                 since=event.since, until=event.until))
        elif isinstance(event, TaskWaiting):
            log.info("waiting for %s, held by %s", event.task_id, event.holder or "another run",
                     extra=_fields("task_waiting", event, holder=event.holder))
        elif isinstance(event, TasksYielded):
            shown = ", ".join(event.yielded[:3])
            more = f" and {len(event.yielded) - 3} more" if len(event.yielded) > 3 else ""
            log.info("%s: run() yielded %s%s; it goes on once they are built",
                     event.task_id, shown, more,
                     extra=_fields("task_yielded", event, yielded=list(event.yielded)))


def _clock(seconds: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds).strftime("%H:%M:%S")


def _finished_fields(event: TaskFinished) -> dict[str, object]:
    fields = _fields("task_finished", event, attempt=event.attempts, status=event.status,
                     log_path=event.log_path)
    if event.worker:
        fields["worker"] = event.worker
    return fields


def _fields(name: str, event: Event, **more: object) -> dict[str, object]:
    return {"event": name, "run_id": event.run_id,
            "task_id": getattr(event, "task_id", None), **more}


def format_summary(result: BuildResult) -> str:
    """The end-of-run summary: the error that stopped the run if one did, counts by
    outcome, then failures and missing inputs."""
    counts = result.counts()
    total = sum(counts.values())
    parts = [f"{counts[s]} {s}" for s in _ORDER if counts.get(s)]
    lines = []
    if result.stopped_by is not None:
        lines.append(f"batchdeps: the run was stopped by an error: {result.stopped_by}")
    lines.append(f"batchdeps: {total} task(s): {', '.join(parts) or 'nothing to do'} "
                 f"in {result.elapsed:.2f} s (exit {int(result.exit_code)})")
    if len(result.requested) > 1:  # a backfill: how the requested tasks themselves ended
        lines.append(_requested_line(result))
    failed = result.by_status(Status.FAILED)
    if failed:
        lines.append("failed:")
        for item in failed:
            extra = f" [{item.attempts} attempt(s)"
            extra += f", log {item.log_path}]" if item.log_path else "]"
            lines.append(f"  {item.task_id}: {item.error}{extra}")
    missing = result.by_status(Status.MISSING_INPUT)
    if missing:
        lines.append("missing external inputs:")
        for item in missing:
            # The error says more than the paths when the input is there but not taken
            # (still growing, not expected yet) or was waited for.
            plain = not item.error or item.error.endswith(" missing")
            lines.append(f"  {item.task_id}: "
                         f"{(plain and shown_all(item.missing_paths)) or item.error}")
    timeouts = result.by_status(Status.LOCK_TIMEOUT)
    if timeouts:
        lines.append("still held elsewhere:")
        for item in timeouts:
            lines.append(f"  {item.task_id}: {item.error}")
    tasks = result.tasks
    retried = [r for r in (tasks.matching(min_attempts=2) if isinstance(tasks, TaskResults)
                           else tasks.values()) if r.attempts > 1 and r.status != Status.FAILED]
    if retried:
        lines.append("needed retries:")
        for item in retried:
            lines.append(f"  {item.task_id}: {item.attempts} attempts")
    if result.interrupted:
        lines.append("interrupted: running tasks stopped, locks released")
    return "\n".join(lines)


def _requested_line(result: BuildResult) -> str:
    groups = {"complete": {Status.COMPLETE}, "built": {Status.BUILT, Status.BUILT_ELSEWHERE},
              "failed": {Status.FAILED, Status.UPSTREAM_FAILED},
              "blocked": {Status.BLOCKED, Status.MISSING_INPUT}}
    statuses = [result.tasks[t].status for t in result.requested if t in result.tasks]
    counts = {name: sum(1 for s in statuses if s in members) for name, members in groups.items()}
    other = len(result.requested) - sum(counts.values())
    text = ", ".join(f"{count} {name}" for name, count in counts.items())
    return (f"requested: {len(result.requested)} task(s): {text}"
            + (f", {other} other (not run or still held)" if other else ""))


class SummaryListener:
    """Prints the summary when the run ends."""

    listens_to = (RunFinished,)

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunFinished):
            stream = self.stream or sys.stdout
            print(format_summary(event.result), file=stream, flush=True)
