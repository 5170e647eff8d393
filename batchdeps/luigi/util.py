"""Luigi's `luigi.util`: the `inherits` and `requires` class decorators (batchdeps' own),
`common_params`, and `previous` / `get_previous_completed` for a task with one date or time
parameter."""

from __future__ import annotations

from typing import Any

from ..inherit import inherits, requires

__all__ = ["common_params", "get_previous_completed", "inherits", "previous", "requires"]


def common_params(task_instance: Any, task_cls: type) -> dict[str, Any]:
    """The values of `task_instance` for the parameters `task_cls` also has."""
    names = {name for name, _ in task_cls.get_params()}  # type: ignore[attr-defined]
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
