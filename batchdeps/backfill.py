"""Backfills: which of many requested tasks one run takes (`--max-tasks`, `--reverse`).

As Luigi's RangeDaily `task_limit`: the bound counts tasks still to build, so a cron job
with `--max-tasks 10` catches up ten missing days per run however many are complete.
Complete requested tasks stay requested (the summary and status report them as complete).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .resolver import complete_many
from .task import Task


@dataclass
class Selection:
    """The requested tasks a run takes, and the incomplete ones left for a later run."""

    tasks: list[Task]
    left: list[Task] = field(default_factory=list)


def select(tasks: Sequence[Task], max_tasks: int | None = None,
           reverse: bool = False) -> Selection:
    """Order `tasks` (oldest first, or newest first with `reverse`) and bound the incomplete.

    `tasks` come in range order (the order of their values); only with `max_tasks` is any
    completeness checked here.
    """
    ordered = list(reversed(tasks)) if reverse else list(tasks)
    if max_tasks is None:
        return Selection(ordered)
    done = complete_many(ordered)
    taken: list[Task] = []
    left: list[Task] = []
    budget = max_tasks
    for task, complete in zip(ordered, done):
        if complete:
            taken.append(task)
        elif budget > 0:
            taken.append(task)
            budget -= 1
        else:
            left.append(task)
    return Selection(taken, left)
