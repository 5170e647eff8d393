"""Luigi's task register: every task class by family, and the instance cache.

`Register` is the metaclass of `batchdeps.luigi.Task`, as in Luigi: making a task twice
with the same parameter values gives the same object (a task that keeps state between
`run()` and `complete()` relies on it), and `Register.get_task_cls("examples.Foo")`
finds a class by its family for the command line.
"""

from __future__ import annotations

import abc
import difflib
from typing import Any

from ..errors import UnknownTaskError

__all__ = ["Register", "TaskClassAmbigiousException", "TaskClassException",
           "TaskClassNotFoundException", "load_task"]


class TaskClassException(UnknownTaskError):
    """No task class, or more than one, has the family asked for."""


class TaskClassNotFoundException(TaskClassException):
    """No task class has the family asked for."""


class TaskClassAmbigiousException(TaskClassException):
    """Several task classes have the family asked for (Luigi's spelling)."""


class Register(abc.ABCMeta):
    """The metaclass of Luigi tasks: registers each class, caches instances."""

    _reg: list[type] = []
    __instance_cache: dict[Any, Any] | None = {}

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any],
                **kwargs: Any) -> Any:
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        if "task_family" not in namespace:
            type.__setattr__(cls, "_family_from_name", True)
        Register._reg.append(cls)
        return cls

    def __setattr__(cls, name: str, value: Any) -> None:
        """A class renamed after it was made (`NewTask.__name__ = "X"`, as class factories
        do) takes the new name as its family, as Luigi reads the name when asked."""
        super().__setattr__(name, value)
        if name == "__name__" and vars(cls).get("_family_from_name"):
            namespace = cls.get_task_namespace()  # type: ignore[attr-defined]
            super().__setattr__("task_family", f"{namespace}.{value}" if namespace else value)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        unsupported = getattr(cls, "_luigi_unsupported", None)
        if unsupported is not None:  # a stand-in for a contrib class: refused, by name
            from .contrib import refusal

            raise refusal(unsupported if cls.__name__ == unsupported.rpartition(".")[2]
                          else f"{cls.__name__} (a {unsupported})")
        params = cls.get_params()  # type: ignore[attr-defined]
        values = cls.get_param_values(params, args, kwargs)  # type: ignore[attr-defined]
        cls.warn_on_wrong_param_types(params, values, args, kwargs)  # type: ignore[attr-defined]
        cache = Register.__instance_cache
        if cache is None:
            return super().__call__(*args, **kwargs)
        key = (cls, tuple(value for _, value in values))
        try:
            hash(key)
        except TypeError:
            return super().__call__(*args, **kwargs)
        if key not in cache:  # made from what was given, as in Luigi (its warnings name it)
            cache[key] = super().__call__(*args, **kwargs)
        return cache[key]

    @classmethod
    def clear_instance_cache(mcs) -> None:
        Register.__instance_cache = {}

    @classmethod
    def disable_instance_cache(mcs) -> None:
        Register.__instance_cache = None

    @classmethod
    def _get_reg(mcs) -> dict[str, type]:
        """Family -> class of every registered class (the last of a family wins)."""
        found: dict[str, type] = {}
        for cls in Register._reg:
            if _listed(cls):
                found[cls.get_task_family()] = cls  # type: ignore[attr-defined]
        return found

    @classmethod
    def _set_reg(mcs, reg: dict[str, type]) -> None:
        Register._reg = [cls for cls in reg.values()]

    @classmethod
    def task_names(mcs) -> list[str]:
        return sorted(mcs._get_reg())

    @classmethod
    def tasks_str(mcs) -> str:
        return ",".join(mcs.task_names())

    @classmethod
    def get_task_cls(mcs, name: str) -> Any:
        """The task class whose family is `name`."""
        matches = [cls for cls in Register._reg
                   if cls.get_task_family() == name  # type: ignore[attr-defined]
                   and _listed(cls)]
        distinct = list(dict.fromkeys(matches))
        if not distinct:
            names = mcs.task_names()
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise TaskClassNotFoundException(f"No task {name}.{hint} Candidates: "
                                             f"{', '.join(names) or 'none'}")
        latest = distinct[-1]
        same = [cls for cls in distinct
                if (cls.__module__, cls.__qualname__) != (latest.__module__,
                                                          latest.__qualname__)]
        if same:
            raise TaskClassAmbigiousException(f"Task {name} is ambiguous: "
                                              f"{', '.join(c.__module__ for c in distinct)}")
        return latest

    @classmethod
    def get_all_params(mcs) -> Any:
        for family, cls in mcs._get_reg().items():
            for name, param in cls.get_params():  # type: ignore[attr-defined]
                yield family, getattr(cls, "_is_config", False), name, param


def _listed(cls: type) -> bool:
    """Whether the command line may name `cls`: not a contrib stand-in, not a class that
    hides itself (`_visible_in_registry = False`)."""
    if "_luigi_unsupported" in cls.__dict__ or "_visible_in_registry" in cls.__dict__ \
            and not cls.__dict__["_visible_in_registry"]:
        return False
    return bool(getattr(cls, "_visible_in_registry", True))


def load_task(module: str | None, task_name: str, params_str: dict[str, str]) -> Any:
    """Import `module` (if given) and make the task `task_name` from string parameters."""
    if module is not None:
        __import__(module)
    cls = Register.get_task_cls(task_name)
    return cls.from_str_params(params_str)
