"""TaskParameter: a task class as a parameter, written by its family name."""

from __future__ import annotations

from typing import Any

from .base import Parameter


def _task_classes() -> list[type[Any]]:
    """Every Task subclass defined in this process (the task modules are imported by then:
    the command line and config load them before parsing parameters)."""
    from ..task import Task

    found: list[type[Any]] = []
    pending = list(Task.__subclasses__())
    seen: set[type[Any]] = set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


class TaskParameter(Parameter):
    """A task class (not an instance): `Report(source=Clean)` from code, `--source Clean`
    on the command line, where it is the family name (or `package.module.Class`).

    The value is the class; it is written back as its family name.
    """

    type_name = "task"

    def parse(self, text: str) -> type[Any]:
        name = text.strip()
        matches = [cls for cls in _task_classes() if cls.family() == name]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            paths = ", ".join(sorted(f"{c.__module__}.{c.__name__}" for c in matches))
            raise ValueError(f"task name '{name}' is ambiguous: use one of {paths}")
        if "." in name:
            from ..errors import BatchdepsError
            from ..registry import TaskRegistry

            try:
                return self._check(TaskRegistry().get(name))
            except BatchdepsError as exc:
                raise ValueError(str(exc)) from None
        raise ValueError(f"no task is called '{name}' (give a task family, or "
                         "package.module.Class)")

    def _check(self, value: Any) -> type[Any]:
        from ..task import Task

        if not (isinstance(value, type) and issubclass(value, Task)):
            raise ValueError(f"expected a task class, got {type(value).__name__} {value!r}")
        return value

    def serialize(self, value: Any) -> str:
        return str(value.family())
