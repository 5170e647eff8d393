"""Finding task classes by name in the configured modules, and binding config defaults.

A name is looked up as a family first (`Daily`, or `reports.Daily` for a class in the
namespace `reports`); only a dotted name that is no family is imported as a path
`package.module.Class`. So a namespace wins over a module of the same name, and a class
outside the configured modules is still reachable by its path.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import pkgutil
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from .config import UnsetVariable
from .errors import ConfigError, ParameterError, TaskDefinitionError, UnknownTaskError
from .task import ExternalTask, Settings, Task, WrapperTask

_BASES = (Task, ExternalTask, WrapperTask, Settings)


class TaskRegistry:
    """The task classes of a set of modules, looked up by family or dotted path.

    `by_name` holds every family, settings classes (`bd.Settings`) too, so that their
    `[tasks.NAME]` defaults are bound; `names()` and `get()` are for tasks only.
    """

    def __init__(self) -> None:
        self.by_name: dict[str, list[type[Task]]] = {}

    # -- filling -----------------------------------------------------------------------
    def add(self, cls: type[Task]) -> None:
        if cls in _BASES:
            return
        bucket = self.by_name.setdefault(cls.family(), [])
        if cls not in bucket:
            bucket.append(cls)

    def add_module(self, module: ModuleType) -> None:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Task)
                and value not in _BASES
                and value.__module__ == module.__name__
            ):
                self.add(value)

    @classmethod
    def from_modules(cls, names: list[str], roots: list[str] | None = None,
                     source: str = "config") -> TaskRegistry:
        """Import each module (a package with all its submodules) and collect its tasks.

        `roots` (the config file's folder, then the current one) are made importable first;
        `source` names where the module list came from, for error messages.
        """
        for root in reversed(roots or []):
            if root not in sys.path:
                sys.path.insert(0, root)
        registry = cls()
        with _noting_interrupts():
            for name in names:
                try:
                    modules = _import_tree(name)
                except ConfigError as exc:
                    raise ConfigError(f"{exc} (listed in {source} [batchdeps] modules)") from None
                for module in modules:
                    registry.add_module(module)
        return registry

    # -- lookup ------------------------------------------------------------------------
    def get(self, name: str) -> type[Task]:
        """The task class called `name`: a family (namespace included), else a dotted
        path `package.module.Class`."""
        found = self.by_name.get(name)
        if not found and "." in name:
            module = name.rpartition(".")[0]
            unknown = self._unknown(name, f": no family of that name, and no module '{module}' "
                                          "to import it from.")
            with _noting_interrupts():
                found = [_import_dotted(name, unknown)]
        if not found:
            raise self._unknown(name)
        if len(found) > 1:
            paths = ", ".join(f"{c.__module__}.{c.__name__}" for c in found)
            raise UnknownTaskError(f"task name '{name}' is ambiguous: use one of {paths}")
        cls = found[0]
        if issubclass(cls, Settings):
            raise UnknownTaskError(f"'{name}' is a settings class (bd.Settings), not a task: "
                                   "it holds parameters read from config and cannot be run")
        return cls

    def _unknown(self, name: str, detail: str = ".") -> UnknownTaskError:
        names = self.names()
        suggestions = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        if not suggestions:
            lowered = {n.lower(): n for n in names}
            bare = {n.rpartition(".")[2].lower(): n for n in names if "." in n}
            key = name.lower()
            if key in lowered:
                suggestions = [lowered[key]]
            elif key.rpartition(".")[2] in bare:  # the class name without its namespace
                suggestions = [bare[key.rpartition(".")[2]]]
        hint = f" Did you mean {' or '.join(suggestions)}?" if suggestions else ""
        known = ", ".join(names) or "none"
        return UnknownTaskError(f"unknown task '{name}'{detail}{hint} Known tasks: {known}.")

    def names(self) -> list[str]:
        """Every task family (settings classes left out), sorted."""
        return sorted(name for name, classes in self.by_name.items()
                      if not all(issubclass(c, Settings) for c in classes))

    # -- config defaults ---------------------------------------------------------------
    def apply_defaults(self, tasks: dict[str, dict[str, Any]], label: str = "config") -> None:
        """Bind `[tasks.FAMILY]` parameter defaults to the task classes, parsed and checked.

        Every class of this registry first loses defaults a previous config bound to it, so
        two builds in one process with different configs do not leak into each other.
        """
        for bound in self.by_name.values():
            for cls in bound:
                cls._config_defaults = {}
        for family, values in self._families(tasks):
            classes = self.by_name.get(family)
            if not classes:
                raise ConfigError(f"{label}: [tasks.{family}] names no known task")
            for cls in classes:
                params = {p.name: p for p in cls.parameters()}
                parsed: dict[str, Any] = {}
                for key, value in dict.items(values):  # unset ${VAR}s too, not raised here
                    param = params.get(key)
                    if param is None:
                        raise ConfigError(
                            f"{label}: [tasks.{family}] {key}: {family} has no parameter "
                            f"'{key}' (parameters: {', '.join(params) or 'none'})"
                        )
                    if isinstance(value, UnsetVariable):
                        parsed[key] = value  # an error once a task takes this default
                        continue
                    try:
                        parsed[key] = param.convert(family, value)
                    except ParameterError as exc:
                        raise ConfigError(f"{label}: [tasks.{family}] {key}: {exc}") from None
                cls._config_defaults = parsed

    def _families(self, tasks: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """`[tasks.FAMILY]` tables by family: `[tasks."ns.Daily"]`, and `[tasks.ns.Daily]`
        (TOML's nested tables) when `ns` is no family but a namespace of known ones."""
        found: list[tuple[str, dict[str, Any]]] = []
        for name, values in tasks.items():
            prefix = name + "."
            nested = (name not in self.by_name and values
                      and all(isinstance(v, dict) for v in dict.values(values))
                      and any(f.startswith(prefix) for f in self.by_name))
            if nested:
                found.extend(self._families({prefix + key: value
                                             for key, value in dict.items(values)}))
            else:
                found.append((name, values))
        return found


#: True while a SIGINT has arrived during `_noting_interrupts()`: a KeyboardInterrupt out of
#: an import is then a real Ctrl-C, not one the module raised itself.
_signalled = False


@contextlib.contextmanager
def _noting_interrupts() -> Iterator[None]:
    """Within: note a real SIGINT before it is raised as KeyboardInterrupt as usual."""
    global _signalled
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.default_int_handler:

            def handler(signum: int, frame: Any) -> None:
                global _signalled
                _signalled = True
                raise KeyboardInterrupt

            signal.signal(signal.SIGINT, handler)
        else:
            previous = None  # someone else's handler: leave it alone
    _signalled = False
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigError(f"cannot import task module '{name}': no such module") from None
        raise _definition_error(name, exc) from exc
    except SystemExit as exc:  # a script's sys.exit() run at import; nothing has run yet
        raise _definition_error(name, exc, f"called sys.exit({exc.code!r})") from None
    except KeyboardInterrupt as exc:
        if _signalled:
            raise  # Ctrl-C while importing: an interrupt, as anywhere else
        raise _definition_error(name, exc, "raised KeyboardInterrupt") from None
    except Exception as exc:
        raise _definition_error(name, exc) from exc


def _definition_error(name: str, exc: BaseException, what: str = "") -> TaskDefinitionError:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    if not what:
        what = f"failed{where}: {type(exc).__name__}: {exc}"
    else:
        what = f"{what}{where}: a task module must only define tasks when imported"
    return TaskDefinitionError(f"importing task module '{name}' {what}")


def _import_tree(name: str) -> list[ModuleType]:
    module = _import(name)
    modules = [module]
    path = getattr(module, "__path__", None)
    if path is not None:
        for info in pkgutil.walk_packages(path, prefix=name + "."):
            modules.append(_import(info.name))
    return modules


def _import_dotted(name: str, unknown: UnknownTaskError) -> type[Task]:
    """The class at path `name`; `unknown` (no such family) when no module has that path."""
    module_name, _, class_name = name.rpartition(".")
    try:
        module = _import(module_name)
    except ConfigError:  # no such module: the name was meant as a family
        raise unknown from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise UnknownTaskError(f"'{name}': {module_name} has no task class {class_name}")
    return cls
