"""The click commands `batchdeps lock-server`, `batchdeps locks` and `batchdeps locks release`.

Heavy imports (aiohttp, the store) happen inside the callbacks, so `batchdeps --help`
stays fast. Keys and holder names are printed with control characters escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from ..errors import BatchdepsError
from .common import fail


@click.command("lock-server")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Any address but loopback needs a token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="TCP port (0: pick a free one; the chosen URL is printed).")
@click.option("--db", default="batchdeps-locks.db", show_default=True,
              help="SQLite file holding the leases and the audit log (WAL mode), or "
              "postgresql://USER@HOST/DB shared by several replicas (password from "
              "PGPASSWORD, ~/.pgpass or ${VAR} in the URL).")
@click.option("--init", "init", is_flag=True,
              help="Create or migrate the database's schema, then exit (needed once for "
              "PostgreSQL; refuses a database of a newer version or of another program).")
@click.option("--tokens-file", default=None,
              help="Tokens with roles: `ROLE SHA256-OF-TOKEN` per line; re-read on SIGHUP.")
@click.option("--public-status", is_flag=True,
              help="Serve the status page and metrics without a token.")
@click.option("--cert", default=None, help="TLS certificate chain (PEM); with --key.")
@click.option("--key", "key_file", default=None, help="TLS private key (PEM); with --cert.")
@click.option("--rate-limit", type=click.FloatRange(min=0), default=2000.0, show_default=True,
              help="Authenticated requests per second per client address (0: unlimited).")
@click.option("--max-connections", type=click.IntRange(1, 1_000_000), default=2048,
              show_default=True, help="Open connections in all; more are refused at once.")
@click.option("--max-connections-per-address", type=click.IntRange(1, 1_000_000), default=256,
              show_default=True, help="Open connections from one client address.")
@click.option("--request-timeout", type=click.FloatRange(min=0.1), default=10.0,
              show_default=True, help="Seconds a request's head and body may take to arrive.")
@click.option("--keepalive-timeout", type=click.FloatRange(min=0.1), default=30.0,
              show_default=True, help="Seconds an idle keep-alive connection stays open.")
@click.option("--audit-days", type=click.FloatRange(min=0.01), default=90.0,
              show_default=True, help="Days the audit log keeps its lines.")
@click.option("--history-days", type=click.FloatRange(min=0.01), default=30.0,
              show_default=True, help="Days the run history sent by runners is kept.")
def lock_server_command(host: str, port: int, db: str, tokens_file: str | None,
                        public_status: bool, cert: str | None, key_file: str | None,
                        rate_limit: float, max_connections: int,
                        max_connections_per_address: int, request_timeout: float,
                        keepalive_timeout: float, audit_days: float,
                        history_days: float, init: bool = False) -> None:
    """Run the central lock server (token from $BATCHDEPS_LOCK_TOKEN or --tokens-file)."""
    import logging

    from ..locks.auth import Tokens, client_token
    from ..locks.connections import Limits
    from ..locks.server import ServerOptions, init_database, serve
    from ..web.routes import register as monitoring_routes
    from .common import DATE_FORMAT, TEXT_FORMAT

    # The same line format as runs, so one grep reads both logs.
    logging.basicConfig(level=logging.INFO, format=TEXT_FORMAT, datefmt=DATE_FORMAT)
    try:
        if init:
            click.echo(init_database(db))
            return
        tokens = Tokens(client_token(), tokens_file)
        options = ServerOptions(
            rate=rate_limit, public_status=public_status, audit_days=audit_days,
            history_days=history_days, routes=(monitoring_routes,),
            limits=Limits(max_connections=max_connections,
                          max_per_address=max_connections_per_address,
                          request_timeout=request_timeout,
                          keepalive_timeout=keepalive_timeout))
        serve(host, port, db, tokens, cert, key_file, options)
    except BatchdepsError as exc:
        fail(exc)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]])
            for row in rows]


def server_client(lock_url: str | tuple[str, ...] | None, config_path: str | None) -> Any:
    """The transport to the configured lock server or its replicas (UsageError when none
    is configured)."""
    from ..api import lock_url_for
    from ..config import load_config
    from ..errors import UsageError
    from ..locks.auth import client_token
    from ..locks.transport import LockTransport

    config = load_config(config_path)
    url = lock_url_for(config, lock_url)
    if not url:
        raise UsageError("no lock server configured: give --lock-url, [lock] url in the "
                         "config, or BATCHDEPS_LOCK_URL (local locks have no listing)")
    return LockTransport(url, client_token(), retry_for=1.0)


_SERVER_OPTIONS = [
    click.option("--lock-url", multiple=True, metavar="URL",
                 help="Lock server URL; repeat for replicas, tried in turn (default: "
                 "[lock] url, else $BATCHDEPS_LOCK_URL)."),
    click.option("--config", "config_path", default=None, help="Config file."),
]


def server_options(func: Any) -> Any:
    for option in reversed(_SERVER_OPTIONS):
        func = option(func)
    return func


@click.group("locks", invoke_without_command=True)
@server_options
@click.option("--json", "as_json", is_flag=True, help="Print the leases as JSON.")
@click.pass_context
def locks_command(ctx: click.Context, lock_url: tuple[str, ...], config_path: str | None,
                  as_json: bool) -> None:
    """List the leases the lock server holds: key, holder, age, expiry, fencing token."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = (lock_url, config_path)
        return
    from ..locks.protocol import describe_holder, printable

    try:
        client = server_client(lock_url, config_path)
        try:
            _, data = client.call("leases")
        finally:
            client.close()
    except BatchdepsError as exc:
        fail(exc)
    leases = data.get("leases", [])
    if as_json:
        import json

        click.echo(json.dumps(leases, indent=2))
        return
    if not leases:
        click.echo("no leases held")
        return
    rows = [("KEY", "HOLDER", "AGE", "EXPIRES IN", "TOKEN")]
    for lease in leases:
        rows.append((printable(str(lease["key"])), describe_holder(lease["holder"]),
                     _duration(lease["age"]), _duration(lease["expires_in"]),
                     str(lease.get("token", "-"))))
    for line in table(rows):
        click.echo(line)


@locks_command.command("release")
@click.argument("task_ids", nargs=-1)
@click.option("--holder", default=None, metavar="HOST:PID",
              help="Release every lease of process PID on HOST.")
@click.option("--reason", default="", help="Why (kept in the audit log).")
@click.option("--lock-url", multiple=True, metavar="URL",
              help="Lock server URL; repeat for replicas.")
@click.option("--config", "config_path", default=None, help="Config file.")
@click.pass_obj
def release_command(obj: Any, task_ids: tuple[str, ...], holder: str | None, reason: str,
                    lock_url: tuple[str, ...], config_path: str | None) -> None:
    """Free leases whoever holds them (admin role; audited): TASK_ID ... or --holder HOST:PID.

    Only for leases whose holder is gone or stuck: a live holder loses its lease at its
    next renewal or fence check and does not commit. A lease confirmed less than half a TTL
    ago stays closed to others until then (its holder may still commit on its own answer).
    """
    from ..errors import UsageError
    from ..locks.protocol import printable

    parent_url, parent_config = obj or (None, None)
    try:
        if bool(task_ids) == bool(holder):
            raise UsageError("give the task ids to release, or --holder HOST:PID (not both)")
        if holder:
            host, _, pid_text = holder.rpartition(":")
            if not host or not pid_text.isdigit():
                raise UsageError(f"--holder {holder!r} must look like HOST:PID (as "
                                 "`batchdeps locks` shows them: host H pid P)")
            body: dict[str, Any] = {"host": host, "pid": int(pid_text)}
        else:
            body = {"keys": list(task_ids)}
        body["reason"] = reason
        client = server_client(lock_url or parent_url, config_path or parent_config)
        try:
            _, data = client.call("force_release", body)
        finally:
            client.close()
    except BatchdepsError as exc:
        fail(exc)
    for lease in data.get("released", []):
        closed = float(lease.get("closed_for") or 0.0)
        after = (f"; nobody else gets it for {closed:.1f} s, while its holder may still "
                 "commit on its own fence answer" if closed > 0 else "")
        click.echo(f"released {printable(str(lease['key']))} (was held by "
                   f"{printable(str(lease.get('holder_text', '')))}, token "
                   f"{lease.get('token')}){after}")
    for key in data.get("not_held", []):
        click.echo(f"not held: {printable(str(key))}")
    if holder and not data.get("released"):
        click.echo(f"no lease held by {printable(holder)}")
