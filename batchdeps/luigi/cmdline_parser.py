"""The `luigi` command line: `[--module M] TASK [--param V] [--Family-param V] [options]`.

While a `CmdlineParser` is the active instance (`global_instance()`), a task made
anywhere takes its parameter values from it: the requested task's `--param V`, and
`--Family-param V` for tasks of any other family, as Luigi does.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import BatchdepsError, TaskDefinitionError, UsageError

__all__ = ["CmdlineParser"]

#: Options of the `luigi` command itself: name -> takes a value.
GLOBAL_OPTIONS = {
    "module": True, "workers": True, "log-level": True, "local-scheduler": False,
    "no-lock": False, "lock-pid-dir": True, "lock-size": True, "take-lock": False,
    "parallel-scheduling": False, "detailed-summary": False, "logging-conf-file": True,
    "no-configure-logging": False, "help": False, "help-all": False,
    "worker-keep-alive": False, "retcode-already-running": True, "lock-url": True,
}
#: Options Luigi has that ask for what batchdeps does not do: an error naming them.
REFUSED_OPTIONS = {
    "scheduler-host": "there is no central scheduler: use `--lock-url` with "
                      "`batchdeps lock-server` (docs/from-luigi.md, \"Running\")",
    "scheduler-port": "there is no central scheduler: use `--lock-url` with "
                      "`batchdeps lock-server` (docs/from-luigi.md, \"Running\")",
    "scheduler-url": "there is no central scheduler: use `--lock-url` with "
                     "`batchdeps lock-server` (docs/from-luigi.md, \"Running\")",
    "assistant": "there is no central scheduler to assist (docs/from-luigi.md, \"Running\")",
}


def _import_error(name: str, exc: BaseException) -> TaskDefinitionError:
    """A module given with --module that raised while importing, named with where."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    if isinstance(exc, SyntaxError):
        where = f" ({exc.filename}:{exc.lineno})"
    return TaskDefinitionError(f"importing --module {name} failed{where}: "
                               f"{type(exc).__name__}: {exc}")


class _Known:
    """What Luigi's argparse namespace holds that callers read."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


class CmdlineParser:
    """The parsed `luigi` command line, and the instance tasks read their values from."""

    _instance: CmdlineParser | None = None

    @classmethod
    def get_instance(cls) -> CmdlineParser | None:
        return cls._instance

    @classmethod
    @contextlib.contextmanager
    def global_instance(cls, cmdline_args: Sequence[str],
                        allow_override: bool = False) -> Iterator[CmdlineParser]:
        """Within: tasks take their values from `cmdline_args`."""
        orig = cls._instance
        if orig is not None and not allow_override:
            raise UsageError("a command line is already being parsed")
        new = cls(cmdline_args)
        cls._instance = new
        try:
            yield new
        finally:
            cls._instance = orig

    def __init__(self, cmdline_args: Sequence[str]) -> None:
        self.args = list(cmdline_args)
        self.options: dict[str, Any] = {}
        self.task_name: str | None = None
        self.task_values: dict[str, str] = {}
        self.family_values: dict[tuple[str, str], str] = {}
        self._parse(self._import_modules(self.args))
        known = {key.replace("-", "_"): value for key, value in self.options.items()}
        for (family, param), value in self.family_values.items():
            known[f"{family}_{param}"] = value
        self.known_args = _Known(known)

    # -- parsing -----------------------------------------------------------------------
    @staticmethod
    def _import_modules(args: list[str]) -> list[str]:
        """Import every `--module M` first, so that task families are known."""
        rest: list[str] = []
        pending = iter(args)
        for token in pending:
            if token == "--module" or token.startswith("--module="):
                name = token.partition("=")[2] if "=" in token else next(pending, None)
                if not name:
                    raise UsageError("--module needs a module name")
                try:
                    importlib.import_module(name)
                except ModuleNotFoundError as exc:
                    if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                        raise UsageError(f"--module {name}: no such module") from None
                    raise _import_error(name, exc) from exc
                except BatchdepsError:
                    raise
                except Exception as exc:
                    raise _import_error(name, exc) from exc
                rest.extend(["--module", name])
            else:
                rest.append(token)
        return rest

    def _parse(self, args: list[str]) -> None:
        from .task_register import Register

        families = sorted(Register.task_names(), key=len, reverse=True)
        index = 0
        while index < len(args):
            token = args[index]
            index += 1
            if not token.startswith("--"):
                if self.task_name is not None:
                    raise UsageError(f"unexpected argument {token!r}: one task name is given "
                                     f"already ({self.task_name})")
                self.task_name = token
                continue
            name, has_value, inline = token[2:].partition("=")
            if name in REFUSED_OPTIONS:
                raise UsageError(f"--{name}: {REFUSED_OPTIONS[name]}")
            if name in GLOBAL_OPTIONS:
                if GLOBAL_OPTIONS[name]:
                    value, index = self._value(args, index, name, inline if has_value else None)
                    self.options[name] = value
                else:
                    self.options[name] = True
                continue
            target = self._owner(name, families)
            if target is None:
                raise UsageError(f"unknown option --{name}" + (
                    f" for task {self.task_name}" if self.task_name else
                    " (give the task name before its parameters)"))
            family, param, local = target
            flag = self._is_flag(family, param)
            if flag and not has_value:
                text = "true"
                if param.startswith("no_") and not self._has_param(family, param):
                    param, text = param[3:], "false"
            else:
                text, index = self._value(args, index, name, inline if has_value else None)
            if local:  # `--param`: the task named only (Luigi's "local" parameters)
                self.task_values[param] = text
            else:  # `--Family-param`: every task of the family, the named one too
                self.family_values[(family, param)] = text

    def _owner(self, name: str, families: list[str]) -> tuple[str, str, bool] | None:
        """(family, parameter, whether only the task named) a `--name` belongs to: the
        task's own, or `Family-param`."""
        if self.task_name is not None:
            param = name.replace("-", "_")
            if self._has_param(self.task_name, param) or (
                    param.startswith("no_") and self._is_flag(self.task_name, param[3:])):
                return self.task_name, param, True
        for family in families:
            if name.startswith(family + "-"):
                param = name[len(family) + 1:].replace("-", "_")
                if self._has_param(family, param) or param.startswith("no_"):
                    return family, param, False
                raise UsageError(f"--{name}: task {family} has no parameter {param!r}")
        param = name.replace("-", "_")
        for family in families:  # a class with `use_cmdline_section = False`: `--param`
            if not getattr(self._cls(family), "use_cmdline_section", True) and (
                    self._has_param(family, param)
                    or param.startswith("no_") and self._is_flag(family, param[3:])):
                return family, param, False
        return None

    @staticmethod
    def _cls(family: str) -> Any:
        from .task_register import Register

        return Register.get_task_cls(family)

    def _has_param(self, family: str, param: str) -> bool:
        return param in dict(self._cls(family).get_params())

    def _is_flag(self, family: str, param: str) -> bool:
        from .parameter import BoolParameter

        found = dict(self._cls(family).get_params()).get(param)
        return isinstance(found, BoolParameter) and found.parsing == BoolParameter.IMPLICIT_PARSING

    @staticmethod
    def _value(args: list[str], index: int, name: str, inline: str | None) -> tuple[str, int]:
        if inline is not None:
            return inline, index
        if index >= len(args):
            raise UsageError(f"--{name} needs a value")
        return args[index], index + 1

    # -- what tasks and callers read ---------------------------------------------------
    def value_for(self, family: str, param: str) -> str | None:
        """The command line's `--Family-param` string for every task of `family`, or None
        (a `--param` is the named task's only: `get_task_obj()` gives it)."""
        return self.family_values.get((family, param))

    def get_task_obj(self) -> Any:
        """The requested task, made from the command line's values: its own `--param`
        ones first, then `--Family-param`, config and defaults, as in Luigi."""
        from ..task import refuse_abstract
        from .parameter import ParameterValueError

        if self.task_name is None:
            raise UsageError("no task named on the command line")
        cls = self._cls(self.task_name)
        refuse_abstract(cls)
        params = dict(cls.get_params())
        kwargs = {}
        for name, text in self.task_values.items():
            try:
                kwargs[name] = params[name].parse(text)
            except (ValueError, TypeError, KeyError) as exc:
                raise ParameterValueError(
                    f"{self.task_name}: bad value {text!r} for --{name.replace('_', '-')}: "
                    f"{exc}") from None
        return cls(**kwargs)

    @property
    def workers(self) -> int | None:
        text = self.options.get("workers")
        if text is None:
            return None
        try:
            workers = int(text)
        except ValueError:
            raise UsageError(f"--workers must be a whole number, got {text!r}") from None
        if workers < 1:
            raise UsageError(f"--workers must be 1 or more, got {workers}")
        return workers
