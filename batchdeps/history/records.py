"""The runner's events turned into plain history rows, the same for the local file and the server.

A row is a tuple in `EVENT_COLUMNS` order (tuples are the cheapest thing to build per event
and are what sqlite3's executemany takes); `row_json`/`row_from_json` carry it over HTTP.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..procinfo import current_pid, hostname
from ..report.events import (
    AttemptFailed,
    Event,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskRetrying,
    TaskStarted,
    TaskWaiting,
    TasksYielded,
    WaitingForInput,
)

EVENT_COLUMNS = ("run_id", "ts", "kind", "task_id", "family", "status", "attempt", "duration",
                 "error", "log", "reason", "host", "pid", "started")
RUN_COLUMNS = ("run_id", "requested", "host", "user", "pid", "started", "finished",
               "exit_code", "planned", "counts", "last_seen")

#: Kinds of task rows. `finished` rows are the task records `batchdeps history` lists;
#: a `yielded` row is one task a run() yielded (its `reason`: `yielded_spec`).
PLANNED, STARTED, WAITING, ATTEMPT_FAILED, RETRYING, FINISHED, YIELDED = (
    "planned", "started", "waiting", "attempt failed", "retrying", "finished", "yielded")
KINDS = (PLANNED, STARTED, WAITING, ATTEMPT_FAILED, RETRYING, FINISHED, YIELDED)
#: The status of a WAITING row for a missing external input (`--wait-for-inputs`).
WAITING_FOR_INPUT = "waiting for input"

MAX_ERROR_CHARS = 2000
MAX_TEXT_CHARS = 4096

Row = tuple[Any, ...]


def _clip(text: str | None, limit: int = MAX_ERROR_CHARS) -> str:
    if not text:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, no $USER (a container)
        return "?"


class Recorder:
    """Turns one run's events into rows; remembers when each task first started.

    Args:
        clock: wall clock (seconds since the epoch) stamped on each row.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.host = hostname()
        self.user = current_user()
        self.pid = current_pid()
        self.run: dict[str, Any] | None = None
        self._started: dict[str, tuple[float, str]] = {}  # task id -> (first start, reason)

    def rows(self, event: Event) -> list[Row]:
        """The rows for `event` (also updates `self.run` on the run's start and end)."""
        handler = self._handlers.get(type(event))
        return handler(event, self.clock()) if handler is not None else []

    @property
    def _handlers(self) -> dict[type, Callable[[Any, float], list[Row]]]:
        handlers = self.__dict__.get("_handler_table")
        if handlers is None:
            handlers = self.__dict__["_handler_table"] = {
                TaskStarted: self._task_started, TaskFinished: self._task_finished,
                AttemptFailed: self._attempt_failed, TaskRetrying: self._retrying,
                TaskWaiting: self._waiting, WaitingForInput: self._waiting_for_input,
                RunStarted: self._run_started,
                RunFinished: self._run_finished, TasksYielded: self._yielded,
            }
        return handlers  # type: ignore[no-any-return]

    def _task_started(self, event: TaskStarted, now: float) -> list[Row]:
        return [self.started_row(event, now)]

    def started_row(self, event: TaskStarted, now: float) -> Row:
        """The row of `event` at time `now` (which is remembered as the task's first start)."""
        started, _ = self._started.setdefault(event.task_id, (now, event.reason))
        return (event.run_id, now, STARTED, event.task_id, event.family, "running",
                event.attempt, 0.0, "", "", event.reason, self.host, self.pid, started)

    def _task_finished(self, event: TaskFinished, now: float) -> list[Row]:
        started, reason = self._started.pop(event.task_id, (now, ""))
        return [self.finished_row(event, now, started, reason)]

    def finished_row(self, event: TaskFinished, now: float, started: float,
                     reason: str) -> Row:
        """The row of `event` at time `now`, for a task first started at `started`."""
        return (event.run_id, now, FINISHED, event.task_id, event.family, event.status,
                event.attempts, event.duration, _clip(event.error), event.log_path or "",
                reason, event.worker or self.host, event.worker_pid or self.pid, started)

    def _attempt_failed(self, event: AttemptFailed, now: float) -> list[Row]:
        return [(event.run_id, now, ATTEMPT_FAILED, event.task_id, event.family,
                 "timed out" if event.timed_out else "failed", event.attempt, 0.0,
                 _clip(event.error), event.log_path or "", "", event.worker or self.host,
                 event.worker_pid or self.pid, self._started.get(event.task_id, (now, ""))[0])]

    def _retrying(self, event: TaskRetrying, now: float) -> list[Row]:
        return [(event.run_id, now, RETRYING, event.task_id, event.family, "retrying",
                 event.attempt, event.delay, _clip(event.error), "", "", self.host, self.pid,
                 self._started.get(event.task_id, (now, ""))[0])]

    def _waiting(self, event: TaskWaiting, now: float) -> list[Row]:
        family = event.task_id.split("(", 1)[0]
        return [(event.run_id, now, WAITING, event.task_id, family, "waiting", 0, 0.0,
                 "", "", _clip(f"held by {event.holder}"), self.host, self.pid, now)]

    def _yielded(self, event: TasksYielded, now: float) -> list[Row]:
        return [(event.run_id, now, YIELDED, event.task_id, event.family, "yielded", 0, 0.0,
                 "", "", yielded_spec(task), self.host, self.pid, now)
                for task in event.tasks]

    def _waiting_for_input(self, event: WaitingForInput, now: float) -> list[Row]:
        import datetime as dt

        until = dt.datetime.fromtimestamp(event.until).strftime("%H:%M:%S")
        # Its finished row then says since when and why it was waited for.
        self._started.setdefault(event.task_id, (event.since, f"waited for: {event.reason}"))
        return [(event.run_id, now, WAITING, event.task_id, event.family, WAITING_FOR_INPUT,
                 0, 0.0, "", "", _clip(f"{event.reason}; waiting until {until}", MAX_TEXT_CHARS),
                 self.host, self.pid, event.since)]

    def _run_finished(self, event: RunFinished, now: float) -> list[Row]:
        result = event.result
        if self.run is None:
            self.run = self._run_record(event.run_id, result.requested, now, 0)
        self.run.update(finished=now, exit_code=result.exit_code, counts=result.counts(),
                        last_seen=now)
        return []

    def _run_record(self, run_id: str, requested: list[str], now: float,
                    planned: int) -> dict[str, Any]:
        return {"run_id": run_id, "requested": list(requested), "host": self.host,
                "user": self.user, "pid": self.pid, "started": now, "finished": None,
                "exit_code": None, "planned": planned, "counts": {}, "last_seen": now}

    def _run_started(self, event: RunStarted, now: float) -> list[Row]:
        return list(self.planned(event, now))

    def planned(self, event: RunStarted, now: float | None = None) -> Iterator[Row]:
        """The rows of the run's start (one per step, one per requested task already
        complete), made one at a time as they are written (a plan of a million steps
        would make a million rows at once); sets `self.run` first."""
        now = self.clock() if now is None else now
        plan = event.plan
        self.run = self._run_record(event.run_id, [t.task_id for t in plan.requested], now,
                                    len(plan.steps))
        return self._planned_rows(event, now)

    def _planned_rows(self, event: RunStarted, now: float) -> Iterator[Row]:
        plan = event.plan
        run_id, host, pid = event.run_id, self.host, self.pid
        for step in plan.steps:
            yield (run_id, now, PLANNED, step.task_id, step.task.family(), "planned", 0, 0.0,
                   "", "", step.reason, host, pid, now)
        for task in plan.complete:
            yield (run_id, now, FINISHED, task.task_id, task.family(), "complete", 0, 0.0, "",
                   "", "already complete", host, pid, now)


def yielded_spec(task: Any) -> str:
    """What `status` needs to make a yielded task again: its id, class and parameters as
    the command line gives them (JSON; only the id when that would be too long)."""
    cls = type(task)
    spec = json.dumps({"task_id": task.task_id,
                       "class": f"{cls.__module__}.{cls.__qualname__}",
                       "params": task.to_str_params()}, sort_keys=True)
    if len(spec) > MAX_TEXT_CHARS:
        spec = json.dumps({"task_id": _clip(task.task_id, MAX_TEXT_CHARS - 20)})
    return spec


def row_json(row: Row) -> dict[str, Any]:
    return dict(zip(EVENT_COLUMNS, row))


class RowError(ValueError):
    """A history row sent to the server does not have the expected fields and types."""


_TEXT_FIELDS = {"run_id": 64, "kind": 32, "task_id": MAX_TEXT_CHARS, "family": 255,
                "status": 64, "error": MAX_ERROR_CHARS, "log": MAX_TEXT_CHARS,
                "reason": MAX_TEXT_CHARS, "host": 255}
_NUMBER_FIELDS = ("ts", "duration", "started")
_INT_FIELDS = ("attempt", "pid")


def _text(obj: dict[str, Any], name: str, limit: int, where: str) -> str:
    value = obj.get(name, "")
    if not isinstance(value, str):
        raise RowError(f"{where}: {name} must be a string")
    if len(value) > limit:
        raise RowError(f"{where}: {name} is longer than {limit} characters")
    return value


def _number(obj: dict[str, Any], name: str, where: str) -> float:
    value = obj.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            -1e12 < value < 1e12):
        raise RowError(f"{where}: {name} must be a number")
    return float(value)


def _integer(obj: dict[str, Any], name: str, where: str) -> int:
    value = obj.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise RowError(f"{where}: {name} must be an integer from 0 to 2**31-1")
    return value


def row_from_json(obj: Any, where: str = "event") -> Row:
    """A row from its JSON object; RowError names the first bad field."""
    if not isinstance(obj, dict):
        raise RowError(f"{where} must be a JSON object")
    unknown = set(obj) - set(EVENT_COLUMNS)
    if unknown:
        raise RowError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name, limit in _TEXT_FIELDS.items():
        values[name] = _text(obj, name, limit, where)
    for name in _NUMBER_FIELDS:
        values[name] = _number(obj, name, where)
    for name in _INT_FIELDS:
        values[name] = _integer(obj, name, where)
    if values["kind"] not in KINDS:
        raise RowError(f"{where}: kind must be one of {', '.join(KINDS)}")
    if not values["run_id"] or not values["task_id"]:
        raise RowError(f"{where}: run_id and task_id must not be empty")
    return tuple(values[name] for name in EVENT_COLUMNS)


def run_from_json(obj: Any) -> dict[str, Any]:
    """A run record from its JSON object; RowError names the first bad field."""
    where = "run"
    if not isinstance(obj, dict):
        raise RowError("run must be a JSON object")
    unknown = set(obj) - set(RUN_COLUMNS)
    if unknown:
        raise RowError(f"run: unknown field(s) {', '.join(sorted(unknown))}")
    run: dict[str, Any] = {name: _text(obj, name, 255, where)
                           for name in ("run_id", "host", "user")}
    if not run["run_id"]:
        raise RowError("run: run_id must not be empty")
    requested = obj.get("requested", [])
    if not isinstance(requested, list) or len(requested) > 1000 or not all(
            isinstance(t, str) and len(t) <= MAX_TEXT_CHARS for t in requested):
        raise RowError("run: requested must be a list of task ids")
    run["requested"] = requested
    run["pid"] = _integer(obj, "pid", where)
    run["planned"] = _integer(obj, "planned", where)
    run["started"] = _number(obj, "started", where)
    run["last_seen"] = _number(obj, "last_seen", where)
    finished = obj.get("finished")
    run["finished"] = None if finished is None else _number(obj, "finished", where)
    exit_code = obj.get("exit_code")
    if exit_code is not None and (isinstance(exit_code, bool) or not isinstance(exit_code, int)
                                  or not 0 <= exit_code < 256):
        raise RowError("run: exit_code must be null or an integer from 0 to 255")
    run["exit_code"] = exit_code
    counts = obj.get("counts", {})
    if not isinstance(counts, dict) or len(counts) > 32 or not all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, int)
            and not isinstance(v, bool) for k, v in counts.items()):
        raise RowError("run: counts must map status names to integers")
    run["counts"] = counts
    return run
