"""Event handlers: `@Task.event_handler(Event.SUCCESS)` callbacks, and the listener firing them.

A handler registered on a class hears the events of that class's tasks and its
subclasses' (on `bd.Task`: every task). They are called in the runner's process from the
run's events (report/events.py), with Luigi's arguments:

    START(task)                       an attempt starts (each retry too)
    SUCCESS(task)                     built: run() returned and its outputs are committed
    PROCESSING_TIME(task, seconds)    just before SUCCESS: the time its attempts took
    FAILURE(task, exception)          an attempt failed (each retry too): what run()
                                      raised, or, when it could not travel from the
                                      worker process (not picklable), a TaskFailed
                                      carrying the error's last line
    TIMEOUT(task, message)            an attempt ran past `timeout` and was killed
    PROCESS_FAILURE(task, message)    the worker process running the attempt died
    DEPENDENCY_MISSING(task)          an external task's output is missing
    DEPENDENCY_PRESENT(task)          a task was found complete (requested, or required
                                      by a task that runs)
    DEPENDENCY_DISCOVERED(task, dep)  for each task that runs, each task it requires
    PROGRESS(...)                     only what a task fires itself (`trigger_event`)
    BROKEN_TASK(task, exception)      the task's requires(), output() or complete() raised
                                      while the run was resolved (a --dry-run too); the
                                      run then stops as a definition error (exit 2)

Other names than `event.core.*` are events of one's own, as in Luigi: a handler may be
registered for any such string, and only `trigger_event` fires them. A name under
`event.core.` that is none of these is refused (a typo would never fire).

A handler that raises is logged and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import logs
from .report.events import (
    AttemptFailed,
    Event as RunEvent,
    RunStarted,
    TaskFinished,
    TasksYielded,
    TaskStarted,
)
from .report.result import Status

if TYPE_CHECKING:
    from .resolver import Plan
    from .task import Task

log = logs.get()

Callback = Callable[..., Any]


class Event:
    """The names of the events a handler can be registered for (Luigi's strings)."""

    DEPENDENCY_DISCOVERED = "event.core.dependency.discovered"
    DEPENDENCY_MISSING = "event.core.dependency.missing"
    DEPENDENCY_PRESENT = "event.core.dependency.present"
    BROKEN_TASK = "event.core.task.broken"
    START = "event.core.start"
    PROGRESS = "event.core.progress"
    FAILURE = "event.core.failure"
    SUCCESS = "event.core.success"
    PROCESSING_TIME = "event.core.processing_time"
    TIMEOUT = "event.core.timeout"
    PROCESS_FAILURE = "event.core.process_failure"


KNOWN_EVENTS = frozenset(value for name, value in vars(Event).items() if name.isupper())


#: The prefix of the events batchdeps fires (Luigi's); other names are one's own.
CORE_PREFIX = "event.core."


def check_event(cls: type, event: str) -> None:
    """TaskDefinitionError for an event name that is not a string, or is under
    `event.core.` but none of `Event`'s (a misspelt event would never fire)."""
    from .errors import TaskDefinitionError

    if not isinstance(event, str) or not event:
        raise TaskDefinitionError(f"{cls.__name__}.event_handler({event!r}): an event is a "
                                  "name (a bd.Event, or a string of one's own)")
    if event.startswith(CORE_PREFIX) and event not in KNOWN_EVENTS:
        raise TaskDefinitionError(
            f"{cls.__name__}.event_handler({event!r}): no such event; use one of "
            f"bd.Event.{', bd.Event.'.join(n for n in vars(Event) if n.isupper())}, or a "
            f"name of one's own outside {CORE_PREFIX}*")


class HandlerRegistry:
    """Callbacks by the class they were registered on and the event name."""

    def __init__(self) -> None:
        self.by_class: dict[type, dict[str, list[Callback]]] = {}

    def add(self, cls: type, event: str, callback: Callback) -> None:
        check_event(cls, event)
        callbacks = self.by_class.setdefault(cls, {}).setdefault(event, [])
        if callback not in callbacks:
            callbacks.append(callback)

    def remove(self, cls: type, event: str, callback: Callback) -> None:
        """Unregister; KeyError/ValueError when it was not registered there, as in Luigi."""
        self.by_class[cls][event].remove(callback)

    def wants(self, event: str) -> bool:
        return any(event in by_event for by_event in self.by_class.values())

    def __bool__(self) -> bool:
        return any(any(by_event.values()) for by_event in self.by_class.values())

    def callbacks(self, task: Task, event: str) -> list[Callback]:
        found: list[Callback] = []
        for cls, by_event in self.by_class.items():
            if isinstance(task, cls):
                found.extend(by_event.get(event, ()))
        return found

    def fire(self, task: Task, event: str, *args: Any, **kwargs: Any) -> None:
        """Call every callback for `event` that `task`'s class hears; errors are logged."""
        for callback in self.callbacks(task, event):
            try:
                callback(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a handler never changes the run
                log.warning("event handler %s for %s of %s raised %s: %s",
                            getattr(callback, "__qualname__", callback), event,
                            task.task_id, type(exc).__name__, exc)


#: The process's handlers: classes register theirs when they are defined (an import-time
#: fact, as the classes themselves), so it is one object; the listener takes it as argument.
handlers = HandlerRegistry()


class TaskFailed(RuntimeError):
    """What a FAILURE handler receives when the exception run() raised could not come back
    from the worker process that ran it (it did not pickle): the error's last line."""


class EventHandlerListener:
    """Fires the registered handlers from the run's events, in the runner's process."""

    def __init__(self, registry: HandlerRegistry) -> None:
        self.registry = registry
        self.plan: Plan | None = None
        self._tasks: dict[str, Task] = {}
        self._seen_steps = 0

    def on_event(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted):
            self.plan = event.plan
            self._tasks = {}
            self._seen_steps = 0
            self._discover(event.plan)
        elif isinstance(event, TaskStarted):
            self._fire(event.task_id, Event.START)
        elif isinstance(event, AttemptFailed):
            self._failed(event)
        elif isinstance(event, TaskFinished):
            if event.status is Status.BUILT:
                self._fire(event.task_id, Event.PROCESSING_TIME, event.duration)
                self._fire(event.task_id, Event.SUCCESS)
            elif event.status is Status.MISSING_INPUT:
                self._fire(event.task_id, Event.DEPENDENCY_MISSING)
        elif isinstance(event, TasksYielded):
            for task in event.tasks:
                self._tasks.setdefault(task.task_id, task)
            parent = self._task(event.task_id)
            if parent is not None and self.registry.wants(Event.DEPENDENCY_DISCOVERED):
                for task in event.tasks:
                    self.registry.fire(parent, Event.DEPENDENCY_DISCOVERED, parent, task)

    def _failed(self, event: AttemptFailed) -> None:
        from .run.executors import WORKER_DIED

        if event.timed_out:
            self._fire(event.task_id, Event.TIMEOUT, event.error)
        elif event.error.startswith(WORKER_DIED):
            self._fire(event.task_id, Event.PROCESS_FAILURE, event.error)
        else:
            exception = event.exception
            self._fire(event.task_id, Event.FAILURE,
                       exception if exception is not None else TaskFailed(event.error))

    def _discover(self, plan: Plan) -> None:
        """DEPENDENCY_PRESENT for the complete tasks, DISCOVERED for each requirement."""
        from .resolver import StepKind
        from .task import flatten_requires

        present = list(plan.complete)
        discovered = self.registry.wants(Event.DEPENDENCY_DISCOVERED)
        if discovered or self.registry.wants(Event.DEPENDENCY_PRESENT):
            in_plan = plan.by_task()
            seen = set(present)
            for step in plan.steps:
                if step.kind is not StepKind.RUN:
                    continue
                for dep in flatten_requires(step.task):
                    if discovered:
                        self.registry.fire(step.task, Event.DEPENDENCY_DISCOVERED,
                                           step.task, dep)
                    if dep not in in_plan and dep not in seen:
                        seen.add(dep)
                        present.append(dep)
        for task in present:
            self.registry.fire(task, Event.DEPENDENCY_PRESENT, task)

    def _fire(self, task_id: str, event: str, *extra: Any) -> None:
        task = self._task(task_id)
        if task is not None:
            self.registry.fire(task, event, task, *extra)

    def _task(self, task_id: str) -> Task | None:
        task = self._tasks.get(task_id)
        if task is None and self.plan is not None:
            steps = self.plan.steps
            for step in steps[self._seen_steps:]:  # a plan grows with what run() yields
                self._tasks[step.task_id] = step.task
            self._seen_steps = len(steps)
            task = self._tasks.get(task_id)
        return task


def listener_for(registry: HandlerRegistry = handlers) -> EventHandlerListener | None:
    """The listener when any handler is registered (else None: a run pays nothing)."""
    return EventHandlerListener(registry) if registry else None

