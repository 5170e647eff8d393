"""The task model: Task, ExternalTask, WrapperTask, their identity and their structures."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from types import GeneratorType
from typing import Any, ClassVar

from .config import UnsetVariable
from .errors import ConfigError, ParameterError, TaskDefinitionError
from .parameters import Parameter


class Task:
    """A unit of work: parameters, `requires()`, `output()` and `run()`.

    Two tasks of the same family with the same parameter values are equal, hash alike and
    share one `task_id`, the string `Family(param=value, ...)` used in logs and as lock key.
    """

    # Options; None means "take the config default, else the built-in default".
    retries: ClassVar[int | None] = None
    retry_delay: ClassVar[float | None] = None
    retry_backoff: ClassVar[float | None] = None
    max_retry_delay: ClassVar[float | None] = None
    timeout: ClassVar[float | None] = None
    resources: ClassVar[dict[str, int]] = {}
    #: among ready tasks, a higher one starts first (Luigi's); may be a property
    priority: float = 0

    # Filled in per class by __init_subclass__ and by the registry.
    _params: ClassVar[tuple[Parameter, ...]] = ()
    _config_defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        params: dict[str, Parameter] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Parameter):
                    params[name] = value
                elif name in params:  # a subclass replaced the parameter with a constant
                    del params[name]
        cls._params = tuple(params.values())
        cls._config_defaults = {}

    @classmethod
    def family(cls) -> str:
        """The family name: the class name."""
        return cls.__name__

    @classmethod
    def parameters(cls) -> tuple[Parameter, ...]:
        """The class's parameters in declaration order (inherited ones first)."""
        return cls._params

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        family = cls.__name__
        params = cls._params
        if len(args) > len(params):
            raise ParameterError(
                f"{family}: takes {len(params)} parameter(s), {len(args)} given positionally"
            )
        for param, value in zip(params, args):
            if param.name in kwargs:
                raise ParameterError(f"{family}: parameter '{param.name}' given twice")
            kwargs[param.name] = value
        values: list[Any] = []
        config_defaults = cls._config_defaults
        for param in params:
            name = param.name
            if name in kwargs:
                value = param.convert(family, kwargs.pop(name))
            elif name in config_defaults:
                value = config_defaults[name]
                if isinstance(value, UnsetVariable):
                    raise value.error()
            elif param.has_default:
                value = param.convert(family, param.default)
            else:
                raise ParameterError(f"{family}: missing value for parameter '{name}'")
            self.__dict__[name] = value
            values.append(value)
        if kwargs:
            unknown = ", ".join(sorted(kwargs))
            raise ParameterError(f"{family}: unknown parameter(s) {unknown}")
        self.param_values = tuple(values)
        rendered = ", ".join(
            f"{p.name}={p.render(v)}" for p, v in zip(params, values)
        )
        self.task_id = f"{family}({rendered})"

    # -- identity ----------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and other.task_id == self.task_id

    def __hash__(self) -> int:
        return hash(self.task_id)  # a str keeps its hash: nothing to store per task

    def __repr__(self) -> str:
        return self.task_id

    def to_str_params(self) -> dict[str, str]:
        """Parameter values as the strings the command line would take."""
        return {p.name: p.serialize(v) for p, v in zip(self._params, self.param_values)}

    # -- what users override -----------------------------------------------------------
    def requires(self) -> Any:
        """The tasks this one needs: None, a task, or a list/tuple/dict of tasks."""
        return []

    def output(self) -> Any:
        """The targets this task makes: a target, or a list/tuple/dict of targets."""
        return []

    def run(self) -> None:
        """Do the work; every output must exist when this returns."""
        raise NotImplementedError(f"{self.task_id} has no run()")

    def input(self) -> Any:
        """The outputs of `requires()`, in the same shape."""
        return map_structure(lambda task: task.output(), self.requires())

    def complete(self) -> bool:
        """True when every output exists; a task with no outputs is never complete."""
        outputs = flatten_outputs(self)
        if not outputs:
            return False
        return all(target.exists() for target in outputs)

    def on_success(self) -> None:
        """Called in the runner's process once `run()` succeeded and its outputs are committed.

        An exception raised here is logged and does not change the task's result.
        """

    def on_failure(self, error: BaseException) -> None:
        """Called in the runner's process once the task failed for good (retries used up).

        `error` carries the last line of the final attempt's error ("timed out after 5 s",
        "ValueError: ..."); an exception raised here is logged and changes nothing.
        """


class ExternalTask(Task):
    """Data made outside the pipeline: only `output()`; never run.

    When it counts as arrived (docs/sensors.md; decided in `arrival.py`): `ready_after`
    (a time of day "02:00", a `datetime.time` or `datetime.datetime`, or a property or
    method giving one per instance) before which it is not even looked at, and
    `stable_for` (seconds) that its outputs must have gone unchanged, so that a file still
    being written is not taken. A custom `complete()` (a `_SUCCESS` marker) may replace
    the existence check; both guards still apply around it.
    """

    ready_after: ClassVar[Any] = None
    stable_for: ClassVar[float | None] = None

    def complete(self) -> bool:
        from .arrival import guarded, look

        return look(self).arrived if guarded(self) else super().complete()

    def run(self) -> None:  # pragma: no cover - the runner never calls it
        raise TaskDefinitionError(f"{self.task_id} is external and cannot be run")


class WrapperTask(Task):
    """Only `requires()`; complete when all its requirements are complete."""

    def complete(self) -> bool:
        return all(task.complete() for task in flatten_requires(self))

    def run(self) -> None:
        return None


# -- structures ------------------------------------------------------------------------
def _is_sequence(struct: Any) -> bool:
    """Lists and tuples, and (as in Luigi) generators and sets, which become lists."""
    return isinstance(struct, (list, tuple, set, frozenset, GeneratorType, map, filter))


def map_structure(func: Callable[[Any], Any], struct: Any) -> Any:
    """Apply `func` to each leaf of None / leaf / list / tuple / mapping, keeping the shape.

    A mapping comes back as the same type (OrderedDict, defaultdict, a subclass of dict or
    of Mapping that can be built from a dict), a named tuple as the same named tuple.
    A generator or set (a `requires()` written with `yield`) comes back as a list.
    """
    if struct is None:
        return None
    if isinstance(struct, Mapping):
        mapped = {key: map_structure(func, value) for key, value in struct.items()}
        return mapped if type(struct) is dict else _same_mapping(struct, mapped)
    if isinstance(struct, tuple):
        values = [map_structure(func, value) for value in struct]
        if type(struct) is not tuple and hasattr(struct, "_fields"):
            return type(struct)(*values)  # a named tuple
        return tuple(values)
    if _is_sequence(struct):
        return [map_structure(func, value) for value in struct]
    return func(struct)


def _same_mapping(original: Mapping[Any, Any], mapped: dict[Any, Any]) -> Any:
    """`mapped` as a mapping of `original`'s type (a plain dict if that cannot be made)."""
    if isinstance(original, MutableMapping):
        # A copy keeps what the constructor would not take again (a defaultdict's factory);
        # a mapping that cannot be copied is built from the dict below.
        with contextlib.suppress(Exception):
            same = copy.copy(original)
            same.clear()
            same.update(mapped)
            return same
    try:
        return type(original)(mapped)  # type: ignore[call-arg]
    except Exception:  # noqa: BLE001 - a plain dict still has every key
        return mapped


def _leaves(struct: Any) -> Iterator[Any]:
    if struct is None:
        return
    if isinstance(struct, Mapping):
        for value in struct.values():
            yield from _leaves(value)
    elif _is_sequence(struct):
        for value in struct:
            yield from _leaves(value)
    else:
        yield struct


def flatten_requires(task: Task) -> list[Task]:
    """The tasks `task.requires()` returns, as a list; a definition error names the task."""
    leaves = _call_and_flatten(task, "requires")
    for leaf in leaves:
        if not isinstance(leaf, Task):
            raise TaskDefinitionError(
                f"{task.task_id}: requires() must return tasks, "
                f"got {type(leaf).__name__} {leaf!r}"
            )
    return leaves


def flatten_outputs(task: Task) -> list[Any]:
    """The targets `task.output()` returns, as a list; a definition error names the task."""
    from .targets import Target

    leaves = _call_and_flatten(task, "output")
    for leaf in leaves:
        if not isinstance(leaf, Target):
            raise TaskDefinitionError(
                f"{task.task_id}: output() must return targets, "
                f"got {type(leaf).__name__} {leaf!r}"
            )
    return leaves


def _call_and_flatten(task: Task, method: str) -> list[Any]:
    """The leaves of `task.<method>()`; what it raises, also while a generator it returned
    is walked, becomes a TaskDefinitionError naming the task."""
    from .targets import Target

    try:
        struct = getattr(task, method)()
        if isinstance(struct, (Task, Target)):
            return [struct]
        return list(_leaves(struct))
    except (TaskDefinitionError, ConfigError):  # a default from an unset ${VAR}: as it is
        raise
    except Exception as exc:
        raise TaskDefinitionError(
            f"{task.task_id}: {method}() raised {type(exc).__name__}: {exc}"
        ) from exc
