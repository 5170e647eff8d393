"""`batchdeps run TASK [--PARAM VALUE ...]`: options made from the task's parameters, then a build."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from typing import Any

import click

from ..errors import BatchdepsError, ExitCode, ParameterError, UsageError
from .common import fail, scan, setup_logging

COMMON_OPTION_NAMES = {
    "workers", "dry_run", "force", "lock_url", "config", "log_level", "log_format", "debug",
    "wait_timeout",
}
#: Parameter names a task may not use: they would shadow an option of `batchdeps run`.
RESERVED_PARAMETER_NAMES = COMMON_OPTION_NAMES | {"help"}


# -- run ---------------------------------------------------------------------------------
class _TaskParamType(click.ParamType):
    """A click type that parses with a batchdeps Parameter, so errors read the same."""

    def __init__(self, param: Any) -> None:
        self.param = param
        self.name = param.type_name

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.param.parse(value)
        except ValueError as exc:
            self.fail(f"{value!r} is not a valid {self.param.type_name}: {exc}", param, ctx)


def _task_options(cls: type) -> list[click.Parameter]:
    options: list[click.Parameter] = []
    taken = set()
    for param in cls.parameters():  # type: ignore[attr-defined]
        flag = "--" + param.name.replace("_", "-")
        taken.add(param.name)
        config_defaults = cls._config_defaults  # type: ignore[attr-defined]
        if param.name in config_defaults:
            shown = f"default: {param.serialize(config_defaults[param.name])} (config)"
        elif param.has_default:
            shown = f"default: {param.serialize(param.convert(cls.__name__, param.default))}"
        else:
            shown = "required"
        help_text = f"{param.description} [{param.type_name}; {shown}]".strip()
        if param.type_name == "bool":
            option = click.Option([f"{flag}/--no-{flag[2:]}", param.name], default=None,
                                  help=help_text)
        else:
            option = click.Option([flag, param.name], type=_TaskParamType(param), default=None,
                                  help=help_text, metavar=param.type_name.upper())
        options.append(option)
    clash = taken & RESERVED_PARAMETER_NAMES
    if clash:
        from ..errors import TaskDefinitionError

        raise TaskDefinitionError(
            f"{cls.__name__}: parameter name(s) {', '.join(sorted(clash))} clash with "
            "options of `batchdeps run`; rename them"
        )
    return options


def _common_options() -> list[click.Parameter]:
    return [
        click.Option(["--workers"], type=click.IntRange(min=1), default=None,
                     help="Attempts run in parallel (default: [batchdeps] workers, else 1)."),
        click.Option(["--dry-run"], is_flag=True, help="Print what would run and why; change nothing."),
        click.Option(["--force"], is_flag=True, help="Rebuild the named task even if complete."),
        click.Option(["--lock-url"], default=None, help="Lock server URL (default: [lock] url, "
                     "else $BATCHDEPS_LOCK_URL, else machine-local locks)."),
        click.Option(["--wait-timeout"], type=click.FloatRange(min=0), default=None,
                     help="Seconds to wait for a task held elsewhere (exit 4 after)."),
        click.Option(["--config"], default=None, help="Config file (default: $BATCHDEPS_CONFIG, "
                     "else ./config.toml)."),
        click.Option(["--log-level"], type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"],
                     case_sensitive=False), default=None, help="Log level (default INFO)."),
        click.Option(["--log-format"], type=click.Choice(["text", "json"]), default=None,
                     help="Log line format."),
        click.Option(["--debug"], is_flag=True, help="Show tracebacks of errors."),
    ]


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                      "help_option_names": []},
)
@click.argument("task_name", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_command(ctx: click.Context, task_name: str | None, args: tuple[str, ...]) -> None:
    """Build TASK and whatever it needs that is missing.

    Usage: batchdeps run TASK [--PARAM VALUE ...] [--workers N] [--dry-run] [--force]
    [--lock-url URL] [--config FILE]. `batchdeps run TASK --help` lists TASK's parameters.
    """
    debug = "--debug" in args
    if task_name is None or task_name.startswith("-"):
        wants_help = task_name in ("-h", "--help") or "--help" in args or "-h" in args
        _run_help(ctx, args, wants_help)
        return
    try:
        from ..config import load_config
        from ..registry import TaskRegistry

        config = load_config(scan(args, "--config"))
        registry = TaskRegistry.from_modules(config.modules, roots=[config.root, os.getcwd()],
                                              source=config.where())
        cls = registry.get(task_name)
        registry.add(cls)
        registry.apply_defaults(config.tasks, label=config.where())
        task_options = _task_options(cls)
    except BatchdepsError as exc:
        fail(exc, debug)

    def callback(**values: Any) -> None:
        common = {name: values.pop(name) for name in COMMON_OPTION_NAMES}
        _run(cls, values, common, config)

    command = click.Command(
        task_name, params=task_options + _common_options(), callback=callback,
        help=(cls.__doc__ or f"Build {task_name}.").strip(),
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    # No parent context: click would put `run`'s own "[TASK_NAME] [ARGS]..." into the usage
    # and "Try ... --help" lines, which then name a command that does not work.
    with command.make_context(f"{ctx.command_path} {task_name}", list(args)) as sub:
        command.invoke(sub)


def _run_help(ctx: click.Context, args: tuple[str, ...], wants_help: bool) -> None:
    """`batchdeps run --help` (exit 0), or no TASK given (usage error, exit 2)."""
    if not wants_help:
        click.echo("batchdeps: error: missing TASK: name the task to build\n", err=True)
    click.echo(ctx.get_help(), err=not wants_help)
    try:
        from ..config import load_config
        from ..registry import TaskRegistry

        config = load_config(scan(args, "--config"))
        registry = TaskRegistry.from_modules(config.modules, roots=[config.root, os.getcwd()],
                                              source=config.where())
    except BatchdepsError as exc:
        click.echo(f"\n(no task list: {exc})", err=not wants_help)
        ctx.exit(ExitCode.OK if wants_help else ExitCode.USAGE)
    click.echo("\nTasks:", err=not wants_help)
    for name in registry.names():
        cls = registry.by_name[name][0]
        doc = (cls.__doc__ or "").strip().splitlines()
        click.echo(f"  {name:24} {doc[0] if doc else ''}", err=not wants_help)
    ctx.exit(ExitCode.OK if wants_help else ExitCode.USAGE)


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _run(cls: Any, values: dict[str, Any], common: dict[str, Any], config: Any) -> None:
    debug = bool(common["debug"])
    setup_logging((common["log_level"] or config.batchdeps.get("log_level") or "INFO").upper(),
                  common["log_format"] or config.batchdeps.get("log_format") or "text")
    # Until the runner takes over (resolution can take a while), SIGTERM is a Ctrl-C too:
    # nothing is locked or written yet, and the exit code is still ExitCode.INTERRUPTED.
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        code = _build(cls, values, common, config)
    except BatchdepsError as exc:
        fail(exc, debug)
    except KeyboardInterrupt:
        click.echo("batchdeps: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the last line of defence for a clear message
        fail(exc, debug)
    sys.exit(code)


def _build(cls: Any, values: dict[str, Any], common: dict[str, Any], config: Any) -> int:
    from ..api import make_executor, make_lock_provider, task_defaults_from
    from ..resolver import resolve
    from ..run.production import default_log_dir, production_setup
    from ..run.runner import Runner, RunOptions
    from ..targets import default_storage

    given = {name: value for name, value in values.items() if value is not None}
    for param in cls.parameters():
        if param.name not in given and not param.has_default and param.name not in cls._config_defaults:
            flag = "--" + param.name.replace("_", "-")
            raise UsageError(
                f"{cls.__name__} needs {flag} ({param.type_name}): give it on the command "
                f"line or as [tasks.{cls.__name__}] {param.name} in the config"
            )
    try:
        task = cls(**given)
    except ParameterError as exc:
        raise UsageError(str(exc)) from None
    default_storage.configure(config.storage)
    plan = resolve([task], force=bool(common["force"]))
    # The plan lives until the process exits; frozen, the garbage collector stops
    # rescanning its objects during the run (a tenth of the time at 100,000 tasks).
    gc.freeze()
    if common["dry_run"]:
        _print_plan(plan)
        return ExitCode.OK
    wait_timeout = common["wait_timeout"]
    options = RunOptions(
        wait_timeout=wait_timeout if wait_timeout is not None else config.lock.get("wait_timeout"),
        resources=dict(config.resources),
        task_defaults=task_defaults_from(config),
    )
    workers = common["workers"] or config.workers
    extras = production_setup(
        config, options,
        log_format=common["log_format"] or config.batchdeps.get("log_format") or "text",
        log_level=common["log_level"] or config.batchdeps.get("log_level") or "INFO",
        default_log_dir=default_log_dir(config), terminal=True, summary=True,
    )
    provider = make_lock_provider(config, common["lock_url"], options.run_id)
    try:
        provider.start()
        executor = make_executor(plan, workers, options, extras.attempt_context)
        runner = Runner(plan, provider, executor, extras.listeners, options)
        with _signals_stop(runner, executor):
            result = runner.run()
    except BatchdepsError as exc:  # e.g. the lock server is down: no result, still an alert
        extras.alert_error(exc, options.run_id, [task.task_id])
        raise
    finally:
        provider.close()
    return result.exit_code


def _print_plan(plan: Any) -> None:
    if not plan.steps:
        click.echo("nothing to do: every requested task is complete")
        return
    for line in plan.describe():
        click.echo(line)
    runs = sum(1 for s in plan.steps if s.kind == "run")
    click.echo(f"{runs} task(s) would run; {len(plan.steps) - runs} external input(s) missing")


class _signals_stop:
    """First SIGINT/SIGTERM: stop the runner cleanly. Second: stop at once."""

    def __init__(self, runner: Any, executor: Any) -> None:
        self.runner = runner
        self.executor = executor
        self.count = 0
        self.previous: dict[int, Any] = {}

    def handle(self, signum: int, frame: Any) -> None:
        import logging

        self.count += 1
        if self.count > 1:
            with contextlib.suppress(Exception):  # stopping at once matters more
                self.executor.kill_all()
            with contextlib.suppress(Exception):
                logging.getLogger("batchdeps").error("stopped at once (second signal)")
            os._exit(ExitCode.INTERRUPTED)
        logging.getLogger("batchdeps").warning(
            "%s: stopping (running tasks are terminated, locks released); again to stop now",
            signal.Signals(signum).name,
        )
        self.runner.stop()
        if self.executor.inline and self.executor.running:
            raise KeyboardInterrupt  # the attempt runs in this thread: unwind it

    def __enter__(self) -> _signals_stop:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
