"""Luigi's `luigi.util`: the `inherits` and `requires` class decorators (batchdeps' own)."""

from __future__ import annotations

from typing import Any

from ..inherit import inherits, requires

__all__ = ["common_params", "inherits", "requires"]


def common_params(task_instance: Any, task_cls: type) -> dict[str, Any]:
    """The values of `task_instance` for the parameters `task_cls` also has."""
    names = {name for name, _ in task_cls.get_params()}  # type: ignore[attr-defined]
    return {k: v for k, v in task_instance.param_kwargs.items() if k in names}
