"""`batchdeps history`: past task runs, newest first, from the local file or the lock server."""

from __future__ import annotations

import os
from typing import Any

import click

from ..errors import BatchdepsError, UsageError
from .common import fail

HISTORY_QUERY_ROUTE = "/v1/history"
MAX_LIMIT = 10_000


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    from ..history.since import parse_since

    try:
        return parse_since(value)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None


@click.command("history")
@click.option("--task", "task_id", default=None, help="Only this task id, e.g. 'Clean(day=2026-11-24)'.")
@click.option("--family", default=None, help="Only tasks of this family (class name).")
@click.option("--status", default=None,
              help="Only this final status: built, failed, complete, 'built elsewhere', ...")
@click.option("--since", default=None, help="Only since a date (2026-11-01) or an age (24h, 7d).")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True,
              help="At most this many records.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as a JSON list.")
@click.option("--lock-url", multiple=True, metavar="URL",
              help="Read the history of every machine from this lock server instead "
              "(repeat for replicas, tried in turn).")
@click.option("--config", "config_path", default=None, help="Config file (finds the history file).")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def history_command(task_id: str | None, family: str | None, status: str | None,
                    since: str | None, limit: int, as_json: bool, lock_url: tuple[str, ...],
                    config_path: str | None, debug: bool) -> None:
    """Past task runs, newest first, with the error and log file of each failure."""
    try:
        records = _records(task_id, family, status, _since(since), limit, lock_url,
                           config_path)
    except BatchdepsError as exc:
        fail(exc, debug)
    if as_json:
        import json

        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo("no task runs recorded" + (" that match" if any(
            (task_id, family, status, since)) else ""))
        return
    for record in records:
        click.echo(_line(record))
        if record["error"]:
            click.echo(f"    error: {record['error']}")
        if record["log"] and record["status"] != "built":
            click.echo(f"    log:   {record['log']}")


def _records(task_id: str | None, family: str | None, status: str | None,
             since: float | None, limit: int, lock_url: tuple[str, ...],
             config_path: str | None) -> list[dict[str, Any]]:
    if lock_url:
        from ..history.listener import lock_token
        from ..history.remote import get_json
        from ..locks.replicas import option_urls

        urls = option_urls(lock_url)
        data = get_json(urls, HISTORY_QUERY_ROUTE, {
            "task": task_id, "family": family, "status": status, "since": since,
            "limit": limit}, lock_token())
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
            raise UsageError(f"{', '.join(urls)} did not answer with a history (is it a batchdeps "
                             "lock server of this version?)")
        return list(data["tasks"])
    from ..config import load_config
    from ..history.listener import history_path

    path = history_path(load_config(config_path))
    if not os.path.exists(path):
        return []
    from ..history.store import HistoryStore, TaskQuery

    try:
        store = HistoryStore(path)
    except Exception as exc:  # noqa: BLE001 - sqlite3.Error, OSError: one clear message
        raise UsageError(f"cannot read the history file {path}: {exc}") from None
    try:
        return store.tasks(TaskQuery(task=task_id, family=family, status=status, since=since,
                                     limit=limit))
    finally:
        store.close()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _line(record: dict[str, Any]) -> str:
    when = (record.get("started") or "")[:19].replace("T", " ")
    host = str(record.get("host") or "")
    on = f"  on {host}" if "://" in host else ""  # a Dask worker's address
    return (f"{when}  {record['status']:<16} {_duration(float(record['duration'])):>7}  "
            f"{record['task_id']}  run {record['run_id']}{on}")
