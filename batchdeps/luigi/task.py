"""Luigi's Task API on batchdeps' task model: Luigi's ids, parameter order and values.

`batchdeps.Task` already has most of Luigi's task API (namespaces and families,
`get_params`, `clone`, `param_kwargs`, event handlers, `retry_count`, a `run()` that does
nothing). A `batchdeps.luigi.Task` adds what differs in Luigi and is kept native in
batchdeps: the task id `Family_params_hash` (so paths built from `task_id` stay where they
were), parameters ordered as they were made, values also from the `luigi` command line
and luigi.cfg, Luigi's repr and exceptions, the instance cache, and Luigi's WrapperTask.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from .. import task as _bd
from ..config import UnsetVariable
from ..luigi_files import luigi_key
from ..namespaces import auto_namespace, namespace
from ..taskid import luigi_task_id
from .parameter import (
    DuplicateParameterException,
    MissingParameterException,
    ParameterValueError,
    ParameterVisibility,
    UnconsumedParameterWarning,
    UnknownParameterException,
)
from .task_register import Register

__all__ = ["Config", "ExternalTask", "Task", "WrapperTask", "auto_namespace", "namespace"]


class Task(_bd.Task, metaclass=Register):
    """Luigi's Task: subclass it as in Luigi."""

    #: Luigi's name for batchdeps' `timeout` (seconds one attempt may take)
    worker_timeout: ClassVar[float | None] = None
    # What only Luigi's scheduler or e-mail read: accepted, and what each does here is in
    # docs/from-luigi.md ("Scheduler-only class attributes").
    accepts_messages = False
    owner_email = None
    disable_window = None
    disable_hard_timeout = None
    max_batch_size = float("inf")
    disabled = False
    #: luigi.cfg keys of the task's section that are not its parameters, but not to be
    #: warned of (Luigi's UnconsumedParameterWarning)
    ignore_unconsumed: ClassVar[set[str]] = set()
    #: False: the parameters are given on the `luigi` command line as `--param`, not
    #: `--Family-param` (Luigi's, for Config classes shared by every task)
    use_cmdline_section: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if vars(cls).get("worker_timeout"):
            cls.timeout = float(cls.worker_timeout)  # type: ignore[arg-type]
        if callable(vars(cls).get("run")):
            cls.run = _unless_disabled(vars(cls)["run"])  # type: ignore[method-assign]

    def run(self) -> Any:
        """Nothing, unless overridden (Luigi's default)."""
        return None

    @property
    def disable_window_seconds(self) -> Any:
        """Luigi's old name of `disable_window`, warned of as in Luigi."""
        import warnings

        warnings.warn("Use of `disable_window_seconds` has been deprecated, use "
                      "`disable_window` instead", DeprecationWarning, stacklevel=2)
        return self.disable_window

    @classmethod
    def batch_param_names(cls) -> list[str]:
        """The parameters with a `batch_method` (Luigi's; batchdeps does not batch)."""
        return [name for name, param in cls.get_params()
                if getattr(param, "batch_method", None) is not None]

    @property
    def batchable(self) -> bool:
        return bool(self.batch_param_names())

    @classmethod
    def get_task_namespace(cls) -> str:
        """The class's namespace; the empty string when it has none, as Luigi answers."""
        return super().get_task_namespace() or ""

    @classmethod
    def collect_parameters(cls) -> None:
        """The parameters in the order they were made, as Luigi orders them (for
        positional arguments, `get_params()` and the repr)."""
        super().collect_parameters()
        cls._params = tuple(sorted(cls._params, key=lambda p: getattr(p, "_counter", -1)))

    @classmethod
    def get_param_values(cls, params: Any, args: Any, kwargs: Any) -> list[tuple[str, Any]]:
        """Each parameter's value from position, name, the command line, config or default."""
        family = cls.task_family
        result: dict[str, Any] = {}
        shown = f"{family}[args={tuple(args)}, kwargs={dict(kwargs)}]"
        positional = [(name, p) for name, p in params if p.positional]
        for index, value in enumerate(args):
            if index >= len(positional):
                raise UnknownParameterException(
                    f"{shown}: takes at most {len(positional)} parameters ({len(args)} given)")
            name, param = positional[index]
            result[name] = param.convert(family, value)
        by_name = dict(params)
        for name, value in kwargs.items():
            if name in result:
                raise DuplicateParameterException(
                    f"{shown}: parameter {name} was already set as a positional parameter")
            if name not in by_name:
                raise UnknownParameterException(f"{shown}: unknown parameter {name}")
            result[name] = by_name[name].convert(family, value)
        for name, param in params:
            if name not in result:
                found, value = cls._default_of(name, param, shown)
                if not found:
                    raise MissingParameterException(
                        f"{shown}: requires the '{name}' parameter to be set")
                result[name] = value
        return [(name, result[name]) for name, _ in params]

    @classmethod
    def warn_on_wrong_param_types(cls, params: Any, values: list[tuple[str, Any]],
                                  args: Any, kwargs: Any) -> None:
        """Luigi's warning for each value of another type than its parameter's, as given
        (the task's metaclass calls it for every task made, even one found in the cache:
        the value given may differ from the one kept, which batchdeps parsed)."""
        given = {**dict(values), **kwargs,
                 **dict(zip((name for name, p in params if p.positional), args))}
        for name, param in params:
            warn = getattr(param, "_warn_on_wrong_param_type", None)
            if warn is not None:  # a batchdeps.luigi parameter (not a batchdeps one)
                warn(name, given[name])

    @classmethod
    def _warn_of_unconsumed_config(cls, params: dict[str, Any]) -> None:
        """Luigi's UnconsumedParameterWarning for each luigi.cfg key of `[Family]` that is
        no parameter of the task (nor in `ignore_unconsumed`)."""
        import warnings

        from .configuration import get_config

        family = cls.task_family
        ignored = {luigi_key(key) for key in cls.ignore_unconsumed}
        for key, value in get_config().section_items(family):
            if key not in params and key not in ignored:
                warnings.warn(UnconsumedParameterWarning(
                    f"The configuration contains the parameter '{key}' with value "
                    f"'{value}' that is not consumed by the task '{family}'."))

    @classmethod
    def _default_of(cls, name: str, param: Any, shown: str = "") -> tuple[bool, Any]:
        """The `luigi` command line, then config.toml `[tasks.X]`, then luigi.cfg
        `[Family]`, then the parameter's `config_path` (another luigi.cfg section and
        key), then its default (docs/from-luigi.md, "Parameters")."""
        from .cmdline_parser import CmdlineParser

        family = cls.task_family
        parser = CmdlineParser.get_instance()
        text = parser.value_for(family, name) if parser is not None else None
        if text is not None:
            return True, _parse(shown or family, param, text,
                                f"--{family}-{name.replace('_', '-')} {text!r}")
        if name in cls._config_defaults:
            value = cls._config_defaults[name]
            if isinstance(value, UnsetVariable):
                raise value.error()
            return True, value
        text = _config_text(family, name, shown, name)
        if text is not None:
            return True, _parse(shown or family, param, text,
                                f"{_config_label()} [{family}] {name} = {text!r}")
        where = getattr(param, "config_path", None)
        if where:
            text = _config_text(where["section"], where["name"], shown, name)
            if text is not None:
                import warnings

                warnings.warn(f"The use of the configuration [{where['section']}] "
                              f"{where['name']} is deprecated. Please use [{family}] {name}",
                              DeprecationWarning, stacklevel=2)
                return True, _parse(shown or family, param, text,
                                    f"{_config_label()} [{where['section']}] "
                                    f"{where['name']} = "
                                    f"{text!r}")
        if param.has_default:
            return True, param.convert(family, param.default)
        return False, None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        params = cls.get_params()
        values = cls.get_param_values(params, args, kwargs)
        cls._warn_of_unconsumed_config(dict(params))
        for name, value in values:
            self.__dict__[name] = value
        self.param_values = tuple(value for _, value in values)
        self.param_args = self.param_values
        self.task_id = luigi_task_id(
            cls.task_family, self.to_str_params(only_significant=True, only_public=True))
        self._repr = cls.task_family + "(" + ", ".join(
            f"{p.name}={self._luigi_str(p, v)}" for p, v in zip(cls._params, self.param_values)
            if p.significant) + ")"

    def __repr__(self) -> str:
        return self._repr

    __str__ = __repr__

    def _get_param_visibilities(self) -> dict[str, int]:
        """Luigi's: each parameter's visibility as a number, private ones left out."""
        return {p.name: int(_visibility(p)) for p in self._params
                if _visibility(p) != ParameterVisibility.PRIVATE}

    def to_str_params(self, only_significant: bool = False,
                      only_public: bool = False) -> dict[str, str]:
        """Parameter values as Luigi writes them; these make the task id. A private
        parameter is never among them, a hidden one not with `only_public` (Luigi's)."""
        return {p.name: self._luigi_str(p, v) for p, v in zip(self._params, self.param_values)
                if (p.significant or not only_significant)
                and _visibility(p) != ParameterVisibility.PRIVATE
                and (not only_public or _visibility(p) == ParameterVisibility.PUBLIC)}

    @staticmethod
    def _luigi_str(param: Any, value: Any) -> str:
        return _bd.NONE_TEXT if value is None and not param.nullable \
            else str(param.luigi_serialize(value))

    @classmethod
    def from_str_params(cls, params_str: Any) -> Task:
        """A task from `to_str_params()`'s strings (Luigi's `parse` of each)."""
        kwargs = {p.name: (p.parse(params_str[p.name]) if isinstance(params_str[p.name], str)
                           else params_str[p.name])
                  for p in cls._params if p.name in params_str}
        return cls(**kwargs)

    def deps(self) -> list[_bd.Task]:
        """The tasks `requires()` returns, as a list."""
        return _bd.flatten_requires(self)

    def process_resources(self) -> dict[str, int]:
        return dict(self.resources)

    # -- what Luigi's worker lends a running task: written to the attempt's log here ----
    #: messages a scheduler sent the task (there is none: never any)
    scheduler_messages: ClassVar[tuple[Any, ...]] = ()

    def set_status_message(self, message: str) -> None:
        """Luigi's status message for the scheduler's page: a line in the attempt's log."""
        _note(self, "status", message)

    def set_progress_percentage(self, percentage: float) -> None:
        """Luigi's progress bar: a line in the attempt's log."""
        _note(self, "progress", f"{percentage}%")

    def set_tracking_url(self, tracking_url: str) -> None:
        """Luigi's link to a running job: a line in the attempt's log."""
        _note(self, "tracking url", tracking_url)

    def decrease_running_resources(self, decrease_resources: dict[str, int]) -> None:
        """Luigi's early release of resources: the slots are held until the attempt ends."""
        _note(self, "resources kept until the end", decrease_resources)

    @contextlib.contextmanager
    def no_unpicklable_properties(self) -> Iterator[None]:
        """Within the block, the callables set on this task over the methods above (Luigi's
        worker sets such) are replaced by a string, so the task pickles."""
        names = ("set_tracking_url", "set_status_message", "set_progress_percentage",
                 "decrease_running_resources", "scheduler_messages")
        kept = {name: self.__dict__[name] for name in names if name in self.__dict__}
        for name in kept:
            self.__dict__[name] = "placeholder_during_pickling"
        try:
            yield
        finally:
            self.__dict__.update(kept)


class TaskDisabled(RuntimeError):
    """The task's `disabled` is true: it is not run, nor what needs it (Luigi's scheduler
    leaves such a task and its dependents unrun)."""


def _unless_disabled(run: Callable[..., Any]) -> Callable[..., Any]:
    """`run`, refused for a task whose `disabled` is true (its attempt fails at once)."""
    @functools.wraps(run)
    def guarded(self: Task) -> Any:
        if self.disabled:
            raise TaskDisabled(f"{self.task_id} is disabled (its `disabled` is true): not "
                               "run, nor what requires it (docs/from-luigi.md, "
                               "\"Scheduler-only class attributes\")")
        return run(self)

    return guarded


Task.run = _unless_disabled(vars(Task)["run"])  # type: ignore[method-assign]


def _note(task: Task, what: str, value: Any) -> None:
    """A line of the running task's output (the attempt's log, when logs are kept)."""
    print(f"{task.task_id}: {what}: {value}", file=sys.stderr, flush=True)


def _visibility(param: Any) -> Any:
    return getattr(param, "visibility", ParameterVisibility.PUBLIC)


def _config_label() -> str:
    """The kind of Luigi config values are read from, to name in messages."""
    from .configuration import get_config

    return get_config().label


def _config_text(section: str, key: str, shown: str, name: str) -> Any:
    """luigi.cfg's `[section] key`, interpolated (luigi.toml's, as typed); one that cannot
    be (an unset `${VAR}`) is refused in Luigi's words (a ValueError, as in Luigi), naming
    why."""
    from ..errors import ConfigError
    from .configuration import get_config

    try:
        return get_config().get_task_value(section, key)
    except ConfigError as exc:
        raise ParameterValueError(f"{shown}: Error when parsing the default value of "
                                  f"'{name}': {exc}") from None


def _parse(shown: str, param: Any, text: Any, source: str) -> Any:
    """A string from the command line or luigi.cfg (or a luigi.toml value, which `parse()`
    takes as a value from code), parsed by the parameter; refused in
    Luigi's words (a ValueError, as in Luigi) with where the string came from."""
    try:
        return param.convert(shown.partition("[")[0], param.parse(text))
    except (ValueError, TypeError) as exc:
        raise ParameterValueError(f"{shown}: Error when parsing the default value of "
                                  f"'{param.name}' ({source}): {exc}") from None


def flatten(struct: Any) -> list[Any]:
    """The leaves of a task, target, list, tuple or dict structure, as a list (Luigi's)."""
    if struct is None:
        return []
    if isinstance(struct, (_bd.Task, str)) or not hasattr(struct, "__iter__") and \
            not isinstance(struct, dict):
        return [struct]
    return list(_bd._leaves(struct))


def flatten_output(task: Any) -> list[Any]:
    """The outputs of `task`, or of what it requires where it has none (Luigi's)."""
    found: dict[Any, None] = {}  # tasks with outputs, each once, breadth first
    queue = [task]
    for current in queue:
        if flatten(current.output()):
            found.setdefault(current)
        else:
            queue.extend(flatten(current.requires()))
    return [target for owner in found for target in flatten(owner.output())]


def getpaths(struct: Any) -> Any:
    """The outputs of the tasks in `struct`, in its shape."""
    if isinstance(struct, _bd.Task):
        return struct.output()
    return _bd.map_structure(lambda task: task.output(), struct)


def externalize(taskclass_or_taskobject: Any) -> Any:
    """A copy of the class (or task) that is an external task: never run, its outputs
    missing are a missing input, as Luigi treats a task whose `run` is None."""
    import copy

    if isinstance(taskclass_or_taskobject, type):
        return _external(taskclass_or_taskobject)
    copied = copy.copy(taskclass_or_taskobject)
    copied.__class__ = _external(type(taskclass_or_taskobject))
    return copied


@functools.lru_cache(maxsize=None)
def _external(cls: type) -> type:
    """`cls` as an external task class: the same family, left out of the registry."""
    def __reduce__(self: Any) -> tuple[Any, ...]:  # the class is made here: not by name
        return (_rebuild_external, (cls, dict(self.__dict__)))

    bases = (ExternalTask,) if issubclass(ExternalTask, cls) else (cls, ExternalTask)
    return type(cls.__name__, bases, {
        "run": None, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
        "task_family": cls.task_family, "_visible_in_registry": False,
        "__reduce__": __reduce__})


def _rebuild_external(cls: type, state: dict[str, Any]) -> Any:
    """An externalized task of `cls` back from pickling."""
    task = object.__new__(_external(cls))
    task.__dict__.update(state)
    return task


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
    the lock would otherwise find it complete and skip its `run()`).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "run" in vars(cls):
            cls.run = _ran(vars(cls)["run"])  # type: ignore[method-assign]

    def complete(self) -> bool:
        if self.__dict__.get("_luigi_pending"):
            return False
        done = all(task.complete() for task in _bd.flatten_requires(self))
        if not done:
            self.__dict__["_luigi_pending"] = True
        return done

    def run(self) -> Any:
        self.__dict__.pop("_luigi_pending", None)
        return None


def _ran(run: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(run)
    def ran(self: WrapperTask) -> Any:
        self.__dict__.pop("_luigi_pending", None)
        return run(self)

    return ran


class Config(Task, _bd.Settings):
    """Settings read from the config section of the class's family (Luigi's Config):
    `[Family]` of luigi.cfg, or `[tasks.Family]` of config.toml. As in Luigi it is also a
    task that can be built: its `run()` does nothing unless overridden."""

    def run(self) -> None:
        return None
