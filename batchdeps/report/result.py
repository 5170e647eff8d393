"""What a build did, per task, and the exit code that follows from it."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from ..errors import BatchdepsError, ExitCode


class Status(str, Enum):
    """Final states of a task in one run; the value is what text and JSON output show."""

    BUILT = "built"                        # run() succeeded here
    COMPLETE = "complete"                  # already complete before this run
    BUILT_ELSEWHERE = "built elsewhere"    # another worker built it while we waited
    FAILED = "failed"                      # run() failed (after all retries)
    UPSTREAM_FAILED = "upstream failed"    # not run: a requirement failed
    MISSING_INPUT = "missing input"        # an external task's output does not exist
    BLOCKED = "blocked by missing input"   # not run: an external input upstream is missing
    LOCK_TIMEOUT = "lock wait timed out"   # held elsewhere past the wait
    NOT_RUN = "not run"                    # interrupted before it ran

    #: the states a downstream task may build on (set below: not a member)
    OK: ClassVar[frozenset[Status]]

    def __str__(self) -> str:
        return self.value


Status.OK = frozenset({Status.BUILT, Status.COMPLETE, Status.BUILT_ELSEWHERE})


@dataclass(slots=True)
class TaskResult:
    """What happened to one task; `error` is one line (the full text is in its log)."""

    task_id: str
    status: Status
    reason: str = ""
    attempts: int = 0
    duration: float = 0.0
    error: str = ""
    log_path: str | None = None
    missing_paths: Sequence[str] = ()  # a list when there are any; () is shared
    holder: str = ""


#: a status by its code in `TaskResults` (0: no result)
_STATUSES: tuple[Status | None, ...] = (None, *Status)
_CODES = {status: code for code, status in enumerate(_STATUSES) if status is not None}


class TaskResults(MutableMapping[str, TaskResult]):
    """Task id -> TaskResult, in the order the results came; a dict to its users.

    A run of a million tasks would keep a million TaskResult objects (and a dict entry
    each) only to say "built, one attempt, this long, for the plan's reason". Results of
    the plan's steps that say no more than that (`record` with no detail) are kept as a
    status byte, an attempt count and a duration by step index, and made into a
    TaskResult when read, the reason taken from the step; every other result is kept
    as given. Reading by task id looks the step up by id (a table made on first need,
    apart from the ids given as `hints`).
    """

    def __init__(self) -> None:
        self._given: dict[str, TaskResult] = {}  # results kept as they are
        self._steps: Sequence[Any] = ()  # the plan's steps, by index (the runner binds it)
        self._code = bytearray()  # by step index: 0 no result, else the status's code
        self._attempts = array("I")
        self._duration = array("d")
        self._detail: dict[int, TaskResult] = {}  # step index -> result with detail
        #: the order results came in: a step index, or -1 for the next key of `_given`
        self._order = array("i")
        self._ids: dict[str, int] = {}  # task id -> step index, for the ids looked up
        self._ids_for = -1  # steps the full id table covers (-1: not made)

    # -- what the runner uses ----------------------------------------------------------
    def bind(self, steps: Sequence[Any], hints: Iterable[Any] = ()) -> None:
        """Keep results of `steps` (a list the plan may extend) by index; `hints`: steps
        whose ids are looked up at the end (the requested ones)."""
        self._steps = steps
        self._grow(len(steps))
        for step in hints:
            self._ids[step.task_id] = step.index

    def record(self, step: Any, status: Status, attempts: int = 0, duration: float = 0.0,
               detail: TaskResult | None = None) -> None:
        """`step`'s result: its status for the plan's reason, or `detail` when there is
        more to say (another reason, an error, a log, missing paths, a holder)."""
        index = step.index
        if index >= len(self._code):
            self._grow(max(index + 1, len(self._steps)))
        if not self._code[index]:
            self._order.append(index)
        self._code[index] = _CODES[status]
        if detail is not None:
            self._detail[index] = detail
        else:
            self._detail.pop(index, None)
            self._attempts[index] = attempts
            self._duration[index] = duration

    def _grow(self, size: int) -> None:
        more = size - len(self._code)
        if more > 0:
            self._code.extend(bytes(more))
            self._attempts.extend([0] * more)
            self._duration.extend([0.0] * more)

    def closed(self, index: int) -> bool:
        """Whether the step at `index` has its result."""
        return index < len(self._code) and self._code[index] != 0

    def at(self, index: int) -> TaskResult | None:
        """The result of the step at `index`, if it has one."""
        if index >= len(self._code) or not self._code[index]:
            return None
        detail = self._detail.get(index)
        if detail is not None:
            return detail
        step = self._steps[index]
        return TaskResult(step.task_id, _STATUSES[self._code[index]],  # type: ignore[arg-type]
                          reason=step.reason, attempts=self._attempts[index],
                          duration=self._duration[index])

    def counts(self) -> dict[Status, int]:
        counts: dict[Status, int] = {}
        for result in self._given.values():
            counts[result.status] = counts.get(result.status, 0) + 1
        for code in range(1, len(_STATUSES)):
            number = self._code.count(code)
            if number:
                status: Status = _STATUSES[code]  # type: ignore[assignment]
                counts[status] = counts.get(status, 0) + number
        return counts

    def matching(self, statuses: Iterable[Status] | None = None,
                 min_attempts: int = 0) -> list[TaskResult]:
        """The results with one of `statuses` (None: any) and at least `min_attempts`
        attempts, in order; only those are made."""
        codes = None if statuses is None else {_CODES[s] for s in statuses}
        found = []
        for result in self._in_order(codes, min_attempts):
            if (codes is None or _CODES[result.status] in codes) and \
                    result.attempts >= min_attempts:
                found.append(result)
        return found

    # -- the mapping -------------------------------------------------------------------
    def _index_of(self, task_id: str) -> int:
        index = self._ids.get(task_id)
        if index is None and self._ids_for < len(self._steps):
            self._ids.update((step.task_id, step.index) for step in self._steps)
            self._ids_for = len(self._steps)
            index = self._ids.get(task_id)
        return -1 if index is None else index

    def __getitem__(self, task_id: str) -> TaskResult:
        given = self._given.get(task_id)
        if given is not None:
            return given
        index = self._index_of(task_id) if self._code else -1
        result = self.at(index) if index >= 0 else None
        if result is None:
            raise KeyError(task_id)
        return result

    def __contains__(self, task_id: object) -> bool:
        if task_id in self._given:
            return True
        if not self._code or not isinstance(task_id, str):
            return False
        index = self._index_of(task_id)
        return index >= 0 and self.closed(index)

    def __setitem__(self, task_id: str, result: TaskResult) -> None:
        index = self._index_of(task_id) if self._steps and task_id not in self._given else -1
        if index >= 0:
            self.record(self._steps[index], result.status, detail=result)
            return
        if task_id not in self._given:
            self._order.append(-1)
        self._given[task_id] = result

    def __delitem__(self, task_id: str) -> None:
        if task_id not in self:
            raise KeyError(task_id)
        kept = [(key, value) for key, value in self.items() if key != task_id]
        self.__init__()  # type: ignore[misc]  # a rare call: keep the rest as given
        for key, value in kept:
            self[key] = value

    def _in_order(self, codes: set[int] | None = None,
                  min_attempts: int = 0) -> Iterator[TaskResult]:
        given = iter(self._given.values())
        code, attempts = self._code, self._attempts
        for index in self._order:
            if index < 0:
                yield next(given)
            elif (codes is None or code[index] in codes) and (
                    attempts[index] >= min_attempts or index in self._detail):
                yield self.at(index)  # type: ignore[misc]

    def __iter__(self) -> Iterator[str]:
        given = iter(self._given)
        steps = self._steps
        for index in self._order:
            yield next(given) if index < 0 else steps[index].task_id

    def values(self) -> Any:
        return list(self._in_order())

    def items(self) -> Any:
        return list(zip(self, self._in_order()))

    def __len__(self) -> int:
        return len(self._order)

    def __repr__(self) -> str:
        return f"TaskResults({dict(self.items())!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (TaskResults, dict)):
            return dict(self.items()) == dict(other.items())
        return NotImplemented


@dataclass
class BuildResult:
    """Per task what happened; `exit_code` follows the contract's table."""

    run_id: str
    tasks: MutableMapping[str, TaskResult] = field(default_factory=TaskResults)
    requested: list[str] = field(default_factory=list)
    interrupted: bool = False
    elapsed: float = 0.0
    #: the error that stopped the run midway (storage or lock server gone), if any
    stopped_by: BatchdepsError | None = field(default=None, repr=False, compare=False)

    def by_status(self, status: Status) -> list[TaskResult]:
        if isinstance(self.tasks, TaskResults):
            return self.tasks.matching([status])
        return [r for r in self.tasks.values() if r.status == status]

    def counts(self) -> dict[Status, int]:
        if isinstance(self.tasks, TaskResults):
            return self.tasks.counts()
        counts: dict[Status, int] = {}
        for result in self.tasks.values():
            counts[result.status] = counts.get(result.status, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK

    @property
    def exit_code(self) -> ExitCode:
        if self.stopped_by is not None:
            return self.stopped_by.exit_code
        counts = self.counts()
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if counts.get(Status.FAILED) or counts.get(Status.UPSTREAM_FAILED):
            return ExitCode.FAILED
        if counts.get(Status.MISSING_INPUT) or counts.get(Status.BLOCKED):
            return ExitCode.MISSING_INPUT
        if counts.get(Status.LOCK_TIMEOUT):
            return ExitCode.LOCK_WAIT_TIMEOUT
        if any(self.tasks[t].status not in Status.OK for t in self.requested if t in self.tasks):
            return ExitCode.FAILED
        return ExitCode.OK
