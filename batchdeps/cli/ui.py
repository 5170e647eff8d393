"""`batchdeps ui [--port N]`: the status page over the local history file, on 127.0.0.1."""

from __future__ import annotations

import click

from ..errors import BatchdepsError
from .common import fail

DEFAULT_PORT = 8780


@click.command("ui")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="TCP port on 127.0.0.1 (0: pick a free one; the URL is printed).")
@click.option("--config", "config_path", default=None, help="Config file (finds the history file).")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def ui_command(port: int, config_path: str | None, debug: bool) -> None:
    """Serve the status page (runs, failures, families) of this machine's run history."""
    try:
        from ..config import load_config
        from ..history.listener import history_path
        from ..web.ui import serve

        serve(history_path(load_config(config_path)), port)
    except BatchdepsError as exc:
        fail(exc, debug)
