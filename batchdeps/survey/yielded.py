"""What each task's `run()` yielded the last time it yielded, as the local history recorded it.

A dynamic dependency is only known by running: `requires()` does not name it. The runner
records every task a `run()` yields (`history.records.yielded_spec`: id, class and
parameters); `status` and `graph` make those tasks again from that record and show them
as requirements of the task that yielded them (marked as yielded). A recorded task whose
class can no longer be imported, or whose parameters no longer make the same task id, is
left out with a warning.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from typing import Any

from ..task import Task

#: A task -> the tasks its run() yielded last (empty when none is recorded).
YieldedLookup = Callable[[Task], list[Task]]


def recorded_yields(config: Any, warnings: list[str]) -> YieldedLookup | None:
    """The lookup over the local history file (None when there is no history, or no
    yields in it); problems rebuilding a recorded task are appended to `warnings`."""
    from ..history.listener import history_path

    if not config.history.get("enabled", True):
        return None
    path = history_path(config)
    if not os.path.exists(path):
        return None
    import sqlite3

    from ..history.store import read_yielded

    try:
        specs = read_yielded(path)
    except (sqlite3.Error, OSError) as exc:
        warnings.append(f"cannot read the history in {path} for yielded tasks: {exc}")
        return None
    if not specs:
        return None
    cache: dict[str, Task | None] = {}

    def lookup(task: Task) -> list[Task]:
        found = []
        for spec in specs.get(task.task_id, ()):
            if spec not in cache:
                cache[spec] = _rebuild(spec, task, warnings)
            made = cache[spec]
            if made is not None:
                found.append(made)
        return found

    return lookup


def _rebuild(spec: str, parent: Task, warnings: list[str]) -> Task | None:
    """The task a `yielded_spec` describes, or None (with a warning saying why)."""
    try:
        data = json.loads(spec)
        task_id = data["task_id"]
    except (ValueError, KeyError, TypeError):
        warnings.append(f"{parent.task_id}: a yielded task recorded in the history "
                        "cannot be read; it is left out")
        return None
    where = f"{task_id}, which {parent.task_id}'s run() yielded in its last run,"
    if "class" not in data:
        warnings.append(f"{where} was recorded without its parameters; it is left out")
        return None
    module_name, _, name = str(data["class"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except Exception as exc:  # noqa: BLE001 - any import problem: leave that task out
        warnings.append(f"{where} cannot be made again: cannot import {data['class']} "
                        f"({type(exc).__name__}: {exc}); it is left out")
        return None
    try:
        params = dict(data.get("params", {}))
        by_name = {param.name: param for param in cls.parameters()}
        made = cls(**{name: by_name[name].parse(text) for name, text in params.items()
                      if name in by_name})
    except Exception as exc:  # noqa: BLE001 - a changed class: leave that task out
        warnings.append(f"{where} cannot be made again ({type(exc).__name__}: {exc}); "
                        "it is left out")
        return None
    if not isinstance(made, Task) or made.task_id != task_id:
        warnings.append(f"{where} now makes a different task "
                        f"({getattr(made, 'task_id', made)!r}); it is left out")
        return None
    return made
