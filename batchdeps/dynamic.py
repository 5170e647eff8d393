"""Dynamic dependencies: the tasks a `run()` yields, and driving such a run() in an attempt.

A `run()` written as a generator may yield a task, a list, tuple or dict of tasks, or a
`DynamicRequirements`; the `yield` evaluates to the outputs of what was yielded, in the
same shape (as `input()` does for `requires()`). Yielded tasks that are complete return
at once; otherwise the attempt stops at the yield and hands the tasks to the runner,
which resolves, locks and builds them like any other task, then lets `run()` go on:

- resumed at the yield, in the same attempt, when the attempt runs in the runner's own
  process (the inline executor): a `PausedRun` keeps the generator and the attempt's
  staged writes until the yielded tasks are there;
- run again from the top when the attempt ran in a worker process (forked workers, Dask):
  its staged writes are discarded, and the yields of tasks now complete return at once.

Either way the yielded tasks are checked again before `run()` goes on, so a yielded task
must be complete once it was built (outputs, or a `complete()` that turns true).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import TaskDefinitionError
from .task import Task, _leaves, map_structure

if TYPE_CHECKING:
    from .targets import Staging

CompleteFn = Callable[[Task], bool]


class DynamicRequirements:
    """Tasks a `run()` needs before it goes on, yielded as one (Luigi's name and shape).

    Args:
        requirements: a task, or a list, tuple or dict of tasks.
        custom_complete: called with a function that tells whether one task is complete;
            returns whether the requirements are all there (say, by checking one summary
            output instead of thousands). Without it, every task is checked.
    """

    def __init__(self, requirements: Any,
                 custom_complete: Callable[[CompleteFn], bool] | None = None) -> None:
        if isinstance(requirements, Iterator):  # a generator: walked once, kept as a list
            requirements = list(requirements)
        self.requirements = requirements
        self.custom_complete = custom_complete
        tasks = [requirements] if isinstance(requirements, Task) else list(_leaves(requirements))
        for leaf in tasks:
            if not isinstance(leaf, Task):
                raise TaskDefinitionError(
                    f"run() yielded {type(leaf).__name__} {leaf!r}; yield a task, a list, "
                    "tuple or dict of tasks, or bd.DynamicRequirements")
        self.flat_requirements: list[Task] = list(dict.fromkeys(tasks))

    @property
    def paths(self) -> Any:
        """The outputs of the requirements, in their shape: what the `yield` evaluates to."""
        return map_structure(lambda task: task.output(), self.requirements)

    def complete(self, complete_fn: CompleteFn | None = None) -> bool:
        """True when `run()` can go on; outputs are checked in one batch by default."""
        if self.custom_complete is not None:
            return bool(self.custom_complete(complete_fn or _complete_one))
        if complete_fn is not None:
            return all(complete_fn(task) for task in self.flat_requirements)
        from .resolver import complete_many

        return all(complete_many(self.flat_requirements))

    def __repr__(self) -> str:
        return f"DynamicRequirements({self.flat_requirements!r})"


def _complete_one(task: Task) -> bool:
    from .resolver import complete_many

    return complete_many([task])[0]


def as_requirements(yielded: Any) -> DynamicRequirements:
    """What a `run()` yielded, as DynamicRequirements (TaskDefinitionError if not tasks)."""
    if isinstance(yielded, DynamicRequirements):
        return yielded
    return DynamicRequirements(yielded)


def drive(generator: Generator[Any, Any, Any],
          waiting_for: DynamicRequirements | None = None) -> DynamicRequirements | None:
    """Run a yielding `run()` on until it ends (None) or yields tasks not complete (them).

    `waiting_for` is what it yielded last, when it is resumed at that yield: it goes on
    with their outputs once they are complete.
    """
    if waiting_for is None:
        value = None
    elif not waiting_for.complete():
        return waiting_for
    else:
        value = waiting_for.paths
    while True:
        try:
            yielded = generator.send(value)
        except StopIteration:
            return None
        wanted = as_requirements(yielded)
        if not wanted.complete():
            return wanted
        value = wanted.paths


@dataclass(eq=False)
class PausedRun:
    """A `run()` stopped at a yield in the runner's process, with its staged writes."""

    generator: Generator[Any, Any, Any]
    staging: Staging
    waiting_for: DynamicRequirements
    closed: bool = False

    def close(self) -> None:
        """The attempt will not go on: end the generator (its `finally` blocks run) and
        throw its staged writes away."""
        if self.closed:
            return
        self.closed = True
        from .targets import staging_scope

        with staging_scope(self.staging), contextlib.suppress(Exception):
            self.generator.close()
        self.staging.discard()
