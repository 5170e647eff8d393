"""`batchdeps list [--json]`: every task family with its parameters."""

from __future__ import annotations

import click

from ..errors import BatchdepsError
from .common import fail
from .taskargs import single


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the families as a JSON list.")
@click.option("--config", "config_path", default=None, multiple=True, callback=single,
              help="Config file (default: $BATCHDEPS_CONFIG, else ./config.toml).")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def list_command(as_json: bool, config_path: str | None, debug: bool) -> None:
    """List every task family: parameters (type, default, description), kind, summary.

    Kinds: task, wrapper (only requirements), external (data made outside the pipeline,
    never run).
    """
    from ..survey.catalog import describe, render_text
    from .taskargs import load_registry

    try:
        _, registry = load_registry(config_path)
        families = [describe(cls) for name in registry.names()
                    for cls in registry.by_name[name]]
    except BatchdepsError as exc:
        fail(exc, debug)
    if as_json:
        import json

        click.echo(json.dumps(families, indent=1))
    elif families:
        click.echo(render_text(families))
    else:
        click.echo("no task families found in the configured modules")
