"""`batchdeps graph TASK [--PARAM VALUE ...] --format dot|mermaid|json`: the DAG, as lineage."""

from __future__ import annotations

from typing import Any

import click

from .status import survey_for, survey_options
from .taskargs import (
    TASK_COMMAND_SETTINGS,
    TaskCommand,
    complete_task_args,
    complete_task_name,
    invoke_for_task,
    no_task,
    single,
)


def _options() -> list[click.Parameter]:
    return [
        click.Option(["--format", "output_format"],
                     type=click.Choice(["dot", "mermaid", "json"]), default=("dot",),
                     multiple=True, callback=single,
                     help="dot (Graphviz, the default), mermaid, or json (every task's "
                     "family, parameters, input and output URLs and state)."),
        *survey_options(),
    ]


@click.command("graph", cls=TaskCommand, context_settings=TASK_COMMAND_SETTINGS)
@click.argument("task_name", required=False, shell_complete=complete_task_name(False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED,
                shell_complete=complete_task_args(_options, "graph"))
@click.pass_context
def graph_command(ctx: click.Context, task_name: str | None, args: tuple[str, ...]) -> None:
    """Print the whole dependency graph of TASK (dot, Mermaid or JSON).

    Usage: batchdeps graph TASK [--PARAM VALUE ...] --format dot|mermaid|json. Exits 0
    whatever the states (see `status` for an exit code that says what `run` would do).
    """
    if task_name is None or task_name.startswith("-"):
        no_task(ctx, task_name, args)
        return
    invoke_for_task(ctx, task_name, args, "graph", _options(), _graph)


def _graph(cls: Any, config: Any, values: dict[str, Any], own: dict[str, Any]) -> None:
    from ..survey import render

    result = survey_for(cls, config, values, own)
    if own["output_format"] == "json":
        click.echo(render.to_json(result, lineage=True))
    elif own["output_format"] == "mermaid":
        click.echo(render.to_mermaid(result))
    else:
        click.echo(render.to_dot(result))
