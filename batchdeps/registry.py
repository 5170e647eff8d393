"""Finding task classes by name in the configured modules, and binding config defaults."""

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
from .task import ExternalTask, Task, WrapperTask

_BASES = (Task, ExternalTask, WrapperTask)


class TaskRegistry:
    """The task classes of a set of modules, looked up by class name or dotted path."""

    def __init__(self) -> None:
        self.by_name: dict[str, list[type[Task]]] = {}

    # -- filling -----------------------------------------------------------------------
    def add(self, cls: type[Task]) -> None:
        bucket = self.by_name.setdefault(cls.__name__, [])
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
        """The task class called `name` (class name or `package.module.Class`)."""
        if "." in name:
            with _noting_interrupts():
                return _import_dotted(name)
        found = self.by_name.get(name)
        if not found:
            suggestions = difflib.get_close_matches(name, list(self.by_name), n=3, cutoff=0.5)
            if not suggestions:
                lowered = {n.lower(): n for n in self.by_name}
                if name.lower() in lowered:
                    suggestions = [lowered[name.lower()]]
            hint = f" Did you mean {' or '.join(suggestions)}?" if suggestions else ""
            known = ", ".join(sorted(self.by_name)) or "none"
            raise UnknownTaskError(f"unknown task '{name}'.{hint} Known tasks: {known}.")
        if len(found) > 1:
            paths = ", ".join(f"{c.__module__}.{c.__name__}" for c in found)
            raise UnknownTaskError(f"task name '{name}' is ambiguous: use one of {paths}")
        return found[0]

    def names(self) -> list[str]:
        return sorted(self.by_name)

    # -- config defaults ---------------------------------------------------------------
    def apply_defaults(self, tasks: dict[str, dict[str, Any]], label: str = "config") -> None:
        """Bind `[tasks.FAMILY]` parameter defaults to the task classes, parsed and checked.

        Every class of this registry first loses defaults a previous config bound to it, so
        two builds in one process with different configs do not leak into each other.
        """
        for bound in self.by_name.values():
            for cls in bound:
                cls._config_defaults = {}
        for family, values in tasks.items():
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


def _import_dotted(name: str) -> type[Task]:
    module_name, _, class_name = name.rpartition(".")
    module = _import(module_name)
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise UnknownTaskError(f"'{name}': {module_name} has no task class {class_name}")
    return cls
