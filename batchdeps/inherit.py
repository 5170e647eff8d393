"""`bd.inherits` and `bd.requires`: class decorators that copy parameters between tasks.

    @bd.requires(Clean)                 # Clean's parameters, and requires() -> Clean(...)
    class Report(bd.Task):
        def output(self): ...

The semantics are Luigi's `luigi.util`: each parameter of the given tasks that the class
does not have yet (by name) is added to it, ahead of the class's own, and the class gains
`clone_parent()` (the first task, with this task's values) and `clone_parents()` (all of
them: a list, or a dict for tasks given by keyword). `requires` also defines `requires()`
returning `clone_parent()` for one task, else `clone_parents()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .errors import TaskDefinitionError
from .parameters import Parameter
from .task import Task

T = TypeVar("T", bound=type[Task])


class DecoratorUseError(TaskDefinitionError, TypeError):
    """`bd.inherits` / `bd.requires` used wrongly; also a TypeError, as Luigi raises."""


def _check(decorator: str, tasks: tuple[Any, ...], named: dict[str, Any]) -> None:
    if not tasks and not named:
        raise DecoratorUseError(f"bd.{decorator}() needs at least one task class")
    if tasks and named:
        raise DecoratorUseError(f"bd.{decorator}(): give the task classes either all by "
                                "position or all by keyword, not both")
    for given in (*tasks, *named.values()):
        if not (isinstance(given, type) and issubclass(given, Task)):
            raise DecoratorUseError(f"bd.{decorator}(): {given!r} is not a task class")


def _copy_parameters(cls: type[Task], parents: list[type[Task]]) -> None:
    """Add the parents' parameters `cls` lacks, ahead of its own, and recount them."""
    added: dict[str, Parameter] = {}
    for parent in parents:
        for name, param in parent.get_params():
            if name not in added and not hasattr(cls, name):
                added[name] = param
    if not added:
        return
    # The class's own parameters are set again after the copies, so that its attribute
    # order (which subclasses read) and its parameter order both put the copies first.
    own = {name: value for name, value in vars(cls).items() if isinstance(value, Parameter)}
    for name in own:
        delattr(cls, name)
    for name, param in {**added, **own}.items():
        setattr(cls, name, param)
    cls.collect_parameters()


def inherits(*tasks: type[Task], **named: type[Task]) -> Callable[[T], T]:
    """Class decorator: the class gets the parameters of `tasks` it does not have, and
    `clone_parent()` / `clone_parents()` (see the module docstring)."""
    _check("inherits", tasks, named)

    def decorate(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise DecoratorUseError(f"bd.inherits(...) decorates task classes, not {cls!r}")
        _copy_parameters(cls, [*tasks, *named.values()])
        if tasks:
            def clone_parent(self: Task, **kwargs: Any) -> Task:
                return self.clone(cls=tasks[0], **kwargs)

            def clone_parents(self: Task, **kwargs: Any) -> Any:
                return [self.clone(cls=parent, **kwargs) for parent in tasks]

            cls.clone_parent = clone_parent  # type: ignore[attr-defined]
        else:
            def clone_parents(self: Task, **kwargs: Any) -> Any:
                return {key: self.clone(cls=parent, **kwargs) for key, parent in named.items()}

        cls.clone_parents = clone_parents  # type: ignore[attr-defined]
        return cls

    return decorate


def requires(*tasks: type[Task], **named: type[Task]) -> Callable[[T], T]:
    """As `inherits`, and `requires()` returns `clone_parent()` for one task given by
    position, else `clone_parents()`."""
    _check("requires", tasks, named)
    inherit = inherits(*tasks, **named)

    def decorate(cls: T) -> T:
        cls = inherit(cls)
        single = len(tasks) == 1

        def requires(self: Task) -> Any:
            return self.clone_parent() if single else self.clone_parents()  # type: ignore[attr-defined]

        cls.requires = requires  # type: ignore[method-assign]
        return cls

    return decorate
