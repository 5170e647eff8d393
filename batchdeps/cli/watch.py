"""`batchdeps watch TASK [--PARAM VALUE ...] --every DURATION`: rebuild TASK as inputs arrive."""

from __future__ import annotations

from typing import Any

import click

from ..errors import ExitCode
from .common import run_guarded
from .run import Duration
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


def _options() -> list[click.Parameter]:
    return [
        click.Option(["--every"], type=Duration(positive=True), default=None, multiple=True,
                     callback=single, metavar="DURATION",
                     help="How often to look at TASK's external inputs (30s, 10m, 1h; "
                     "default 1m); a round is run when one has arrived or was rewritten."),
        click.Option(["--workers"], type=click.IntRange(min=1), default=None, multiple=True,
                     callback=single, metavar="N",
                     help="Attempts run in parallel in each round (default: [batchdeps] "
                     "workers, else 1)."),
        rerun_triggers_option(),
        click.Option(["--executor"], default=None, multiple=True, callback=single,
                     metavar="inline|local|dask", help="Where attempts run, as `run` "
                     "(default: [executor] kind, else by --workers)."),
        click.Option(["--lock-url"], multiple=True, metavar="URL",
                     help="Lock server URL for the watch lease and the task leases; repeat "
                     "for replicas (default: as `run`, else machine-local locks)."),
        click.Option(["--wait-timeout"], type=click.FloatRange(min=0), default=None,
                     multiple=True, callback=single, metavar="SECONDS",
                     help="Seconds a round waits for a task held elsewhere."),
        click.Option(["--config"], default=None, multiple=True, callback=single, metavar="FILE",
                     help="Config file (default: $BATCHDEPS_CONFIG, else ./config.toml)."),
        click.Option(["--log-level"], type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"],
                     case_sensitive=False), default=None, multiple=True, callback=single,
                     metavar="LEVEL", help="Log level (default INFO)."),
        click.Option(["--log-format"], type=click.Choice(["text", "json"]), default=None,
                     multiple=True, callback=single, metavar="FORMAT",
                     help="Log line format: text or json."),
        click.Option(["--debug"], is_flag=True, help="Show tracebacks of errors."),
    ]


#: Seconds between looks when --every is not given (Airflow's poke_interval, our --poll).
DEFAULT_EVERY = 60.0


@click.command("watch", cls=TaskCommand, context_settings=TASK_COMMAND_SETTINGS)
@click.argument("task_name", required=False, shell_complete=complete_task_name(True))
@click.argument("args", nargs=-1, type=click.UNPROCESSED,
                shell_complete=complete_task_args(_options, "watch"))
@click.pass_context
def watch_command(ctx: click.Context, task_name: str | None, args: tuple[str, ...]) -> None:
    """Keep TASK built: run it now, then again whenever one of its external inputs arrives
    or is rewritten.

    Usage: batchdeps watch TASK [--PARAM VALUE ...] [--every DURATION] [--workers N]
    [--rerun-triggers TRIGGERS] [--lock-url URL ...]. One watcher per TASK builds (a watch
    lease from the run's locks); a second one stands by and takes over when the first
    stops. Runs until SIGINT/SIGTERM, then exits 130.
    """
    if task_name is None or task_name.startswith("-"):
        no_task(ctx, task_name, args)
        return
    invoke_for_task(ctx, task_name, args, "watch", _options(), _watch)


STOPPED = "batchdeps: watch stopped (interrupted)"


def _watch(cls: Any, config: Any, values: dict[str, Any], own: dict[str, Any]) -> None:
    # Between rounds a signal unwinds the loop (the watch lease is released on the way
    # out); during a round the session's own handlers stop the run cleanly first.
    run_guarded(config, own, lambda: _loop(cls, config, values, own), STOPPED)


def _loop(cls: Any, config: Any, values: dict[str, Any], own: dict[str, Any]) -> ExitCode:
    import uuid

    from ..locks.protocol import check_lock_keys
    from ..run.session import Session, default_log_dir, lock_url_for, make_lock_provider
    from ..run.watch import Watcher, watch_key

    requested = requested_tasks(cls, values)

    def new_session() -> Session:
        return Session.from_config(
            config, workers=own["workers"], lock_url=own["lock_url"],
            wait_timeout=own["wait_timeout"], log_format=own["log_format"],
            log_level=own["log_level"], default_log_dir=default_log_dir(config),
            console=True, handle_signals=True, rerun_triggers=own["rerun_triggers"],
            executor=own["executor"])

    new_session()  # bad settings (a trigger name, a worker count): exit 2 before watching
    if lock_url_for(config, own["lock_url"]):
        check_lock_keys([watch_key(requested)])
    provider = make_lock_provider(config, own["lock_url"], f"watch-{uuid.uuid4().hex[:8]}")
    every = own["every"] if own["every"] is not None else DEFAULT_EVERY
    code = Watcher(requested, new_session, provider, every).run()
    if code == ExitCode.INTERRUPTED:  # stopped during a round
        click.echo(STOPPED, err=True)
    return code
