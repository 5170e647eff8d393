"""The task model: Task, ExternalTask, WrapperTask, Settings, their identity, parameter API
and structures."""

from __future__ import annotations

import contextlib
import copy
import itertools
import keyword
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from types import GeneratorType
from typing import Any, ClassVar

from .config import UnsetVariable
from .errors import BrokenTaskError, ConfigError, ParameterError, TaskDefinitionError
from .parameters import Parameter
from .parameters.base import _AMBIGUOUS


#: How `to_str_params` writes a parameter whose value is None (as the task id and Luigi do).
NONE_TEXT = "None"


def _bind(cls: type[Task], params: tuple[Parameter, ...], args: Sequence[Any],
          kwargs: dict[str, Any], kinds: tuple[str, ...] | None = None) -> list[Any]:
    """The values of `params` for `cls(*args, **kwargs)` (`kwargs` is emptied); `kinds`:
    `_plain_kinds` of `params`, for the values convert() would give back as they are."""
    family = cls.task_family
    if args:
        positional = [p for p in params if p.positional]
        if len(args) > len(positional):
            how = "" if len(positional) == len(params) else " positionally"
            raise ParameterError(
                f"{family}: takes {len(positional)} parameter(s){how}, {len(args)} given")
        for param, value in zip(positional, args):
            if param.name in kwargs:
                raise ParameterError(f"{family}: parameter '{param.name}' given twice")
            kwargs[param.name] = value
    values: list[Any] = []
    config_defaults = cls._config_defaults
    for param, kind in zip(params, kinds or _NO_KINDS):
        name = param.name
        if name in kwargs:
            value = kwargs.pop(name)
            # An int to an IntParameter, a str to a text one: what convert() gives back
            # is the value itself (checked by type, not by calls: a million tasks' worth)
            if not ((kind is _INT and type(value) is int)
                    or (kind is _TEXT and type(value) is str)):
                value = param.convert(family, value)
        elif name in config_defaults:
            value = config_defaults[name]
            if isinstance(value, UnsetVariable):
                raise value.error()
        elif param.has_default:
            value = param.convert(family, param.default)
        else:
            raise ParameterError(f"{family}: missing value for parameter '{name}'")
        values.append(value)
    if kwargs:
        unknown = ", ".join(sorted(kwargs))
        raise ParameterError(f"{family}: unknown parameter(s) {unknown}")
    return values


def _render(params: tuple[Parameter, ...], values: Sequence[Any],
            kinds: tuple[str, ...] | None = None) -> str:
    """The inside of a task id: `name=value, ...` of the significant parameters."""
    parts = []  # a loop, not a generator into join: a quarter less time per task id
    if kinds is None:
        kinds = (_OTHER,) * len(params)
    for param, value, kind in zip(params, values, kinds):
        if param.significant:
            if kind is _INT and type(value) is int:  # what render() makes of them
                parts.append(f"{param.name}={value}")
            elif kind is _TEXT and type(value) is str:
                parts.append(f"{param.name}={_text_in_id(value)}")
            else:
                parts.append(f"{param.name}={param.render(value)}")
    return ", ".join(parts)


#: What `_plain_kinds` says of a parameter: an exact IntParameter, an exact Parameter or
#: StrParameter (free text), or anything else (its own convert() and render() are called).
_INT, _TEXT, _OTHER = "int", "text", "other"
_NO_KINDS = itertools.repeat(_OTHER)


def _plain_kinds(cls: type[Task]) -> tuple[str, ...]:
    """The kind of each of `cls._params`, made once per class (and again when its
    parameters change). Only the exact built-in types are plain: a subclass decides."""
    return _kinds_entry(cls)[1]


def _kinds_entry(cls: type[Task]) -> tuple[Any, ...]:
    """(`cls._params`, their kinds, `_direct` of them) for `cls`, made once per class and
    again when its parameters change; kept in the class itself (it lives as long as it)."""
    params = cls._params
    entry = cls.__dict__.get("_param_kinds")
    if entry is not None and entry[0] is params:
        return entry  # type: ignore[no-any-return]
    from .parameters import IntParameter, StrParameter

    kinds = tuple(_INT if type(p) is IntParameter else
                  _TEXT if type(p) is Parameter or type(p) is StrParameter else _OTHER
                  for p in params)
    direct = None
    if params and _OTHER not in kinds:
        direct = _direct_setter(tuple((p.name, int if kind is _INT else str, p.significant)
                                      for p, kind in zip(params, kinds)))
    entry = cls._param_kinds = (params, kinds, direct)
    return entry


def _spelt(direct: tuple[tuple[str, type, bool], ...]) -> bool:
    """Whether every parameter name can be spelt in code written for them."""
    return all(name.isidentifier() and not keyword.iskeyword(name) for name, _, _ in direct)


def _direct_body(direct: tuple[tuple[str, type, bool], ...], indent: str) -> list[str]:
    """The lines of `_direct` written out for these parameters, on `kwargs` and `task`:
    each value taken by name, every type checked before anything is set (a refusal sets
    nothing), then each value set and the id made; `return False` where `_direct` refuses,
    and falls through (the caller says what follows) where it would return True."""
    lines = [f"if len(kwargs) != {len(direct)}:", "    return False", "get = kwargs.get"]
    checks, sets, parts = [], [], []
    for index, (name, plain, significant) in enumerate(direct):
        lines.append(f"v{index} = get({name!r})")
        checks.append(f"type(v{index}) is not {plain.__name__}")
        sets.append(f"_set_attribute(task, {name!r}, v{index})")
        if not significant:
            continue
        if plain is int:
            parts.append(f"{name}={{v{index}}}")
        else:  # the last text's form remembered, as _text_in_id remembers it
            sets.append("last = _last_text")
            sets.append(f"t{index} = last[1] if last[0] is v{index} else _text_in_id(v{index})")
            parts.append(f"{name}={{t{index}}}")
    lines += [f"if {' or '.join(checks)}:", "    return False", *sets,
              f"task.task_id = f\"{{type(task).task_family}}({', '.join(parts)})\""]
    return [indent + line for line in lines]


def _direct_setter(direct: tuple[tuple[str, type, bool], ...]
                   ) -> Callable[[Task, dict[str, Any]], bool]:
    """`_direct` for these parameters as one function written for them (no loop, no list
    of parts: each name, type check and part of the id spelt out), as `dataclasses` and
    `namedtuple` write theirs: the same values and id as `_direct` (the loop, which stays
    for names that cannot be spelt in code), which a test checks case by case."""
    if not _spelt(direct):
        return lambda task, kwargs: _direct(task, direct, kwargs)
    code = "\n".join(["def direct(task, kwargs):", *_direct_body(direct, "    "),
                      "    return True"])
    scope: dict[str, Any] = {}
    exec(code, globals(), scope)  # noqa: S102 - code made from names checked above
    return scope["direct"]  # type: ignore[no-any-return]


def _write_init(cls: type[Task]) -> None:
    """Give `cls` an `__init__` written for its parameters when they are all plain ints
    and texts and it would otherwise inherit `Task.__init__` itself: a
    `cls(n=1, root="/data")` that gives each of them by name, with a value of the exact
    type, is then set up in that one call, `_direct_setter`'s code inline (the task
    model's cost per task object is most of a nightly run over finished data). Any
    other call, an instance of a subclass, or a class whose parameters changed since,
    goes on to `Task.__init__`. A class's own `__init__` is never replaced; one written
    here that no longer fits (`collect_parameters` found other parameters) is removed."""
    own = vars(cls).get("__init__")
    if own is not None and not getattr(own, "_written_for", None):
        return
    inherited = next(vars(klass)["__init__"] for klass in cls.__mro__[1:]
                     if "__init__" in vars(klass))
    entry = _kinds_entry(cls)
    direct = entry[2] is not None and tuple(
        (p.name, int if kind is _INT else str, p.significant)
        for p, kind in zip(entry[0], entry[1]))
    # only below Task.__init__ itself: a written one would skip a base's `__init__` put
    # on the base after this class was made (a subclass of a class with a written one
    # inherits it, whose check of the class sends it the full way)
    if not direct or not _spelt(direct) or inherited is not Task.__init__:
        if own is not None:
            delattr(cls, "__init__")
        return
    code = "\n".join([
        "def make(cls, params):",
        "    def __init__(task, *args, **kwargs):",
        "        if not args and type(task) is cls and cls._params is params:",
        *_direct_body(direct, "            "),
        "            return",
        "        _task_init(task, *args, **kwargs)",
        "    return __init__"])
    # `return False` of the body means "not this way": the full path follows
    code = code.replace("return False", "return _task_init(task, *args, **kwargs)")
    scope: dict[str, Any] = {}
    exec(code, globals(), scope)  # noqa: S102 - code made from names checked above
    init = scope["make"](cls, entry[0])
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = Task.__init__.__doc__
    init._written_for = cls
    type.__setattr__(cls, "__init__", init)


def _direct(task: Task, direct: tuple[tuple[str, type, bool], ...],
            kwargs: dict[str, Any]) -> bool:
    """Set the parameters and task id of `task` from `kwargs` in one loop, when they give
    every parameter by name, as an int to each IntParameter and a str to each text one
    (the usual `Leaf(n=i, root=self.root)`): what `_bind` and `_render` would make of
    them. False (something set, nothing final) when they do not: the full path decides."""
    if len(kwargs) != len(direct):
        return False
    parts = []
    for name, plain, significant in direct:
        value = kwargs.get(name)
        if type(value) is not plain:  # missing (None), a subclass, another type
            return False
        _set_attribute(task, name, value)
        if significant:
            parts.append(f"{name}={value}" if plain is int else f"{name}={_text_in_id(value)}")
    task.task_id = f"{type(task).task_family}({', '.join(parts)})"
    return True


def _text_in_id(text: str) -> str:
    """`Parameter.render` of a str: JSON-quoted where it could be ambiguous in a task id.

    The last text asked about is remembered (tasks made in a loop share a `root`)."""
    last = _last_text
    if last[0] is text:
        return last[1]
    shown = text
    if _AMBIGUOUS.search(text) or text != text.strip() or text == "None":
        import json

        shown = json.dumps(text)
    _set_last_text((text, shown))
    return shown


_last_text: tuple[Any, str] = (object(), "")  # (a text, its form in a task id)


def _set_last_text(entry: tuple[Any, str]) -> None:
    global _last_text
    _last_text = entry


def _map_retry_count(cls: type[Task]) -> None:
    """Luigi's `retry_count` (runs in all) set on `cls` becomes `retries` (runs after the
    first); both set on one class and disagreeing is a definition error."""
    if "retry_count" not in vars(cls):
        return
    count = vars(cls)["retry_count"]
    if count is None:
        return
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise TaskDefinitionError(
            f"{cls.task_family}: retry_count must be a whole number of 0 or more (the runs "
            f"a task gets in all), got {count!r}")
    retries = max(count - 1, 0)
    given = vars(cls).get("retries")
    if given is not None and given != retries:
        raise TaskDefinitionError(
            f"{cls.task_family}: retry_count = {count} means retries = {retries}, but "
            f"retries = {given!r} is set too; keep one of them")
    cls.retries = retries


def _mark_abstract(cls: type[Task]) -> None:
    """`@abc.abstractmethod` works on a task class without `abc.ABC`: a class that leaves
    one undefined cannot be made (TypeError, as for Python's ABCs)."""
    names = {name for name, value in vars(cls).items()
             if getattr(value, "__isabstractmethod__", False)}
    for base in cls.__bases__:
        for name in getattr(base, "__abstractmethods__", ()):
            if getattr(getattr(cls, name, None), "__isabstractmethod__", False):
                names.add(name)
    if names:
        cls.__abstractmethods__ = frozenset(names)  # what object.__new__ refuses to make


def refuse_abstract(cls: type) -> None:
    """TaskDefinitionError naming what `cls` leaves undefined, when it is abstract (asked
    for by name on a command line: a traceback from `cls()` would say less)."""
    abstract = sorted(getattr(cls, "__abstractmethods__", ()))
    if abstract:
        family = getattr(cls, "task_family", cls.__name__)
        raise TaskDefinitionError(f"{family} is abstract: it leaves {', '.join(abstract)} "
                                  "undefined (@abc.abstractmethod); run a subclass that "
                                  "defines them")


_set_attribute = object.__setattr__


class _ParamValues:
    """`task.param_values`, the parameter values in order: made when asked, so a task keeps
    no tuple of its own (a subclass that sets the attribute keeps what it set)."""

    def __get__(self, task: Task | None, owner: type | None = None) -> Any:
        if task is None:
            return self
        return tuple(getattr(task, param.name) for param in task._params)


class Task:
    """A unit of work: parameters, `requires()`, `output()` and `run()`.

    Two tasks of the same family with the same values of their significant parameters are
    equal, hash alike and share one `task_id`, the string `Family(param=value, ...)` used in
    logs and as lock key. The family is the class name, prefixed by the class's namespace
    when it has one (`task_namespace`, `bd.namespace()`): `reports.Daily`.
    """

    # Options; None means "take the config default, else the built-in default".
    retries: ClassVar[int | None] = None
    #: Luigi's name: how many runs a task gets in all (`retries = retry_count - 1`)
    retry_count: ClassVar[int | None] = None
    retry_delay: ClassVar[float | None] = None
    retry_backoff: ClassVar[float | None] = None
    max_retry_delay: ClassVar[float | None] = None
    timeout: ClassVar[float | None] = None
    resources: ClassVar[dict[str, int]] = {}
    #: among ready tasks, a higher one starts first (Luigi's); may be a property
    priority: float = 0
    #: the namespace of this class and its subclasses (None: the one `bd.namespace()` set)
    task_namespace: ClassVar[str | None] = None
    #: `namespace.ClassName` or `ClassName`; set per class (a class may set its own)
    task_family: ClassVar[str] = "Task"

    # Filled in per class by __init_subclass__ and by the registry.
    _params: ClassVar[tuple[Parameter, ...]] = ()
    #: (`_params`, the kind of each, their `_direct` form) as `_kinds_entry` made them
    _param_kinds: ClassVar[tuple[Any, ...] | None] = None
    _config_defaults: ClassVar[dict[str, Any]] = {}
    #: the parameter values in declaration order (made when asked)
    param_values: Any = _ParamValues()
    _namespace_at_definition: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.collect_parameters()
        cls._config_defaults = {}
        from .namespaces import current

        cls._namespace_at_definition = current.for_module(cls.__module__)
        if "task_family" not in vars(cls):
            namespace = cls.get_task_namespace()
            cls.task_family = f"{namespace}.{cls.__name__}" if namespace else cls.__name__
        _map_retry_count(cls)
        _mark_abstract(cls)

    @classmethod
    def collect_parameters(cls) -> None:
        """Find the class's parameters again (after `bd.inherits` added some)."""
        params: dict[str, Parameter] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Parameter):
                    params[name] = value
                elif name in params:  # a subclass replaced the parameter with a constant
                    del params[name]
        cls._params = tuple(params.values())
        _write_init(cls)

    @classmethod
    def get_task_namespace(cls) -> str | None:
        """`task_namespace` as the class or a base sets it, else the namespace in effect
        for its module when the class was defined (`bd.namespace`); None: none."""
        for klass in cls.__mro__:
            if klass is Task:
                break
            if "task_namespace" in vars(klass):
                return vars(klass)["task_namespace"] or None
        return cls._namespace_at_definition

    @classmethod
    def family(cls) -> str:
        """The family name: `namespace.ClassName`, or the class name without a namespace."""
        return cls.task_family

    @classmethod
    def get_task_family(cls) -> str:
        """Luigi's name for `family()`."""
        return cls.task_family

    @classmethod
    def parameters(cls) -> tuple[Parameter, ...]:
        """The class's parameters in declaration order (inherited ones first)."""
        return cls._params

    @classmethod
    def get_params(cls) -> list[tuple[str, Parameter]]:
        """(name, parameter) of every parameter, in declaration order (inherited first)."""
        return [(p.name, p) for p in cls._params]

    @classmethod
    def get_param_names(cls, include_significant: bool = False) -> list[str]:
        """The names of the significant parameters; `include_significant=True` (Luigi's
        name for it): of every parameter."""
        return [p.name for p in cls._params if include_significant or p.significant]

    @classmethod
    def get_param_values(cls, params: Sequence[tuple[str, Parameter]], args: Sequence[Any],
                         kwargs: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """(name, value) of `params` as a call `cls(*args, **kwargs)` binds them: positional
        arguments, then keywords, then `[tasks.FAMILY]` defaults, then the parameters' own;
        values normalised. Raises ParameterError for a missing, repeated or unknown one."""
        chosen = tuple(param for _, param in params)
        values = _bind(cls, chosen, args, dict(kwargs))
        return [(param.name, value) for param, value in zip(chosen, values)]

    @classmethod
    def from_str_params(cls, params_str: Mapping[str, Any]) -> Task:
        """The task whose parameters, as strings (`to_str_params()`), are these; keys that
        name no parameter are left out, as in Luigi."""
        family = cls.task_family
        kwargs: dict[str, Any] = {}
        for param in cls._params:
            if param.name in params_str:
                text = params_str[param.name]
                if text == NONE_TEXT and param.has_default and param.default is None:
                    kwargs[param.name] = None
                    continue
                try:
                    kwargs[param.name] = param.parse(text) if isinstance(text, str) \
                        else param.normalize(text)
                except (ValueError, TypeError) as exc:
                    raise ParameterError(f"{family}: bad value {text!r} for parameter "
                                         f"'{param.name}' ({param.type_name}): {exc}") from None
        return cls(**kwargs)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        params = cls._params
        entry = cls.__dict__.get("_param_kinds")
        if entry is None or entry[0] is not params:
            entry = _kinds_entry(cls)
        if entry[2] is not None and not args and entry[2](self, kwargs):
            return
        kinds = entry[1]
        values = _bind(cls, params, args, kwargs, kinds)
        for param, value in zip(params, values):
            _set_attribute(self, param.name, value)  # self.__dict__ would make a dict per task
        self.task_id = f"{cls.task_family}({_render(params, values, kinds)})"

    @property
    def param_kwargs(self) -> dict[str, Any]:
        """Every parameter's value by name (insignificant ones too)."""
        return {p.name: v for p, v in zip(self._params, self.param_values)}

    def clone(self, cls: type[Task] | None = None, **kwargs: Any) -> Task:
        """A task of `cls` (default: this one's class) with this task's values of the
        parameters both have, and `kwargs` over them (keys `cls` has no parameter for are
        left out, as in Luigi)."""
        target = type(self) if cls is None else cls
        mine = self.param_kwargs
        values: dict[str, Any] = {}
        for param in target._params:
            name = param.name
            if name in kwargs:
                values[name] = kwargs[name]
            elif name in mine:
                values[name] = mine[name]
            elif hasattr(self, name):  # a plain attribute or property of this task, as Luigi
                values[name] = getattr(self, name)
        return target(**values)

    # -- event handlers ----------------------------------------------------------------
    @classmethod
    def event_handler(cls, event: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: call the function on `event` (a `bd.Event`) of this class's tasks and
        its subclasses'; see handlers.py for each event's arguments."""
        from .handlers import check_event, handlers

        check_event(cls, event)

        def register(callback: Callable[..., Any]) -> Callable[..., Any]:
            handlers.add(cls, event, callback)
            return callback

        return register

    @classmethod
    def remove_event_handler(cls, event: str, callback: Callable[..., Any]) -> None:
        """Unregister a callback `event_handler` registered on this class."""
        from .handlers import handlers

        handlers.remove(cls, event, callback)

    def trigger_event(self, event: str, *args: Any, **kwargs: Any) -> None:
        """Call the handlers of `event` this task's class hears, in this process."""
        from .handlers import handlers

        handlers.fire(self, event, *args, **kwargs)

    # -- identity ----------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and other.task_id == self.task_id

    def __hash__(self) -> int:
        return hash(self.task_id)  # a str keeps its hash: nothing to store per task

    def __repr__(self) -> str:
        return self.task_id

    def to_str_params(self, only_significant: bool = False,
                      only_public: bool = False) -> dict[str, str]:
        """Parameter values as the strings the command line would take (`only_significant`:
        those in the task id). `only_public` is Luigi's and changes nothing: batchdeps
        parameters have no visibility. None is `None`, except for an Optional parameter,
        whose None is the empty string (as Luigi writes it)."""
        return {p.name: NONE_TEXT if v is None and not p.nullable else p.serialize(v)
                for p, v in zip(self._params, self.param_values)
                if p.significant or not only_significant}

    # -- what users override -----------------------------------------------------------
    def requires(self) -> Any:
        """The tasks this one needs: None, a task, or a list/tuple/dict of tasks."""
        return []

    def output(self) -> Any:
        """The targets this task makes: a target, or a list/tuple/dict of targets."""
        return []

    def run(self) -> Any:
        """Do the work; every output must exist when this returns.

        The default does nothing (as in Luigi): a task with outputs that keeps it fails
        with "run() returned but output ... does not exist"; one without outputs is built.
        """
        return None

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


#: the full path of a task's set-up, which an `__init__` written by `_write_init` calls
_task_init = Task.__init__


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


class Settings(Task):
    """Settings a pipeline reads in code (Luigi's `luigi.Config`): parameters only.

    `Db().host` has the value of `host` in `[tasks.Db]` of config.toml (`[tasks."ns.Db"]`
    with a namespace), else the parameter's default, as a task's parameters do. A settings
    class is not a task: `batchdeps run` refuses it and `batchdeps list` leaves it out.
    """

    def run(self) -> None:  # pragma: no cover - the registry never hands it to a run
        raise TaskDefinitionError(f"{self.task_family} is a settings class, not a task")


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
        for value in struct:  # a leaf is yielded here: no generator of its own per leaf
            if value is None:
                continue
            if isinstance(value, Mapping) or _is_sequence(value):
                yield from _leaves(value)
            else:
                yield value
    else:
        yield struct


def flatten_requires(task: Task) -> list[Task]:
    """The tasks `task.requires()` returns, as a list; a definition error names the task."""
    try:
        struct = task.requires()
    except (TaskDefinitionError, ConfigError):  # a default from an unset ${VAR}: as it is
        raise
    except Exception as exc:
        raise _broken(task, "requires", exc) from exc
    if type(struct) in _TASK_LEAVES:
        return [struct]
    return _flatten(task, "requires", _TASK_LEAVES, struct)


def flatten_outputs(task: Task) -> list[Any]:
    """The targets `task.output()` returns, as a list; a definition error names the task."""
    try:
        struct = task.output()
    except (TaskDefinitionError, ConfigError):
        raise
    except Exception as exc:
        raise _broken(task, "output", exc) from exc
    if type(struct) in _TARGET_LEAVES:  # one target (the usual output): no more calls
        return [struct]
    return _flatten(task, "output", _TARGET_LEAVES, struct)


def _broken(task: Task, method: str, exc: Exception) -> BrokenTaskError:
    return BrokenTaskError(f"{task.task_id}: {method}() raised {type(exc).__name__}: {exc}",
                           task, exc)


#: Classes whose instances are plain leaves of what requires() / output() return (a task,
#: a target: not a mapping nor a sequence), learnt as they are met. A single one of them,
#: or a list of only them, is taken as it is: the same leaves `_leaves` would walk to and
#: the check of each would pass, without either.
_TASK_LEAVES: set[type] = set()
_TARGET_LEAVES: set[type] = set()
_CONTAINERS = (list, tuple, set, frozenset, GeneratorType, map, filter)


def _leaf_kind(method: str) -> tuple[type, str]:
    """What the leaves of `method`'s answer must be, and their name in an error."""
    if method == "requires":
        return Task, "tasks"
    from .targets import Target

    return Target, "targets"


def _plain_list(items: list[Any], known: set[type], kind: type) -> bool:
    """True when every item of `items` is a plain leaf of the right kind (its class known,
    or learnt here: a `kind` that is neither a mapping nor a container); False at the
    first that is not (None, a nested structure, a wrong type): the walk decides."""
    for item in items:
        cls = type(item)
        if cls in known:
            continue
        if not isinstance(item, kind) or issubclass(cls, Mapping) \
                or issubclass(cls, _CONTAINERS):
            return False
        known.add(cls)
    return True


def _flatten(task: Task, method: str, known: set[type], struct: Any) -> list[Any]:
    """The leaves of `struct`, what `task.<method>()` returned, each checked to be a task
    (requires) or a target (output); what a generator it returned raises while it is
    walked becomes a TaskDefinitionError naming the task."""
    kind, what = _leaf_kind(method)
    try:
        if type(struct) is list and _plain_list(struct, known, kind):
            return struct.copy()  # a list of leaves (the first time its classes are met too)
        leaves = _walk(struct)
    except (TaskDefinitionError, ConfigError):  # a default from an unset ${VAR}: as it is
        raise
    except Exception as exc:
        raise _broken(task, method, exc) from exc
    for leaf in leaves:
        cls = type(leaf)
        if cls in known:
            continue
        if not isinstance(leaf, kind):
            raise TaskDefinitionError(
                f"{task.task_id}: {method}() must return {what}, "
                f"got {cls.__name__} {leaf!r}"
            )
        if not issubclass(cls, Mapping) and not issubclass(cls, _CONTAINERS):
            known.add(cls)
    return leaves


def _walk(struct: Any) -> list[Any]:
    """The leaves of a structure of tasks or targets (one of them is its own leaf)."""
    from .targets import Target

    if isinstance(struct, (Task, Target)):
        return [struct]
    return list(_leaves(struct))
