"""Events the runner emits to listeners: frozen dataclasses, one per thing that happened.

Summaries, logs, progress, metrics and alerts are listeners; the runner knows none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..resolver import Plan
    from ..task import Task
    from .result import BuildResult, Status


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    plan: Plan
    workers: int


@dataclass(frozen=True)
class TaskStarted:
    run_id: str
    task_id: str
    family: str
    attempt: int
    reason: str


@dataclass(frozen=True)
class TaskRetrying:
    run_id: str
    task_id: str
    family: str
    attempt: int
    delay: float
    error: str


@dataclass(frozen=True)
class AttemptFailed:
    """One attempt failed (before the runner decides to retry or give up).

    Emitted before `TaskRetrying` / `TaskFinished`, so a listener can complete the
    attempt's log file (a killed worker could not) before the result points to it.
    """

    run_id: str
    task_id: str
    family: str
    attempt: int
    error: str
    log_path: str | None = None
    timed_out: bool = False
    worker_pid: int = 0  # the process that ran the attempt (0: not known)
    worker: str = ""  # where it ran when not on this machine (a Dask worker's address)
    #: what run() raised, when it came back from where the attempt ran (else None)
    exception: BaseException | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class TaskWaiting:
    """The task is held by another worker; this run waits for it."""

    run_id: str
    task_id: str
    holder: str


@dataclass(frozen=True)
class WaitingForInput:
    """An external input is missing and this run waits for it (`--wait-for-inputs`).

    Emitted once per input when the wait begins; its `TaskFinished` ends it (`complete`:
    it arrived; `missing input`: the wait ran out).
    """

    run_id: str
    task_id: str
    family: str
    paths: tuple[str, ...]
    since: float  # seconds since the epoch
    until: float  # seconds since the epoch: when the wait runs out
    reason: str = ""  # why it is not taken yet ("... missing", "... still growing ...")


@dataclass(frozen=True)
class TaskFinished:
    """A task reached its final state in this run (see `result.Status`)."""

    run_id: str
    task_id: str
    family: str
    status: Status
    attempts: int = 0
    duration: float = 0.0
    error: str = ""
    log_path: str | None = None
    worker_pid: int = 0  # the process that ran the last attempt (0: none ran, or not known)
    worker: str = ""  # where the last attempt ran when not on this machine (a Dask worker)


@dataclass(frozen=True)
class TasksYielded:
    """A task's run() yielded tasks not complete yet: it waits for them, then goes on."""

    run_id: str
    task_id: str
    family: str
    yielded: tuple[str, ...]  # the task ids, as run() yielded them
    added: int = 0  # steps the plan gained for them (they and what they need)
    tasks: tuple[Task, ...] = field(default=(), repr=False)  # the tasks themselves


@dataclass(frozen=True)
class RunFinished:
    run_id: str
    result: BuildResult = field(repr=False)


Event = (RunStarted | TaskStarted | AttemptFailed | TaskRetrying | TaskWaiting
         | WaitingForInput | TaskFinished | TasksYielded | RunFinished)

#: Every kind of event, in the order a run may emit them.
EVENT_TYPES: tuple[type, ...] = (RunStarted, TaskStarted, AttemptFailed, TaskRetrying,
                                 TaskWaiting, WaitingForInput, TaskFinished, TasksYielded,
                                 RunFinished)


class Listener(Protocol):
    """Anything with `on_event`; a listener that raises is logged and ignored.

    A listener may name the kinds of event it acts on in a class attribute `listens_to` (a
    tuple of event types; anything else, or no such attribute: every event). The runner
    then hands it only those (see `routes`): a run of many quick tasks emits two events per
    task, and a listener that only waits for the run's end is not called for each.
    """

    def on_event(self, event: Event) -> None: ...


def routes(listeners: list[Listener]) -> dict[type, tuple[Listener, ...]]:
    """Event type -> the listeners that hear it, in their order (each listener's
    `listens_to`; a listener without a tuple there hears every event)."""
    wanted = [(listener, getattr(listener, "listens_to", None)) for listener in listeners]
    return {kind: tuple(listener for listener, kinds in wanted
                        if not isinstance(kinds, tuple) or kind in kinds)
            for kind in EVENT_TYPES}
