"""`batchdeps audit [--since DATE|24h] [--json]`: the lock server's audit log (admin role).

Every grant, release, expiry, takeover, forced release and authentication failure, newest
first, read from the server (`GET /v1/audit`). Text output escapes control characters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from ..errors import BatchdepsError, UsageError
from .common import fail
from .locks import server_options, table


@click.command("audit")
@click.option("--since", default="24h", show_default=True,
              help="From a date (2026-11-01) or an age (24h, 7d).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=1000, show_default=True,
              help="At most this many lines, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the lines as a JSON list.")
@server_options
def audit_command(since: str, limit: int, as_json: bool, lock_url: tuple[str, ...],
                  config_path: str | None) -> None:
    """Show the lock server's audit log (needs a token with the admin role)."""
    from ..history.since import parse_since
    from ..locks.protocol import printable
    from .locks import server_client

    try:
        try:
            start = parse_since(since)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
        client = server_client(lock_url, config_path)
        try:
            _, data = client.call("audit", query={"since": f"{max(0.0, start):.6f}",
                                                  "limit": str(limit)})
        finally:
            client.close()
    except BatchdepsError as exc:
        fail(exc)
    lines: list[dict[str, Any]] = data.get("audit", []) if isinstance(data, dict) else []
    if as_json:
        import json

        click.echo(json.dumps(lines, indent=2))
        return
    if not lines:
        click.echo(f"no audit lines since {since}")
        return
    rows = [("TIME", "EVENT", "KEY", "TOKEN", "HOLDER", "ADDRESS", "DETAIL")]
    for line in lines:
        when = datetime.fromtimestamp(float(line["at"])).isoformat(sep=" ", timespec="seconds")
        rows.append((when, str(line["event"]), printable(str(line["key"])) or "-",
                     str(line["token"] or "-"), printable(str(line["holder"])) or "-",
                     printable(str(line["address"])) or "-", printable(str(line["detail"]))))
    for text in table(rows):
        click.echo(text)
