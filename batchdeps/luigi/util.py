"""Luigi's `luigi.util`: the `inherits` and `requires` class decorators (batchdeps' own),
`copies` and `delegates`, `common_params`, and `previous` / `get_previous_completed` for a
task with one date or time parameter."""

from __future__ import annotations

from typing import Any

from ..inherit import inherits, requires

__all__ = ["common_params", "copies", "delegates", "get_previous_completed", "inherits",
           "previous", "requires"]


def copies(task_to_copy: type) -> Any:
    """Class decorator (Luigi's): the class requires `task_to_copy` with its parameters, and
    its `run()` copies that task's one output, line by line, to its own one output."""
    def decorate(cls: Any) -> Any:
        cls = requires(task_to_copy)(cls)

        def run(self: Any) -> None:
            with self.input().open("r") as source, self.output().open("w") as copy:
                for line in source:
                    copy.write(line)

        run.__qualname__ = f"{cls.__qualname__}.run"
        cls.run = run
        return cls

    return decorate


def delegates(task_that_delegates: Any) -> Any:
    """Class decorator (Luigi's): the tasks the class's `subtasks()` returns are not tasks
    of the graph but parts of this one. What they require, this task requires (its
    `input()` is still what its own `requires()` names), and its `run()` first runs each
    subtask's `run()`, in this task's attempt."""
    from ..task import flatten_requires
    from .task import flatten, getpaths

    if not hasattr(task_that_delegates, "subtasks"):
        raise AttributeError(f'{task_that_delegates} needs to implement the method "subtasks"')
    own_requires = task_that_delegates.requires
    own_run = task_that_delegates.run

    def delegated(self: Any) -> list[Any]:
        return [*flatten(own_requires(self)),
                *(dep for sub in flatten(self.subtasks()) for dep in flatten_requires(sub))]

    def input(self: Any) -> Any:  # noqa: A001 - the task method's name
        return getpaths(own_requires(self))

    def run(self: Any) -> Any:
        for sub in flatten(self.subtasks()):
            sub.run()
        return own_run(self)

    task_that_delegates.requires = delegated
    task_that_delegates.deps = delegated
    task_that_delegates.input = input
    task_that_delegates.run = run
    return task_that_delegates


def common_params(task_instance: Any, task_cls: type) -> dict[str, Any]:
    """The values of `task_instance` for the parameters `task_cls` also has.

    Raises:
        TypeError: `task_instance` is not a task or `task_cls` not a task class (the two
            given the other way round, say), as in Luigi.
    """
    from ..task import Task

    if not isinstance(task_instance, Task):
        raise TypeError(f"common_params({task_instance!r}, ...): the first argument must be "
                        "a task (an instance)")
    if not (isinstance(task_cls, type) and issubclass(task_cls, Task)):
        raise TypeError(f"common_params(..., {task_cls!r}): the second argument must be a "
                        "task class (not an instance)")
    names = {name for name, _ in task_cls.get_params()}
    return {k: v for k, v in task_instance.param_kwargs.items() if k in names}


def _temporal_parameter(task: Any) -> tuple[str, Any]:
    """The one date or time parameter of `task` (name, parameter), as `previous()` needs."""
    from .. import parameters as _bd

    kinds = (_bd.DateParameter, _bd.DateTimeParameter, _bd.DateIntervalParameter)
    found = [(name, param) for name, param in task.get_params() if isinstance(param, kinds)]
    if len(found) != 1:
        raise NotImplementedError(
            f"previous() needs a task with exactly one date, time or date interval "
            f"parameter; {task.task_family} has {len(found)}"
            + (f" ({', '.join(name for name, _ in found)})" if found else ""))
    return found[0]


def previous(task: Any) -> Any:
    """The same task one step of its date or time parameter earlier (Luigi's): a day for a
    date, an hour for a DateHour, the interval before for a DateInterval, ...; the other
    parameters are kept."""
    name, param = _temporal_parameter(task)
    value = getattr(task, name)
    earlier = value.prev() if hasattr(value, "prev") else param._range_value(value, -1)
    return task.clone(**{name: earlier})


def get_previous_completed(task: Any, max_steps: int = 10) -> Any:
    """The nearest earlier task (by `previous()`, at most `max_steps` back) that is
    complete, or None (Luigi's)."""
    _temporal_parameter(task)
    earlier = task
    for _ in range(max_steps):
        earlier = previous(earlier)
        if earlier.complete():
            return earlier
    return None
