"""The order in which ready steps start: first in, first out, or by `priority` (higher first).

A plan whose tasks all have the default priority (0) uses a plain `deque` as its ready
queue, so the common case pays nothing for priorities. As soon as one task of the plan has
another priority, the runner uses a `PriorityQueue` instead: a heap keyed by the step's
effective priority, then by arrival. As in Luigi, a task's effective priority is the
highest of its own and that of every task that needs it, so what a high-priority task
waits for is not left behind lower-priority work.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from numbers import Real
from typing import TYPE_CHECKING, Protocol

from ..errors import TaskDefinitionError

if TYPE_CHECKING:
    from ..resolver import Step


class ReadySteps(Protocol):
    """What the runner does with its ready queue (a `deque` is one)."""

    def append(self, step: Step, /) -> None: ...

    def popleft(self) -> Step: ...

    def rotate(self, n: int, /) -> None: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Step]: ...


def priority_of(step: Step) -> float:
    """The task's own `priority` (an attribute or a property); a wrong one names the task."""
    task = step.task
    try:
        value = task.priority
    except Exception as exc:
        raise TaskDefinitionError(
            f"{task.task_id}: priority raised {type(exc).__name__}: {exc}") from exc
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TaskDefinitionError(
            f"{task.task_id}: priority must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def own_priorities(steps: Iterable[Step]) -> list[float] | None:
    """Each step's own priority, or None when every one is the default 0."""
    values = [priority_of(step) for step in steps]
    return values if any(values) else None


class PriorityQueue:
    """Ready steps, highest effective priority first, in arrival order among equals.

    Has what the runner uses of a deque: `append`, `popleft`, `len`, iteration (the heap's
    order: the first entries are among the next to start) and `rotate`, which does nothing
    (the order is the priorities').
    """

    def __init__(self, effective: list[float], steps: Iterable[Step] = ()) -> None:
        self.effective = effective  # by step index; grows with the plan
        self._heap: list[tuple[float, int, Step]] = []
        self._arrival = itertools.count()
        for step in steps:
            self.append(step)

    def append(self, step: Step) -> None:
        heapq.heappush(self._heap, (-self.effective[step.index], next(self._arrival), step))

    def popleft(self) -> Step:
        return heapq.heappop(self._heap)[2]

    def rotate(self, n: int) -> None:
        pass

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[Step]:
        return (entry[2] for entry in self._heap)

    def add_steps(self, added: list[Step], own: list[float], floor: float) -> None:
        """Effective priorities of steps new to the plan (in dependency order, `own`
        theirs), all needed by a step whose effective priority is `floor`."""
        effective = self.effective
        effective.extend(max(value, floor) for value in own)
        for step in reversed(added):
            best = effective[step.index]
            for down in step.downstream:
                if effective[down.index] > best:
                    best = effective[down.index]
            effective[step.index] = best


def effective_priorities(steps: list[Step], own: list[float]) -> list[float]:
    """Per step index: the highest priority of the step and of every step downstream."""
    effective = list(own)
    for step in reversed(steps):  # dependency order: downstream steps come later
        best = effective[step.index]
        for down in step.downstream:
            if effective[down.index] > best:
                best = effective[down.index]
        effective[step.index] = best
    return effective
