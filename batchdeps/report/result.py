"""What a build did, per task, and the exit code that follows from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from collections.abc import Sequence
from typing import ClassVar

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


@dataclass
class BuildResult:
    """Per task what happened; `exit_code` follows the contract's table."""

    run_id: str
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    requested: list[str] = field(default_factory=list)
    interrupted: bool = False
    elapsed: float = 0.0
    #: the error that stopped the run midway (storage or lock server gone), if any
    stopped_by: BatchdepsError | None = field(default=None, repr=False, compare=False)

    def by_status(self, status: Status) -> list[TaskResult]:
        return [r for r in self.tasks.values() if r.status == status]

    def counts(self) -> dict[Status, int]:
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
