"""`batchdeps status TASK [--PARAM VALUE ...]`: the tree below TASK with each task's state."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import BatchdepsError, ExitCode, UsageError
from .common import echo_lines, fail
from .taskargs import (
    TASK_COMMAND_SETTINGS,
    TaskCommand,
    complete_task_args,
    complete_task_name,
    invoke_for_task,
    no_task,
    requested_tasks,
    rerun_triggers_option,
    single,
)


def survey_options() -> list[click.Parameter]:
    """Options `status` and `graph` share: where the config and locks are, which tasks."""
    return [
        click.Option(["--max-tasks"], type=click.IntRange(min=1), default=None, multiple=True,
                     callback=single, help="Of a range A..B, take at most N of the requested "
                     "tasks that are not complete (oldest first), as `run` would."),
        click.Option(["--reverse"], is_flag=True,
                     help="Of a range, take the newest requested tasks first."),
        click.Option(["--config"], default=None, multiple=True, callback=single,
                     help="Config file (default: $BATCHDEPS_CONFIG, else ./config.toml)."),
        click.Option(["--lock-url"], multiple=True, metavar="URL",
                     help="Lock server asked who runs what; repeat for replicas (default: "
                     "as `run`)."),
        click.Option(["--debug"], is_flag=True, help="Show tracebacks of errors."),
    ]


def _options() -> list[click.Parameter]:
    return [
        click.Option(["--depth"], type=click.IntRange(min=0), default=None, multiple=True,
                     callback=single, help="Show N levels below the requested task "
                     "(the whole graph is still checked)."),
        click.Option(["--format", "output_format"], type=click.Choice(["text", "json"]),
                     default=("text",), multiple=True, callback=single,
                     help="text: a tree; json: every node with state, outputs, reasons."),
        rerun_triggers_option(),
        click.Option(["--stale"], is_flag=True, help="Exit 1 when a complete task is stale "
                     "by the rerun triggers (--rerun-triggers, else [run] rerun_triggers), "
                     "0 when none is; for CI checks."),
        *survey_options(),
    ]


@click.command("status", cls=TaskCommand, context_settings=TASK_COMMAND_SETTINGS)
@click.argument("task_name", required=False, shell_complete=complete_task_name(False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED,
                shell_complete=complete_task_args(_options, "status"))
@click.pass_context
def status_command(ctx: click.Context, task_name: str | None, args: tuple[str, ...]) -> None:
    """Show TASK's dependency tree and the state of every task in it.

    Usage: batchdeps status TASK [--PARAM VALUE ...] [--depth N] [--format text|json]
    [--rerun-triggers TRIGGERS] [--stale].
    States: complete (also "upstream missing" / "upstream newer", and with rerun triggers
    "stale" / "no record"), missing, external missing, blocked, running here / elsewhere.
    Exits 0 when `run` has nothing to do, 1 when it would build something, 3 when
    something is blocked by a missing input; with --stale, 1 when something is stale.
    """
    if task_name is None or task_name.startswith("-"):
        no_task(ctx, task_name, args)
        return
    invoke_for_task(ctx, task_name, args, "status", _options(), _status)


def survey_for(cls: Any, config: Any, values: dict[str, Any], own: dict[str, Any]) -> Any:
    """The requested tasks (ranges and --max-tasks as `run`) surveyed, locks asked; an
    error batchdeps raises on purpose ends the command through the one error handler."""
    try:
        return _survey(cls, config, values, own)
    except BatchdepsError as exc:
        fail(exc, bool(own["debug"]))


def _survey(cls: Any, config: Any, values: dict[str, Any], own: dict[str, Any]) -> Any:
    from ..backfill import select
    from ..survey.holders import holder_lookup
    from ..survey.states import survey
    from ..targets import default_storage

    default_storage.configure(config.storage)
    requested = requested_tasks(cls, values)
    requested = select(requested, own["max_tasks"], bool(own["reverse"])).tasks
    from ..survey.yielded import recorded_yields

    holders, warning = holder_lookup(config, own["lock_url"])
    if warning:
        click.echo(f"batchdeps: warning: {warning}", err=True)
    warnings: list[str] = []
    result = survey(requested, holders, rerun_triggers=rerun_triggers_for(config, own),
                    yielded=recorded_yields(config, warnings))
    _add_workers(result, config, warnings)
    for text in warnings:
        click.echo(f"batchdeps: warning: {text}", err=True)
    import gc

    gc.freeze()  # the graph lives until exit: the collector need not rescan it while printing
    return result


def _add_workers(result: Any, config: Any, warnings: list[str]) -> None:
    """Name on each node the worker its last recorded attempt ran on (local history)."""
    import os

    from ..history.listener import history_path

    path = history_path(config)
    if not config.history.get("enabled", True) or not os.path.exists(path):
        return
    import sqlite3

    from ..history.store import read_workers

    try:
        workers = read_workers(path)
    except (sqlite3.Error, OSError) as exc:
        warnings.append(f"cannot read the history in {path} for the workers: {exc}")
        return
    if workers:
        for node in result.nodes:
            node.worker = workers.get(node.task_id, "")


def rerun_triggers_for(config: Any, own: dict[str, Any]) -> frozenset[str]:
    """--rerun-triggers, else `[run] rerun_triggers`; --stale needs some."""
    from ..staleness import parse_triggers

    given = own.get("rerun_triggers")
    try:
        triggers = parse_triggers(given if given is not None
                                  else config.run.get("rerun_triggers"))
    except ValueError as exc:
        raise UsageError(f"--rerun-triggers: {exc}") from None
    if own.get("stale") and not triggers:
        raise UsageError("--stale needs rerun triggers: give --rerun-triggers "
                         "version,params,upstream (or set [run] rerun_triggers in config.toml)")
    return triggers


#: Lines of the text tree given to one `click.echo`: the tree of a million tasks is never
#: one string.
LINES_PER_WRITE = 4096


def _status(cls: Any, config: Any, values: dict[str, Any], own: dict[str, Any]) -> None:
    from ..survey import render

    result = survey_for(cls, config, values, own)
    if own["output_format"] == "json":
        click.echo(render.to_json(result))
    else:
        echo_lines(render.tree_lines(result, own["depth"]), LINES_PER_WRITE)
    if own["stale"]:
        sys.exit(ExitCode.FAILED if result.stale else ExitCode.OK)  # 1: something is stale
    sys.exit(result.exit_code)
