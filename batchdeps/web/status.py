"""What the status page shows, read from the history tables (and the lease store, if any).

Every query is bounded (a page of rows, the last 7 days of finished rows through their
partial index), so the page stays fast however much history there is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..history.store import HistoryStore, TaskQuery
from ..procinfo import hostname
from .page import PAGE_SIZE, PageData

if TYPE_CHECKING:
    from ..locks.store import LeaseStore

#: a run with no end recorded counts as in progress while heard from this recently
RECENT_SECONDS = 15 * 60.0
MAX_PAGE = 500
TREND_DAYS = 7


class BadQuery(ValueError):
    """A query parameter of the page is not what it must be."""


def page_number(query: Mapping[str, str], name: str) -> int:
    value = query.get(name, "0")
    if not value.isdigit() or int(value) > MAX_PAGE:
        raise BadQuery(f"{name} must be a whole number from 0 to {MAX_PAGE}, got {value[:40]!r}")
    return int(value)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def in_progress(run: dict[str, Any], now: float, holders: set[str]) -> bool:
    """Whether a run with no end recorded is still going (not killed before its end)."""
    if run["run_id"] in holders:
        return True
    if run["host"] == hostname():
        return _pid_alive(int(run["pid"]))
    return now - float(run["last_seen_ts"]) < RECENT_SECONDS


def page_data(history: HistoryStore, query: Mapping[str, str], *, title: str, source: str,
              leases: LeaseStore | None = None, audit: bool = False,
              audit_note: str = "") -> PageData:
    """Everything the page shows; BadQuery for a bad page number."""
    from ..locks.server import lease_json

    now = time.time()
    failures_page = page_number(query, "failures_page")
    runs_page = page_number(query, "runs_page")
    audit_page = page_number(query, "audit_page")
    data = PageData(title=title, source=source, now=now, failures_page=failures_page,
                    runs_page=runs_page, audit_page=audit_page, audit_note=audit_note,
                    query={k: v for k, v in query.items() if k.endswith("_page")})
    holders: set[str] = set()
    if leases is not None:
        live = leases.live(limit=200)
        holders = {lease.holder.run_id for lease in live}
        data.leases = [lease_json(lease, now, with_token=False) for lease in live]
    for run in history.runs(limit=10, unfinished=True):
        if in_progress(run, now, holders):
            counts, tasks = history.run_tasks(run["run_id"], limit=50)
            data.runs_in_progress.append((run, counts, tasks))
    data.failures = history.tasks(TaskQuery(status="failed", limit=PAGE_SIZE,
                                            offset=failures_page * PAGE_SIZE))
    data.families = history.family_stats(now - TREND_DAYS * 86400, TREND_DAYS)
    data.runs = history.runs(limit=PAGE_SIZE, offset=runs_page * PAGE_SIZE)
    for run in data.runs:
        run["alive"] = run["finished"] is None and in_progress(run, now, holders)
    if leases is not None and audit:
        rows = leases.audit_since(0.0, limit=(audit_page + 1) * PAGE_SIZE)
        data.audit = [row.to_json() for row in rows[audit_page * PAGE_SIZE:]]
    return data
