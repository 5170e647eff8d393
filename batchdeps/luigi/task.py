"""Luigi's Task API on batchdeps' task model: namespaces, Luigi's task ids, parameters.

A `batchdeps.luigi.Task` is a `batchdeps.Task`, so the resolver, runner, locks, history
and `batchdeps run` take it as any other; on top it has Luigi's names and behaviour:
`task_namespace` / `namespace()` / `auto_namespace()`, `task_family`, `clone()`,
`param_kwargs`, `get_params()`, `from_str_params()`, event handlers, `retry_count`,
a default `run()` that does nothing, and Luigi's task id `Family_params_hash`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any, ClassVar

from .. import task as _bd
from ..config import UnsetVariable
from .task_register import Register
from .parameter import (
    DuplicateParameterException,
    MissingParameterException,
    Parameter,
    ParameterVisibility,
    UnknownParameterException,
)

__all__ = ["Config", "ExternalTask", "Task", "WrapperTask", "auto_namespace", "namespace",
           "task_id_str"]

#: Luigi's task id: the family, up to 3 parameter values cut to 16 characters, and the
#: first 10 hex digits of an MD5 of all significant parameters as sorted JSON.
TASK_ID_INCLUDE_PARAMS = 3
TASK_ID_TRUNCATE_PARAMS = 16
TASK_ID_TRUNCATE_HASH = 10
_INVALID_ID_CHARS = re.compile(r"[^A-Za-z0-9_]")


def task_id_str(task_family: str, params: dict[str, str]) -> str:
    """Luigi's task id for a family and its significant parameters as strings."""
    canonical = json.dumps(params, separators=(",", ":"), sort_keys=True)
    digest = hashlib.md5(canonical.encode("utf-8"), usedforsecurity=False).hexdigest()
    summary = "_".join(params[name][:TASK_ID_TRUNCATE_PARAMS]
                       for name in sorted(params)[:TASK_ID_INCLUDE_PARAMS])
    summary = _INVALID_ID_CHARS.sub("_", summary)
    return f"{task_family}_{summary}_{digest[:TASK_ID_TRUNCATE_HASH]}"


# -- namespaces ------------------------------------------------------------------------
#: (module prefix, namespace) in the order set: the last whose prefix matches wins.
_namespaces: list[tuple[str, Any]] = []
_SAME_AS_MODULE = object()
_UNSET = object()


def namespace(namespace: str | None = None, scope: str = "") -> None:
    """Give tasks defined from now on in modules under `scope` this namespace (Luigi's)."""
    _namespaces.append((scope, namespace or None))


def auto_namespace(scope: str = "") -> None:
    """Give tasks defined from now on in modules under `scope` their module's name."""
    _namespaces.append((scope, _SAME_AS_MODULE))


def _namespace_for(module: str) -> Any:
    for scope, value in reversed(_namespaces):
        if module == scope or module.startswith(scope + ".") or not scope:
            return value
    return None


# -- event handlers --------------------------------------------------------------------
def _handlers(cls: type) -> dict[str, list[Callable[..., Any]]]:
    found = cls.__dict__.get("_event_callbacks")
    if found is None:
        found = {}
        type.__setattr__(cls, "_event_callbacks", found)
    return found


class Task(_bd.Task, metaclass=Register):
    """Luigi's Task: subclass it as in Luigi."""

    #: None: from `namespace()` / `auto_namespace()` as the class was defined
    task_namespace: ClassVar[Any] = _UNSET
    #: Luigi's name for batchdeps' `retries`: the most times the task runs (5: 4 retries)
    retry_count: ClassVar[int | None] = None
    #: Luigi's name for batchdeps' `timeout` (seconds per attempt)
    worker_timeout: ClassVar[float | None] = None
    accepts_messages = False
    owner_email = None
    disable_window = None
    disable_hard_timeout = None
    max_batch_size = float("inf")

    _namespace_at_class_time: ClassVar[Any] = None
    _params_by_name: ClassVar[dict[str, Parameter]] = {}
    _luigi_params: ClassVar[tuple[tuple[str, Any], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._namespace_at_class_time = _namespace_for(cls.__module__)
        cls._collect_params()
        if "retry_count" in cls.__dict__ and cls.retry_count is not None:
            count = cls.retry_count
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                from ..errors import TaskDefinitionError

                raise TaskDefinitionError(
                    f"{cls.__name__}: retry_count must be an integer >= 1 (the most times "
                    f"the task runs), got {count!r}")
            cls.retries = count - 1
        if "worker_timeout" in cls.__dict__ and cls.worker_timeout:
            cls.timeout = float(cls.worker_timeout)
        if "run" in cls.__dict__:
            cls.run = _announcing_start(cls.__dict__["run"])  # type: ignore[method-assign]
        cls.task_family = cls.get_task_family()

    @classmethod
    def _collect_params(cls) -> None:
        """Find the class's parameters (again, after `inherits` added some), in Luigi's
        order: the order they were made in."""
        found: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, _bd.Parameter):
                    found[name] = value
                elif name in found:
                    del found[name]
        ordered = sorted(found.items(), key=lambda item: getattr(item[1], "_counter", -1))
        cls._luigi_params = tuple(ordered)
        cls._params = tuple(param for _, param in ordered)
        cls._params_by_name = dict(ordered)

    # -- names ---------------------------------------------------------------------------
    @classmethod
    def get_task_namespace(cls) -> str:
        if cls.task_namespace is not _UNSET:
            return cls.task_namespace or ""
        if cls._namespace_at_class_time is _SAME_AS_MODULE:
            return cls.__module__
        return cls._namespace_at_class_time or ""

    @classmethod
    def get_task_family(cls) -> str:
        space = cls.get_task_namespace()
        return f"{space}.{cls.__name__}" if space else cls.__name__

    @classmethod
    def family(cls) -> str:
        return cls.get_task_family()

    # -- parameters ----------------------------------------------------------------------
    @classmethod
    def get_params(cls) -> list[tuple[str, Any]]:
        """(name, parameter) pairs in the order the parameters were made."""
        return list(cls._luigi_params)

    @classmethod
    def get_param_names(cls, include_significant: bool = False) -> list[str]:
        return [name for name, param in cls._luigi_params
                if include_significant or getattr(param, "significant", True)]

    @classmethod
    def batch_param_names(cls) -> list[str]:
        return [name for name, param in cls._luigi_params
                if getattr(param, "batch_method", None) is not None]

    @classmethod
    def get_param_values(cls, params: list[tuple[str, Any]], args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
        """Each parameter's value from position, name, command line, config or default."""
        family = cls.get_task_family()
        result: dict[str, Any] = {}
        positional = [(name, p) for name, p in params if getattr(p, "positional", True)]
        for index, value in enumerate(args):
            if index >= len(positional):
                raise UnknownParameterException(
                    f"{family}[args={args}, kwargs={kwargs}]: takes at most "
                    f"{len(positional)} parameters ({len(args)} given)")
            name, param = positional[index]
            result[name] = _normalize(family, param, value)
        by_name = dict(params)
        for name, value in kwargs.items():
            if name in result:
                raise DuplicateParameterException(
                    f"{family}[args={args}, kwargs={kwargs}]: parameter {name} was already set "
                    "as a positional parameter")
            if name not in by_name:
                raise UnknownParameterException(
                    f"{family}[args={args}, kwargs={kwargs}]: unknown parameter {name}")
            result[name] = _normalize(family, by_name[name], value)
        for name, param in params:
            if name in result:
                continue
            found, value = cls._default_of(name, param)
            if not found:
                raise MissingParameterException(
                    f"{family}[args={args}, kwargs={kwargs}]: requires the '{name}' "
                    "parameter to be set")
            result[name] = value
        return [(name, result[name]) for name, _ in params]

    @classmethod
    def _default_of(cls, name: str, param: Any) -> tuple[bool, Any]:
        """`--Family-param`, then config.toml `[tasks.X]`, then luigi.cfg, then the default."""
        from .cmdline_parser import CmdlineParser

        parser = CmdlineParser.get_instance()
        if parser is not None:
            text = parser.value_for(cls.get_task_family(), name)
            if text is not None:
                return True, _parse(cls.get_task_family(), param, text)
        if name in cls._config_defaults:
            value = cls._config_defaults[name]
            if isinstance(value, UnsetVariable):
                raise value.error()
            return True, value
        from .configuration import get_config

        text = get_config().get_task_value(cls.get_task_family(), name)
        if text is not None:
            return True, _parse(cls.get_task_family(), param, text)
        if param.has_default:
            return True, _normalize(cls.get_task_family(), param, param.default)
        return False, None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        values = cls.get_param_values(list(cls._luigi_params), args, kwargs)
        for name, value in values:
            self.__dict__[name] = value
        self.param_kwargs = dict(values)
        self.param_args = tuple(value for _, value in values)
        self.param_values = self.param_args
        self.task_family = cls.get_task_family()
        significant = self.to_str_params(only_significant=True, only_public=True)
        self.task_id = task_id_str(self.task_family, significant)
        self._luigi_repr = (self.task_family + "(" + ", ".join(
            f"{name}={significant[name]}" for name, _ in cls._luigi_params
            if name in significant) + ")")
        self.set_tracking_url = None
        self.set_status_message = None
        self.set_progress_percentage = None

    def __repr__(self) -> str:
        return self._luigi_repr

    def __str__(self) -> str:
        return self._luigi_repr

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__

    def to_str_params(self, only_significant: bool = False,
                      only_public: bool = False) -> dict[str, str]:
        """Parameter values as the strings the command line takes (Luigi's serialize)."""
        shown: dict[str, str] = {}
        for name, param in self._luigi_params:
            if only_significant and not getattr(param, "significant", True):
                continue
            if only_public and getattr(param, "visibility",
                                       ParameterVisibility.PUBLIC) != ParameterVisibility.PUBLIC:
                continue
            shown[name] = param.serialize(self.param_kwargs[name])
        return shown

    @classmethod
    def from_str_params(cls, params_str: dict[str, str]) -> Task:
        """A task from `to_str_params()`'s strings."""
        kwargs = {}
        for name, param in cls._luigi_params:
            if name in params_str:
                value = params_str[name]
                kwargs[name] = param.parse(value) if isinstance(value, str) else value
        return cls(**kwargs)

    def get_param_values_dict(self) -> dict[str, Any]:
        return dict(self.param_kwargs)

    def clone(self, cls: type[Task] | None = None, **kwargs: Any) -> Task:
        """A task of `cls` (default: this one's class) with this task's values where
        `cls` has a parameter of the same name, over which `kwargs` go."""
        cls = cls or type(self)
        names = {name for name, _ in cls.get_params()}
        values = {k: v for k, v in self.param_kwargs.items() if k in names}
        values.update(kwargs)
        return cls(**values)

    # -- what Luigi users override -----------------------------------------------------
    def run(self) -> Any:
        """Does nothing (Luigi's default)."""
        return None

    def deps(self) -> list[_bd.Task]:
        return _bd.flatten_requires(self)

    def process_resources(self) -> dict[str, int]:
        return dict(self.resources)

    def on_failure(self, exception: BaseException) -> Any:  # type: ignore[override]
        return None

    def on_success(self) -> Any:
        return None

    # -- events --------------------------------------------------------------------------
    @classmethod
    def event_handler(cls, event: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: call the function with the event's arguments for tasks of this class."""

        def register(callback: Callable[..., Any]) -> Callable[..., Any]:
            _handlers(cls).setdefault(event, []).append(callback)
            return callback

        return register

    def trigger_event(self, event: str, *args: Any, **kwargs: Any) -> None:
        """Call the handlers of `event` registered on this task's class and its bases."""
        for klass in type(self).__mro__:
            for callback in klass.__dict__.get("_event_callbacks", {}).get(event, []):
                try:
                    callback(*args, **kwargs)
                except Exception:  # noqa: BLE001 - a handler never changes the result
                    import logging

                    logging.getLogger("batchdeps.luigi").exception(
                        "event handler %r for %s failed", callback, event)


def _announcing_start(run: Callable[..., Any]) -> Callable[..., Any]:
    """`run` that first tells the START handlers (in the process that runs it, as Luigi)."""
    import functools

    from .event import Event

    @functools.wraps(run)
    def started(self: Task) -> Any:
        self.__dict__.pop("_luigi_pending", None)  # a WrapperTask that runs: see there
        self.trigger_event(Event.START, self)
        return run(self)

    started.__wrapped_run__ = run  # type: ignore[attr-defined]
    return started


def _normalize(family: str, param: Any, value: Any) -> Any:
    if isinstance(param, Parameter):
        return param.convert(family, value)
    return param.convert(family, value)  # a batchdeps parameter on a Luigi task


def _parse(family: str, param: Any, text: str) -> Any:
    if isinstance(param, Parameter):
        return param.parse_value(family, text)
    try:
        return param.convert(family, param.parse(text))
    except ValueError as exc:
        from ..errors import ParameterError

        raise ParameterError(f"{family}: bad value {text!r} for parameter '{param.name}': "
                             f"{exc}") from None


class ExternalTask(Task, _bd.ExternalTask):
    """Data made outside the pipeline (Luigi's ExternalTask): never run."""

    run = None  # type: ignore[assignment]

    def complete(self) -> bool:
        return _bd.ExternalTask.complete(self)


class WrapperTask(Task):
    """Only `requires()`; complete when all its requirements are complete.

    As in Luigi, it is a task like any other whose `run()` (nothing, unless overridden)
    is called once its requirements are built, when it was found incomplete at the start:
    it stays incomplete in this process until it ran (batchdeps' look again after taking
    the lock would otherwise find it complete and skip it).
    """

    def complete(self) -> bool:
        if self.__dict__.get("_luigi_pending"):
            return False
        done = all(task.complete() for task in _bd.flatten_requires(self))
        if not done:
            self.__dict__["_luigi_pending"] = True
        return done


class Config(Task):
    """Settings read from the config section of the class's name (Luigi's Config)."""

    def run(self) -> None:
        return None
