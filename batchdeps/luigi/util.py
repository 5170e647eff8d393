"""Luigi's `inherits` and `requires` class decorators.

`@inherits(A)` gives the class A's parameters (those it does not define itself) and
`clone_parent()`; `@requires(A)` also makes `requires()` return that clone. With several
classes, `clone_parents()` returns one clone of each, and `requires()` returns them all.
"""

from __future__ import annotations

from typing import Any

from ..errors import TaskDefinitionError

__all__ = ["common_params", "inherits", "requires"]


class inherits:  # noqa: N801 - Luigi's name
    """Class decorator: take the parameters of the given task classes."""

    def __init__(self, *tasks_to_inherit: type, **kw_tasks_to_inherit: type) -> None:
        if not tasks_to_inherit and not kw_tasks_to_inherit:
            raise TaskDefinitionError("inherits needs at least one task class")
        if tasks_to_inherit and kw_tasks_to_inherit:
            raise TaskDefinitionError("inherits takes task classes by position or by name, "
                                      "not both")
        self.tasks_to_inherit = tasks_to_inherit
        self.kw_tasks_to_inherit = kw_tasks_to_inherit

    def _parents(self) -> list[type]:
        return list(self.tasks_to_inherit or self.kw_tasks_to_inherit.values())

    def __call__(self, task_that_inherits: Any) -> Any:
        for parent in self._parents():
            for name, param in parent.get_params():
                if not hasattr(task_that_inherits, name):
                    setattr(task_that_inherits, name, param)
        task_that_inherits._collect_params()
        parents = self.tasks_to_inherit
        named = self.kw_tasks_to_inherit

        if parents:
            def clone_parent(_self: Any, **kwargs: Any) -> Any:
                return _self.clone(cls=parents[0], **kwargs)

            def clone_parents(_self: Any, **kwargs: Any) -> Any:
                return [_self.clone(cls=parent, **kwargs) for parent in parents]

            task_that_inherits.clone_parent = clone_parent
            task_that_inherits.clone_parents = clone_parents
        else:
            def clone_named(_self: Any, **kwargs: Any) -> Any:
                return {key: _self.clone(cls=parent, **kwargs) for key, parent in named.items()}

            task_that_inherits.clone_parents = clone_named
        return task_that_inherits


class requires:  # noqa: N801 - Luigi's name
    """Class decorator: inherit the parameters of the given classes and require them."""

    def __init__(self, *tasks_to_require: type, **kw_tasks_to_require: type) -> None:
        if not tasks_to_require and not kw_tasks_to_require:
            raise TaskDefinitionError("requires needs at least one task class")
        self.inherit = inherits(*tasks_to_require, **kw_tasks_to_require)
        self.single = len(tasks_to_require) == 1 and not kw_tasks_to_require

    def __call__(self, task_that_requires: Any) -> Any:
        task_that_requires = self.inherit(task_that_requires)
        single = self.single

        def requires(_self: Any) -> Any:
            return _self.clone_parent() if single else _self.clone_parents()

        task_that_requires.requires = requires
        return task_that_requires


def common_params(task_instance: Any, task_cls: type) -> dict[str, Any]:
    """The values of `task_instance` for the parameters `task_cls` also has."""
    names = {name for name, _ in task_cls.get_params()}  # type: ignore[attr-defined]
    return {k: v for k, v in task_instance.param_kwargs.items() if k in names}
