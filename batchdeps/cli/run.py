"""`batchdeps run TASK [--PARAM VALUE ...]`: options from the task's parameters, then a build."""

from __future__ import annotations

import gc
import os
from typing import Any

import click

from ..errors import BatchdepsError, ExitCode, UsageError
from .common import echo_lines, run_guarded, scan
from .taskargs import (
    TaskCommand,
    complete_task_args,
    complete_task_name,
    invoke_for_task,
    requested_tasks,
    rerun_triggers_option,
    single,
)


class Duration(click.ParamType):
    """A length of time: `30s`, `5m`, `6h`, `1h30m`, or seconds; seconds as a float."""

    name = "duration"

    def __init__(self, positive: bool = False) -> None:
        self.positive = positive

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        from ..durations import parse_duration

        if isinstance(value, float):
            return value
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.fail(f"{exc}, got {value!r}", param, ctx)
        if self.positive and seconds <= 0:
            self.fail(f"must be more than 0 seconds, got {value!r}", param, ctx)
        return seconds


def _common_options() -> list[click.Parameter]:
    """The options of `batchdeps run` itself; a valued one given twice is an error."""
    return [
        click.Option(["--workers"], type=click.IntRange(min=1), default=None, multiple=True,
                     callback=single, metavar="N",
                     help="Attempts run in parallel (default: [batchdeps] workers, else 1)."),
        click.Option(["--dry-run"], is_flag=True, help="Print what would run, what is blocked "
                     "and why; change nothing. Exits as `status`: 0 nothing to do, 1 work to "
                     "do, 3 blocked by a missing input."),
        click.Option(["--force"], is_flag=True, help="Rebuild the named task even if complete."),
        click.Option(["--force-upstream"], is_flag=True, help="Rebuild the named task and "
                     "everything it depends on (never external tasks)."),
        click.Option(["--force-from"], multiple=True, metavar="SELECTOR",
                     help="Rebuild the tasks a family name or task id selects and everything "
                     "downstream of them up to the named task (repeatable)."),
        rerun_triggers_option(),
        click.Option(["--max-tasks"], type=click.IntRange(min=1), default=None, multiple=True,
                     callback=single, metavar="N", help="Of a range A..B, build at most N of "
                     "the requested tasks that are not complete (oldest first)."),
        click.Option(["--reverse"], is_flag=True,
                     help="Of a range, take the newest requested tasks first."),
        click.Option(["--executor"], default=None, multiple=True, callback=single,
                     metavar="inline|local|dask", help="Where attempts run: in this process, "
                     "in forked worker processes, or on a Dask cluster (default: [executor] "
                     "kind, else inline for one worker, local for more)."),
        click.Option(["--scheduler"], default=None, multiple=True, callback=single,
                     metavar="ADDRESS", help="The Dask scheduler to run on, e.g. "
                     "tcp://host:8786 (implies --executor dask; default: [executor] "
                     "address, else a local cluster of --workers processes)."),
        click.Option(["--upload-pipelines"], is_flag=True, help="With --executor dask, send "
                     "the single-file modules of the pipeline's tasks to every worker."),
        click.Option(["--lock-url"], multiple=True, metavar="URL",
                     help="Lock server URL; repeat for replicas on one database, tried in "
                     "turn (default: [lock] url, else $BATCHDEPS_LOCK_URL, else "
                     "machine-local locks)."),
        click.Option(["--wait-timeout"], type=click.FloatRange(min=0), default=None,
                     multiple=True, callback=single, metavar="SECONDS",
                     help="Seconds to wait for a task held elsewhere (exit 4 after)."),
        click.Option(["--wait-for-inputs"], type=Duration(), default=None, multiple=True,
                     callback=single, metavar="DURATION",
                     help="Wait up to DURATION (30s, 5m, 6h, 1h30m) for missing external "
                     "inputs, building the rest meanwhile and each branch as its input "
                     "arrives; exit 3 only if one is still missing then (default: [run] "
                     "wait_for_inputs, else no wait)."),
        click.Option(["--poll"], type=Duration(positive=True), default=None, multiple=True,
                     callback=single, metavar="DURATION",
                     help="Longest delay between two looks at the inputs waited for "
                     "(default: [run] poll, else 1m; looks start at 1 s and back off)."),
        click.Option(["--config"], default=None, multiple=True, callback=single, metavar="FILE",
                     help="Config file (default: $BATCHDEPS_CONFIG, else ./config.toml)."),
        click.Option(["--log-level"], type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"],
                     case_sensitive=False), default=None, multiple=True, callback=single,
                     metavar="LEVEL", help="Log level: DEBUG, INFO, WARNING or ERROR "
                     "(default INFO)."),
        click.Option(["--log-format"], type=click.Choice(["text", "json"]), default=None,
                     multiple=True, callback=single, metavar="FORMAT",
                     help="Log line format: text or json."),
        click.Option(["--metrics-file"], default=None, multiple=True, callback=single,
                     metavar="PATH", help="At the end, write the run's Prometheus metrics "
                     "to PATH (atomically; for node_exporter's textfile collector)."),
        click.Option(["--debug"], is_flag=True, help="Show tracebacks of errors."),
    ]


def usage_pieces(options: list[click.Parameter]) -> list[str]:
    """`[--workers N]`, `[--dry-run]`, ... for every option, so the usage cannot drift."""
    pieces = []
    for option in options:
        if not isinstance(option, click.Option):
            continue
        name = max(option.opts, key=len)
        if option.is_flag:
            pieces.append(f"[{name}]")
        else:
            metavar = option.metavar or (option.name or "VALUE").upper()
            repeatable = option.multiple and option.callback is not single
            pieces.append(f"[{name} {metavar}{' ...' if repeatable else ''}]")
    return pieces


class RunCommand(TaskCommand):
    """`batchdeps run`: its usage line and options are those of the command run per TASK."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Wrapped between bracketed groups: click's wrapper would split `--wait-timeout`.
        head = f"Usage: {ctx.command_path} "
        pieces = ["TASK", "[--PARAM VALUE ...]", *usage_pieces(_common_options())]
        lines, line = [], head
        for piece in pieces:
            if len(line) + len(piece) > (formatter.width or 80) and line.strip():
                lines.append(line.rstrip())
                line = " " * len(head)
            line += piece + " "
        lines.append(line.rstrip())
        formatter.write("\n".join(lines) + "\n")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records = [record for option in _common_options()
                   if (record := option.get_help_record(ctx)) is not None]
        records.append(("-h, --help", "Show this message (with TASK: its parameters)."))
        with formatter.section("Options"):
            formatter.write_dl(records)


@click.command(
    "run", cls=RunCommand,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                      "help_option_names": []},
)
@click.argument("task_name", required=False, shell_complete=complete_task_name(True))
@click.argument("args", nargs=-1, type=click.UNPROCESSED,
                shell_complete=complete_task_args(_common_options, "run"))
@click.pass_context
def run_command(ctx: click.Context, task_name: str | None, args: tuple[str, ...]) -> None:
    """Build TASK and whatever it needs that is missing.

    Each parameter of TASK is an option (`--day-count 3`). A Date, DateTime or Int
    parameter given as A..B asks for one task per value. `batchdeps run TASK --help` lists
    TASK's parameters.
    """
    if task_name is None or task_name.startswith("-"):
        wants_help = task_name in ("-h", "--help") or "--help" in args or "-h" in args
        _run_help(ctx, args, wants_help)
        return
    invoke_for_task(ctx, task_name, args, "run", _common_options(), _run)


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
    from ..task import ExternalTask

    click.echo("\nTasks (`batchdeps list` shows parameters and external inputs):",
               err=not wants_help)
    for name in registry.names():
        cls = registry.by_name[name][0]
        if issubclass(cls, ExternalTask):  # made outside the pipeline: nothing to run
            continue
        doc = (cls.__doc__ or "").strip().splitlines()
        click.echo(f"  {name:24} {doc[0] if doc else ''}", err=not wants_help)
    ctx.exit(ExitCode.OK if wants_help else ExitCode.USAGE)


def _run(cls: Any, config: Any, values: dict[str, Any], common: dict[str, Any]) -> None:
    if _uses_dask(common, config) and not common["dry_run"]:
        # While the plan is resolved and the leases' provider starts: the import, then the
        # connection to the scheduler, if there is one.
        address = common["scheduler"] or config.executor.get("address")
        if address:
            from ..run import dask_connect

            dask_connect.start_early(address)
        else:
            from ..run import dask_import

            dask_import.start_in_background()
    run_guarded(config, common, lambda: _build(_requested(cls, values, common, config),
                                               common, config))


def _uses_dask(common: dict[str, Any], config: Any) -> bool:
    """Whether the run's executor is Dask: asked for, or implied by a scheduler address
    (as `make_executor` decides it)."""
    kind = common["executor"] or config.executor.get("kind")
    address = common["scheduler"] or config.executor.get("address")
    return kind == "dask" or (kind is None and bool(address))


def _requested(cls: Any, values: dict[str, Any], common: dict[str, Any],
               config: Any) -> list[Any]:
    """The requested tasks: one per value of a range, bounded by --max-tasks, in order."""
    from ..backfill import select
    from ..targets import default_storage

    tasks = requested_tasks(cls, values)
    if common["max_tasks"] is None and not common["reverse"]:
        return tasks
    default_storage.configure(config.storage)
    selection = select(tasks, common["max_tasks"], bool(common["reverse"]))
    if selection.left:
        click.echo(f"batchdeps: --max-tasks {common['max_tasks']}: {len(selection.left)} more "
                   f"requested task(s) left for a later run (next: "
                   f"{selection.left[0].task_id})", err=True)
    return selection.tasks


def _build(requested: list[Any], common: dict[str, Any], config: Any) -> int:
    from ..run.session import Session, default_log_dir

    session = Session.from_config(
        config, workers=common["workers"], force=bool(common["force"]),
        force_upstream=bool(common["force_upstream"]), force_from=common["force_from"],
        lock_url=common["lock_url"], wait_timeout=common["wait_timeout"],
        log_format=common["log_format"], log_level=common["log_level"],
        default_log_dir=default_log_dir(config), console=True, handle_signals=True,
        metrics_file=common["metrics_file"], rerun_triggers=common["rerun_triggers"],
        executor=common["executor"],
        scheduler=common["scheduler"], upload_pipelines=bool(common["upload_pipelines"]),
        wait_for_inputs=common["wait_for_inputs"], poll=common["poll"],
    )
    if common["poll"] is not None and not session.wait_for_inputs:
        raise UsageError("--poll is the delay between looks at inputs waited for: give "
                         "--wait-for-inputs DURATION (or [run] wait_for_inputs) with it")
    plan = session.resolve(requested)
    # The plan lives until the process exits; frozen, the garbage collector stops
    # rescanning its objects during the run (a tenth of the time at 100,000 tasks).
    gc.freeze()
    if common["dry_run"]:
        _print_plan(plan)
        return plan.exit_code
    code = session.execute(plan).exit_code
    # And what the run made (with the Dask executor: `distributed`'s modules, the client):
    # the interpreter's exit then does not collect it, object by object, on its way out
    # (0.1-0.5 s once `distributed` is loaded; docs/benchmarks.md, "Dask executor").
    gc.freeze()
    return code


#: Lines of a dry run's plan given to one `click.echo` (each echo is a write of its own).
PLAN_LINES_PER_WRITE = 4096


def _print_plan(plan: Any) -> None:
    if not plan.steps:
        click.echo("nothing to do: every requested task is complete")
        return
    echo_lines(plan.lines(), PLAN_LINES_PER_WRITE)  # a few thousand lines per write
    counts = plan.counts()
    complete = f"; {len(plan.complete)} requested task(s) complete" if plan.complete else ""
    click.echo(f"{counts['run']} task(s) would run; {counts['blocked']} blocked; "
               f"{counts['missing']} external input(s) missing{complete}")
