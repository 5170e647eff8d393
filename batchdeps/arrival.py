"""When an external input counts as arrived: there, past its `ready_after`, still for `stable_for`.

    look(task)                        # Arrival(arrived=False, reason="... still growing ...")
    look_many(tasks, sightings)       # a waiting run's poll: existence in one batch

An `ExternalTask` without `ready_after` and `stable_for` has arrived when its outputs
exist (or its own `complete()` says so); nothing here changes that, and the resolver
still checks such inputs in its batches. A *guarded* one (either attribute set) is
decided here, in three steps:

1. `ready_after`: before that wall-clock time it is not looked at at all ("not expected
   before 02:00"), so yesterday's file at the same path is not taken for today's.
2. its outputs exist (one batch for all tasks with the built-in check), or its own
   `complete()` returns true (a `_SUCCESS` marker).
3. `stable_for` seconds: every output has stopped changing. Either its modification time
   (local mtime, S3 `LastModified`) is at least that old by this machine's clock, or, for
   a clock that disagrees, a waiting run has seen the same size and mtime (S3: ETag and
   size) across that long (`Sightings`). This costs one stat (S3: one HEAD) per output.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import BatchdepsError, TaskDefinitionError
from .paths import shown, shown_all

if TYPE_CHECKING:
    from .targets import Target
    from .task import Task

Signature = tuple[Any, ...]


@dataclass(frozen=True)
class Arrival:
    """Whether an input has arrived; if not, why, which outputs, and when to look again."""

    arrived: bool
    reason: str = ""
    #: the outputs not taken yet (missing, or still changing)
    paths: tuple[str, ...] = ()
    #: wall-clock time before which another look cannot say yes (None: any time)
    not_before: float | None = None


ARRIVED = Arrival(True)


def guarded(task: Task) -> bool:
    """Whether `task` is an external input with `ready_after` or `stable_for` set."""
    from .task import ExternalTask

    cls = type(task)
    return isinstance(task, ExternalTask) and (
        cls.ready_after is not None or cls.stable_for is not None)


class Sightings:
    """What a waiting run has seen of each output: its signature, and since when."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seen: dict[str, tuple[Signature, float]] = {}

    def unchanged_for(self, url: str, signature: Signature) -> float:
        """Seconds `url` has shown `signature` to this run (0 when it is new or changed)."""
        now = self.clock()
        seen = self._seen.get(url)
        if seen is None or seen[0] != signature:
            self._seen[url] = (signature, now)
            return 0.0
        return now - seen[1]


def look(task: Task, sightings: Sightings | None = None,
         wall: Callable[[], float] = time.time) -> Arrival:
    """Whether the external input `task` has arrived (see the module docstring)."""
    return look_many([task], sightings, wall)[0]


def look_many(tasks: list[Task], sightings: Sightings | None = None,
              wall: Callable[[], float] = time.time) -> list[Arrival]:
    """`look` for many tasks; outputs of built-in checks are checked in one batch.

    Raises:
        TaskDefinitionError: a bad `ready_after`/`stable_for`, or `complete()` raised.
        TargetCheckError: existence or a file's state could not be decided.
    """
    from .resolver import default_complete
    from .targets import check_exists
    from .task import flatten_outputs

    now = wall()
    cwd = os.getcwd()
    answers: list[Arrival | None] = [None] * len(tasks)
    batch: list[Target] = []
    spans: list[tuple[int, int, int]] = []
    for index, task in enumerate(tasks):
        due = ready_time(task, now)
        if due is not None and now < due:
            answers[index] = Arrival(
                False, f"not expected before {_when(due, now)} (ready_after)",
                tuple(t.url for t in flatten_outputs(task)), not_before=due)
            continue
        if default_complete(task) or (guarded(task) and _builtin_check(task)):
            targets = flatten_outputs(task)
            spans.append((index, len(batch), len(batch) + len(targets)))
            batch.extend(targets)
        elif not _custom_complete(task):
            answers[index] = Arrival(False, f"external input {task.task_id}: complete() "
                                     "returned False", tuple(
                                         t.url for t in flatten_outputs(task)))
    exists = check_exists(batch) if batch else []
    for index, start, end in spans:
        targets = batch[start:end]
        missing = [t.url for t, ok in zip(targets, exists[start:end]) if not ok]
        if missing or not targets:
            paths = missing or []
            answers[index] = Arrival(
                False, f"external input {shown_all(paths, cwd) or tasks[index].task_id} "
                "missing", tuple(paths))
    for index, task in enumerate(tasks):
        if answers[index] is None:
            answers[index] = _stable(task, sightings, now, cwd) if guarded(task) else ARRIVED
    return [answer or ARRIVED for answer in answers]


def _builtin_check(task: Task) -> bool:
    from .task import ExternalTask

    return type(task).complete is ExternalTask.complete


def _custom_complete(task: Task) -> bool:
    """The task's own complete(), what it raises named as a definition error."""
    try:
        return bool(task.complete())
    except BatchdepsError:
        raise
    except Exception as exc:
        raise TaskDefinitionError(
            f"{task.task_id}: complete() raised {type(exc).__name__}: {exc}") from exc


# -- ready_after -----------------------------------------------------------------------------
def ready_time(task: Task, now: float) -> float | None:
    """`task.ready_after` as seconds since the epoch (None: no such gate).

    A time of day ("02:00", `datetime.time`) is that time on `now`'s day, local time
    unless the time carries its own zone; a naive datetime is local time too.
    """
    value = getattr(task, "ready_after", None)
    if value is None:
        return None
    if callable(value):
        try:
            value = value()
        except Exception as exc:
            raise TaskDefinitionError(f"{task.task_id}: ready_after() raised "
                                      f"{type(exc).__name__}: {exc}") from exc
        if value is None:
            return None
    return _moment(task, value, now)


def _moment(task: Task, value: Any, now: float) -> float:
    if isinstance(value, str):
        text = value.strip()
        try:
            value = dt.time.fromisoformat(text) if len(text) <= 8 else None
        except ValueError:
            value = None
        if value is None:
            try:
                value = dt.datetime.fromisoformat(text)
            except ValueError:
                raise _bad_ready_after(task, text) from None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.astimezone()).timestamp()
    if isinstance(value, dt.time):
        day = dt.datetime.fromtimestamp(now, value.tzinfo).date() if value.tzinfo else \
            dt.datetime.fromtimestamp(now).date()
        moment = dt.datetime.combine(day, value)
        return (moment if moment.tzinfo else moment.astimezone()).timestamp()
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time()).astimezone().timestamp()
    raise _bad_ready_after(task, value)


def _bad_ready_after(task: Task, value: Any) -> TaskDefinitionError:
    return TaskDefinitionError(
        f"{task.task_id}: ready_after must be a time of day (\"02:00\", datetime.time), a "
        f"date and time (\"2026-12-07T02:00\", datetime.datetime) or a method giving one, "
        f"got {value!r}")


def _when(moment: float, now: float) -> str:
    shown_at = dt.datetime.fromtimestamp(moment)
    same_day = shown_at.date() == dt.datetime.fromtimestamp(now).date()
    return shown_at.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")


# -- stable_for ------------------------------------------------------------------------------
def stable_seconds(task: Task) -> float | None:
    """`task.stable_for` in seconds (a number or a duration such as "1m"); None: unset."""
    value = getattr(task, "stable_for", None)
    if value is None:
        return None
    from .durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise TaskDefinitionError(f"{task.task_id}: stable_for {exc}, got {value!r}") from None


def _stable(task: Task, sightings: Sightings | None, now: float, cwd: str) -> Arrival:
    """Arrived when every output has stopped changing for `stable_for` seconds."""
    from .task import flatten_outputs

    stable_for = stable_seconds(task)
    if not stable_for:
        return ARRIVED
    growing: list[str] = []
    ages: list[float] = []
    not_before = now
    for target in flatten_outputs(task):
        seen = signature(target)
        if seen is None:  # gone since it was seen (a writer's rename): not there
            return Arrival(False, f"external input {shown(target.url, cwd)} missing",
                           (target.url,))
        mark, modified, resolution = seen
        # A time kept to the second (S3's LastModified) may be up to a second late.
        age = now - modified - resolution if modified is not None else 0.0
        if sightings is not None:
            age = max(age, sightings.unchanged_for(target.url, mark))
        if age < stable_for:
            growing.append(target.url)
            ages.append(max(0.0, age))
            not_before = max(not_before, now + stable_for - max(0.0, age))
    if not growing:
        return ARRIVED
    return Arrival(
        False, f"external input {shown_all(growing, cwd)} still growing (changed "
        f"{min(ages):.0f} s ago; stable_for = {stable_for:g} s)", tuple(growing),
        not_before=not_before)


def signature(target: Target) -> tuple[Signature, float | None, float] | None:
    """(what changes when the file grows or is rewritten, its modification time as seconds
    since the epoch, that time's resolution in seconds) of a file target; None when it
    does not exist.

    Read from the target's own `identity()` (a local file's mtime_ns and size; an fsspec
    file's mtime and size; an S3 object's ETag, LastModified and size), the stamps the
    build records keep, with the backend's error translation.
    """
    identity = target.identity()
    if identity is None:
        return None
    if "mtime_ns" in identity:  # a local file: nanoseconds
        return tuple(sorted(identity.items())), identity["mtime_ns"] / 1e9, 0.0
    modified = identity.get("mtime", identity.get("last_modified"))
    if modified is None and len(identity) == 1:  # a target with no stamps of its own
        raise TaskDefinitionError(f"stable_for needs file targets (bd.FileTarget), got "
                                  f"{target!r}")
    # Kept to the second (S3's LastModified) or by a remote clock: a second of slack.
    return (tuple(sorted(identity.items())),
            float(modified) if modified is not None else None, 1.0)
