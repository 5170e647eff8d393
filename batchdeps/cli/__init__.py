"""The `batchdeps` command line: one group, one module per command family.

    common.py   the error handler, logging set-up
    run.py      batchdeps run
    status.py   batchdeps status
    graph.py    batchdeps graph
    list.py     batchdeps list
    taskargs.py a task's parameters as options (run, status, graph), shell completion
    locks.py    batchdeps lock-server, batchdeps locks
    history.py  batchdeps history
    ui.py       batchdeps ui
    audit.py    batchdeps audit
    watch.py    batchdeps watch
"""

from __future__ import annotations

from typing import Any

import click

#: command name -> (module under batchdeps.cli, attribute): a command's module is imported
#: only when that command runs or help lists it, so `batchdeps run` does not pay for the
#: others (click's documented pattern for lazily loaded subcommands).
COMMANDS = {
    "run": ("run", "run_command"),
    "lock-server": ("locks", "lock_server_command"),
    "locks": ("locks", "locks_command"),
    "history": ("history", "history_command"),
    "status": ("status", "status_command"),
    "graph": ("graph", "graph_command"),
    "list": ("list", "list_command"),
    "audit": ("audit", "audit_command"),
    "ui": ("ui", "ui_command"),
    "watch": ("watch", "watch_command"),
}


class _Group(click.Group):
    """The command group: commands load on first use; `--help` lists each command with its
    whole first sentence."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            import importlib

            module, attribute = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
            _valued_options_once(command)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click cuts each description to fit one line ("Run the central lock server (token
        # from..."); the definition list wraps a long one instead.
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="batchdeps")
def main() -> None:
    """batchdeps: build only the outputs that are missing, in dependency order."""


def _valued_options_once(command: click.Command) -> None:
    """In every fixed command, a valued option given twice is an error, as in `run`.

    click keeps the last of `--port 1 --port 2` silently. Each valued option that is not
    already a list becomes `multiple=True` with a callback that accepts one value; flags
    may repeat. (`run`, `status` and `graph` build their options per task and do the same.)
    """
    from .taskargs import single

    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _valued_options_once(sub)
    for param in command.params:
        if not isinstance(param, click.Option) or param.is_flag or param.multiple \
                or param.count or param.nargs != 1 or param.callback is single:
            continue
        param.multiple = True
        if param.default is not None and not callable(param.default):
            param.default = (param.default,)
        param.callback = _once_then(param.callback)


def _once_then(inner: Any) -> Any:
    from .taskargs import single

    def callback(ctx: click.Context, option: click.Parameter, value: Any) -> Any:
        value = single(ctx, option, value)
        return inner(ctx, option, value) if inner is not None else value

    return callback


if __name__ == "__main__":  # pragma: no cover
    main()
