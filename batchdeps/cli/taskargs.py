"""A task's parameters as command-line options: parsing, ranges, repeats, completion.

`run`, `status` and `graph` all take `TASK [--PARAM VALUE ...]`; this module turns a task
class into click options, the values given into the requested tasks (one per value of a
range `A..B`), and answers shell completion for task names and parameters.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from ..errors import BatchdepsError, ExitCode, ParameterError, TaskDefinitionError, UsageError


class ValueRange:
    """The values of `--param A..B`: one requested task per value."""

    __slots__ = ("text", "values")

    def __init__(self, text: str, values: tuple[Any, ...]) -> None:
        self.text = text
        self.values = values


class _GivenNone:
    """`--name ""` for an Optional parameter: None, given (not "use the default")."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "''"


GIVEN_NONE = _GivenNone()


class TaskParamType(click.ParamType):
    """A click type that parses with a batchdeps Parameter, so errors read the same."""

    def __init__(self, param: Any) -> None:
        self.param = param
        self.name = param.type_name

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            values = self.param.parse_range(value)
            if values is not None:
                return ValueRange(value, tuple(values))
            parsed = self.param.parse(value)
            return GIVEN_NONE if parsed is None else parsed
        except ValueError as exc:
            self.fail(f"{value!r} is not a valid {self.param.type_name}: {exc}", param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(choice) for choice in self.param.completions()
                if choice.startswith(incomplete)]


def _once(kind: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Callback of a task option given with multiple=True: a list joins, a scalar must be once.

    click would keep the last of `--day A --day B` silently; a Make or Luigi user expects
    either an error or a list, so a scalar given twice is an error naming both values. A
    flag may repeat (`--on --on`), but not contradict itself (`--on --no-on`).
    """

    def callback(ctx: click.Context, option: click.Parameter, value: Any) -> Any:
        if not value:
            return None
        if kind == "list":
            parts = [part for part in value if part is not GIVEN_NONE]
            return tuple(item for part in parts for item in part) if parts else GIVEN_NONE
        if kind == "flag":
            if len(set(value)) > 1:
                raise click.BadParameter(f"both {option.opts[0]} and "
                                         f"{option.secondary_opts[0]} given; give one",
                                         ctx=ctx, param=option)
            return value[0]
        if len(value) > 1:
            shown = ", ".join(v.text if isinstance(v, ValueRange) else repr(_show(v))
                              for v in value)
            raise click.BadParameter(
                f"given {len(value)} times ({shown}); give it once (a range A..B asks for "
                "one task per value)", ctx=ctx, param=option)
        return value[0]

    return callback


def _show(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def single(ctx: click.Context, option: click.Parameter, value: Any) -> Any:
    """Callback for a command's own valued options (multiple=True): given at most once."""
    if isinstance(value, tuple):
        if len(value) > 1:
            raise click.BadParameter(
                f"given {len(value)} times ({', '.join(map(str, value))}); give it once",
                ctx=ctx, param=option)
        return value[0] if value else None
    return value


def task_options(cls: type, taken: set[str], command: str) -> list[click.Parameter]:
    """One click option per parameter of `cls`; `taken` are the command's own option names."""
    options: list[click.Parameter] = []
    names = set()
    config_defaults = cls._config_defaults  # type: ignore[attr-defined]
    for param in cls.parameters():  # type: ignore[attr-defined]
        flag = "--" + param.name.replace("_", "-")
        names.add(param.name)
        if param.name in config_defaults:
            from ..config import UnsetVariable

            value = config_defaults[param.name]  # "${DAY} (not set)" for an unset variable
            text = str(value) if isinstance(value, UnsetVariable) else param.serialize(value)
            shown = f"default: {text} (config)"
        elif param.has_default:
            default = param.convert(cls.family(), param.default)
            shown = "default: None" if default is None else f"default: {param.serialize(default)}"
        else:
            shown = "required"
        if param.supports_range:
            shown += "; A..B for a range"
        help_text = f"{param.description} [{param.type_name}; {shown}]".strip()
        kind = "list" if param.multiple else "scalar"
        if param.type_name == "bool":
            option = click.Option([f"{flag}/--no-{flag[2:]}", param.name], default=None,
                                  multiple=True, callback=_once("flag"), help=help_text)
        else:
            option = click.Option([flag, param.name], type=TaskParamType(param), default=None,
                                  multiple=True, callback=_once(kind), help=help_text,
                                  metavar=param.type_name.upper())
        options.append(option)
    clash = names & (taken | {"help"})
    if clash:
        raise TaskDefinitionError(
            f"{cls.family()}: parameter name(s) {', '.join(sorted(clash))} clash with "
            f"options of `batchdeps {command}`; rename them"
        )
    return options


def requested_tasks(cls: Any, values: dict[str, Any]) -> list[Any]:
    """The tasks the given parameter values ask for: one, or one per value of each range.

    Several ranges give every combination, ordered by the first range, then the next.
    """
    from ..task import refuse_abstract

    refuse_abstract(cls)
    given = {name: None if value is GIVEN_NONE else value
             for name, value in values.items() if value is not None}
    for param in cls.parameters():
        if param.name not in given and not param.has_default \
                and param.name not in cls._config_defaults:
            flag = "--" + param.name.replace("_", "-")
            raise UsageError(
                f"{cls.family()} needs {flag} ({param.type_name}): give it on the command "
                f"line or as [tasks.{_table_key(cls.family())}] {param.name} in the config"
            )
    ranged = [name for name, value in given.items() if isinstance(value, ValueRange)]
    combos = itertools.product(*(given[name].values for name in ranged))
    tasks = []
    try:
        for combo in combos:
            tasks.append(cls(**{**given, **dict(zip(ranged, combo))}))
    except ParameterError as exc:
        raise UsageError(str(exc)) from None
    return tasks


def _table_key(family: str) -> str:
    """A family as TOML writes it in a table header (`"ns.Daily"` quoted)."""
    return f'"{family}"' if "." in family else family


def load_registry(config_path: str | None) -> tuple[Any, Any]:
    """The config and the task registry of its modules, with `[tasks.*]` defaults bound."""
    from ..config import load_config
    from ..registry import TaskRegistry

    config = load_config(config_path)
    registry = TaskRegistry.from_modules(config.modules, roots=[config.root, os.getcwd()],
                                          source=config.where())
    registry.apply_defaults(config.tasks, label=config.where())
    return config, registry


def task_class(registry: Any, config: Any, name: str) -> Any:
    cls = registry.get(name)
    if cls not in registry.by_name.get(cls.family(), []):  # a dotted path outside the modules
        registry.add(cls)
        registry.apply_defaults(config.tasks, label=config.where())
    return cls


# -- completion ----------------------------------------------------------------------------
def _complete_config(ctx: click.Context) -> tuple[Any, Any] | None:
    args = ctx.params.get("args") or ()
    from .common import scan

    try:
        return load_registry(scan(tuple(args), "--config"))
    except Exception:  # noqa: BLE001 - completion must never show a traceback
        return None


def complete_task_name(runnable_only: bool) -> Callable[..., list[Any]]:
    """shell_complete for the TASK argument: the task names of the configured modules."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        from ..task import ExternalTask

        loaded = _complete_config(ctx)
        if loaded is None:
            return []
        _, registry = loaded
        items = []
        for name in registry.names():
            cls = registry.by_name[name][0]
            if runnable_only and issubclass(cls, ExternalTask):
                continue
            if name.startswith(incomplete):
                doc = (cls.__doc__ or "").strip().splitlines()
                items.append(CompletionItem(name, help=doc[0] if doc else None))
        return items

    return complete


def complete_task_args(own_options: Callable[[], list[click.Parameter]],
                       command: str) -> Callable[..., list[Any]]:
    """shell_complete for the ARGS after TASK: the task's flags, its own, and enum values."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        task_name = ctx.params.get("task_name")
        loaded = _complete_config(ctx)
        if not task_name or loaded is None:
            return []
        config, registry = loaded
        try:
            cls = task_class(registry, config, task_name)
            own = own_options()
            options = task_options(cls, {p.name for p in own if p.name}, command) + own
        except Exception:  # noqa: BLE001 - completion must never show a traceback
            return []
        previous = (ctx.params.get("args") or ())[-1:]
        for option in options:
            if previous and previous[0] in option.opts and isinstance(option, click.Option) \
                    and not option.is_flag:
                return list(option.type.shell_complete(ctx, option, incomplete))
        items = []
        for option in options:
            for flag in [*option.opts, *getattr(option, "secondary_opts", [])]:
                if flag.startswith("--") and flag.startswith(incomplete or "-"):
                    items.append(CompletionItem(flag, help=getattr(option, "help", None)))
        return items

    return complete


class TaskCommand(click.Command):
    """A command `NAME TASK [ARGS]...` whose option completion asks the task's parameters.

    click completes a word starting with `-` from the command's own options; these commands
    take their options after TASK, so that goes to the ARGS argument's completer instead.
    """

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        if incomplete.startswith("-") and ctx.params.get("task_name"):
            for param in self.params:
                if param.name == "args":
                    return param.shell_complete(ctx, incomplete)
        return super().shell_complete(ctx, incomplete)


def take_family_flags(registry: Any, args: tuple[str, ...]) -> tuple[str, ...]:
    """Apply `--Family-param VALUE` (Luigi's flag for a parameter of any task family) as
    that family's default for this command, over `[tasks.Family]`; the other arguments
    come back. A family that is known with a parameter it lacks is a usage error.
    """
    families = sorted(registry.by_name, key=len, reverse=True)
    rest: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        name, has_value, inline = token[2:].partition("=") if token.startswith("--") \
            else ("", "", "")
        family = next((f for f in families if name.startswith(f + "-")), None)
        if family is None:
            rest.append(token)
            continue
        param_name = name[len(family) + 1:].replace("-", "_")
        classes = registry.by_name[family]
        params = [{p.name: p for p in cls.parameters()}.get(param_name) for cls in classes]
        if any(param is None for param in params):
            known = ", ".join(p.name for p in classes[0].parameters()) or "none"
            raise UsageError(f"--{name}: task {family} has no parameter '{param_name}' "
                             f"(parameters: {known})")
        if has_value:
            text = inline
        elif params[0].type_name == "bool" and (index >= len(args)
                                                or args[index].startswith("--")):
            text = "true"  # a flag: `--Family-dry`
        elif index < len(args):
            text = args[index]
            index += 1
        else:
            raise UsageError(f"--{name} needs a value")
        for cls, param in zip(classes, params):
            try:
                value = param.convert(family, param.parse(text))
            except (ValueError, TypeError) as exc:
                raise UsageError(f"--{name}: {text!r} is not a valid {param.type_name}: "
                                 f"{exc}") from None
            except ParameterError as exc:
                raise UsageError(f"--{name}: {exc}") from None
            cls._config_defaults = {**cls._config_defaults, param_name: value}
    return tuple(rest)


def invoke_for_task(
    ctx: click.Context,
    task_name: str,
    args: tuple[str, ...],
    command: str,
    own_options: list[click.Parameter],
    callback: Callable[[Any, Any, dict[str, Any], dict[str, Any]], None],
) -> None:
    """Load TASK's class, parse `args` as its parameters plus `own_options`, call back.

    `callback(cls, config, task_values, own_values)` runs inside the click context, so a
    bad value exits 2 with click's message before anything is resolved.
    """
    from .common import fail, scan

    debug = "--debug" in args
    try:
        config, registry = load_registry(scan(args, "--config"))
        cls = task_class(registry, config, task_name)
        args = take_family_flags(registry, args)
        own_names = {p.name for p in own_options if p.name}
        options = task_options(cls, own_names, command)
    except BatchdepsError as exc:
        fail(exc, debug)
    except KeyboardInterrupt:  # a real Ctrl-C while the task modules import (nothing ran)
        click.echo("batchdeps: interrupted while loading the task modules", err=True)
        sys.exit(ExitCode.INTERRUPTED)

    def run(**values: Any) -> None:
        own = {name: values.pop(name) for name in own_names}
        callback(cls, config, values, own)

    sub = click.Command(
        task_name, params=options + own_options, callback=run,
        help=(cls.__doc__ or f"{command} {task_name}.").strip(),
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    # No parent context: click would put the outer "[TASK_NAME] [ARGS]..." into the usage
    # and "Try ... --help" lines, which then name a command that does not work.
    with sub.make_context(f"{ctx.command_path} {task_name}", list(args)) as sub_ctx:
        sub.invoke(sub_ctx)


def no_task(ctx: click.Context, task_name: str | None, args: tuple[str, ...]) -> None:
    """`batchdeps CMD --help` (exit 0), or CMD without TASK (usage error, exit 2)."""
    from ..errors import ExitCode

    wants_help = task_name in ("-h", "--help") or "--help" in args or "-h" in args
    if not wants_help:
        click.echo("batchdeps: error: missing TASK: name a task (`batchdeps list` shows "
                   "them)\n", err=True)
    click.echo(ctx.get_help(), err=not wants_help)
    ctx.exit(ExitCode.OK if wants_help else ExitCode.USAGE)


#: How `status`, `graph` and `run` are declared: options after TASK belong to the task.
TASK_COMMAND_SETTINGS = {"ignore_unknown_options": True, "allow_extra_args": True,
                         "help_option_names": []}


def rerun_triggers_option() -> click.Option:
    """`--rerun-triggers`, as `run` and `status` take it."""
    return click.Option(
        ["--rerun-triggers"], default=None, multiple=True, callback=single,
        metavar="TRIGGERS", help="Also rebuild complete tasks whose build record is out of "
        "date: comma-separated version, params, upstream, unrecorded; none to turn off "
        "[run] rerun_triggers (default: that setting, else none).")
