"""The click commands `batchdeps lock-server` and `batchdeps locks`.

Heavy imports (aiohttp, the store) happen inside the callbacks, so `batchdeps --help`
stays fast.
"""

from __future__ import annotations

import json
import os

import click

from ..errors import BatchdepsError
from .common import fail

LOCK_TOKEN_ENV = "BATCHDEPS_LOCK_TOKEN"


@click.command("lock-server")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Any address but loopback needs a token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="TCP port (0: pick a free one; the chosen URL is printed).")
@click.option("--db", default="batchdeps-locks.db", show_default=True,
              help="SQLite file holding the leases (WAL mode; survives restarts).")
@click.option("--cert", default=None, help="TLS certificate chain (PEM); with --key.")
@click.option("--key", "key_file", default=None, help="TLS private key (PEM); with --cert.")
@click.option("--rate-limit", type=click.FloatRange(min=0), default=2000.0, show_default=True,
              help="Requests per second allowed per client address (0: unlimited).")
def lock_server_command(host: str, port: int, db: str, cert: str | None,
                        key_file: str | None, rate_limit: float) -> None:
    """Run the central lock server (token from $BATCHDEPS_LOCK_TOKEN)."""
    import logging

    from ..locks.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        serve(host, port, db, os.environ.get(LOCK_TOKEN_ENV, ""), cert, key_file, rate_limit)
    except BatchdepsError as exc:
        fail(exc)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


@click.command("locks")
@click.option("--lock-url", default=None,
              help="Lock server URL (default: [lock] url, else $BATCHDEPS_LOCK_URL).")
@click.option("--config", "config_path", default=None, help="Config file.")
@click.option("--json", "as_json", is_flag=True, help="Print the leases as JSON.")
def locks_command(lock_url: str | None, config_path: str | None, as_json: bool) -> None:
    """List the leases the lock server holds: key, holder, age, expiry, fencing token."""
    from ..api import lock_url_for
    from ..config import load_config
    from ..errors import UsageError
    from ..locks.client import HttpLockProvider, describe_holder

    try:
        config = load_config(config_path)
        url = lock_url_for(config, lock_url)
        if not url:
            raise UsageError("no lock server configured: give --lock-url, [lock] url in the "
                             "config, or BATCHDEPS_LOCK_URL (local locks have no listing)")
        client = HttpLockProvider(url, token=os.environ.get(LOCK_TOKEN_ENV, ""),
                                  ttl=float(config.lock.get("ttl", 30)))
        try:
            _, data = client._call("leases", retry_for=1.0)
        finally:
            client.close()
    except BatchdepsError as exc:
        fail(exc)
        return
    leases = data.get("leases", [])
    if as_json:
        click.echo(json.dumps(leases, indent=2))
        return
    if not leases:
        click.echo("no leases held")
        return
    rows = [("KEY", "HOLDER", "AGE", "EXPIRES IN", "TOKEN")]
    for lease in leases:
        rows.append((lease["key"], describe_holder(lease["holder"]), _duration(lease["age"]),
                     _duration(lease["expires_in"]), str(lease["token"])))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
