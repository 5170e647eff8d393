"""The history tables in SQLite: runs and task events, written in batches, read by page.

One `events` row per thing that happened to a task (planned, started, waiting, attempt
failed, retrying, finished); the `finished` rows are the task records that `batchdeps
history` lists. Only those rows are indexed (partial indexes), so the rows every task
adds on its way cost one B-tree insert each. WAL mode, synchronous=NORMAL: a batch is one
transaction, and readers (the status page, `batchdeps history`) never block the writer.
The same tables live in the lock server's database for the history of every machine.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .records import EVENT_COLUMNS, FINISHED, YIELDED, Row

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS history_runs (
    run_id TEXT PRIMARY KEY,
    requested TEXT NOT NULL,        -- JSON list of task ids
    host TEXT NOT NULL,
    user TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL,          -- seconds since the epoch
    finished REAL,                  -- NULL while running (or when the run was killed)
    exit_code INTEGER,
    planned INTEGER NOT NULL,
    counts TEXT NOT NULL,           -- JSON {{status: count}}
    last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS history_runs_started ON history_runs(started);
CREATE TABLE IF NOT EXISTS history_events (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    task_id TEXT NOT NULL,
    family TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    duration REAL NOT NULL,
    error TEXT NOT NULL,
    log TEXT NOT NULL,
    reason TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS history_events_run ON history_events(run_id, id);
CREATE INDEX IF NOT EXISTS history_finished_ts ON history_events(ts)
    WHERE kind = '{FINISHED}';
CREATE INDEX IF NOT EXISTS history_finished_task ON history_events(task_id, ts)
    WHERE kind = '{FINISHED}';
CREATE INDEX IF NOT EXISTS history_finished_family ON history_events(family, ts)
    WHERE kind = '{FINISHED}';
CREATE INDEX IF NOT EXISTS history_finished_failed ON history_events(ts)
    WHERE kind = '{FINISHED}' AND status = 'failed';
DROP INDEX IF EXISTS history_yielded;
CREATE INDEX IF NOT EXISTS history_yielded_order ON history_events(kind, id)
    WHERE kind = '{YIELDED}';
"""

_INSERT_EVENT = (f"INSERT INTO history_events ({', '.join(EVENT_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})")
_UPSERT_RUN = (
    "INSERT INTO history_runs (run_id, requested, host, user, pid, started, finished, "
    "exit_code, planned, counts, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(run_id) DO UPDATE SET finished = excluded.finished, "
    "exit_code = excluded.exit_code, counts = excluded.counts, "
    "last_seen = max(history_runs.last_seen, excluded.last_seen)"
)
#: the task records, written as a literal so SQLite uses the partial indexes
_FINISHED_ROWS = f"kind = '{FINISHED}'"
#: statuses shown (and filtered on) by a shorter name, as the contract lists them
STATUS_NAMES = {"blocked by missing input": "blocked"}
_STATUS_STORED = {shown: stored for stored, shown in STATUS_NAMES.items()}
_TASK_FIELDS = ("id", "run_id", "task_id", "family", "status", "started", "ts", "duration",
                "attempt", "error", "log", "reason", "host", "pid")


@dataclass
class TaskQuery:
    """Filters of `batchdeps history` (None: any); newest first, `limit` rows after `offset`."""

    task: str | None = None
    family: str | None = None
    status: str | None = None
    since: float | None = None
    run_id: str | None = None
    limit: int = 50
    offset: int = 0


def task_record(row: Sequence[Any]) -> dict[str, Any]:
    """A task record as `history --json` prints it (the contract's fields first)."""
    values = dict(zip(_TASK_FIELDS, row))
    return {
        "run_id": values["run_id"], "task_id": values["task_id"], "family": values["family"],
        "status": STATUS_NAMES.get(values["status"], values["status"]),
        "started": iso(values["started"]),
        "duration": round(values["duration"], 3), "error": values["error"] or None,
        "log": values["log"] or None, "finished": iso(values["ts"]),
        "attempts": values["attempt"], "reason": values["reason"] or None,
        "host": values["host"], "pid": values["pid"],
    }


def iso(seconds: float | None) -> str | None:
    """Seconds since the epoch as local ISO 8601 with the offset (None stays None)."""
    if seconds is None:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


class HistoryStore:
    """The history tables of one SQLite file (made on first use)."""

    def __init__(self, path: str, *, timeout: float = 10.0) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                  timeout=timeout)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- writing ------------------------------------------------------------------------
    def write(self, rows: Iterable[Row], run: dict[str, Any] | None = None) -> None:
        """Add `rows` and insert or update the run record, in one transaction."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if run is not None:
                db.execute(_UPSERT_RUN, (
                    run["run_id"], json.dumps(run["requested"]), run["host"], run["user"],
                    run["pid"], run["started"], run["finished"], run["exit_code"],
                    run["planned"], json.dumps(run["counts"]), run["last_seen"]))
            db.executemany(_INSERT_EVENT, rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def prune(self, older_than: float) -> int:
        """Remove runs that started before `older_than` (epoch s) and their events."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            old = [r for (r,) in db.execute(
                "SELECT run_id FROM history_runs WHERE started < ?", (older_than,))]
            db.executemany("DELETE FROM history_events WHERE run_id = ?",
                           [(r,) for r in old])
            db.execute("DELETE FROM history_runs WHERE started < ?", (older_than,))
            # events of a run whose record never arrived (a server that dropped it)
            db.execute(f"DELETE FROM history_events WHERE {_FINISHED_ROWS} AND ts < ?",
                       (older_than,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return len(old)

    # -- reading ------------------------------------------------------------------------
    def tasks(self, query: TaskQuery) -> list[dict[str, Any]]:
        """Task records (finished rows), newest first."""
        where = [_FINISHED_ROWS]
        args: list[Any] = []
        if query.status == "failed":  # a literal, so the partial index of failures applies
            where.append("status = 'failed'")
        status = _STATUS_STORED.get(query.status, query.status) if query.status else None
        for column, value in (("task_id", query.task), ("family", query.family),
                              ("status", status), ("run_id", query.run_id)):
            if value is not None and not (column == "status" and value == "failed"):
                where.append(f"{column} = ?")
                args.append(value)
        if query.since is not None:
            where.append("ts >= ?")
            args.append(query.since)
        sql = (f"SELECT {', '.join(_TASK_FIELDS)} FROM history_events "
               f"WHERE {' AND '.join(where)} ORDER BY ts DESC, id DESC LIMIT ? OFFSET ?")
        rows = self.db.execute(sql, [*args, query.limit, query.offset]).fetchall()
        return [task_record(row) for row in rows]

    def runs(self, limit: int = 20, offset: int = 0, *,
             unfinished: bool = False) -> list[dict[str, Any]]:
        """Run records, newest first (only those with no end recorded when `unfinished`)."""
        where = "WHERE finished IS NULL" if unfinished else ""
        rows = self.db.execute(
            "SELECT run_id, requested, host, user, pid, started, finished, exit_code, "
            f"planned, counts, last_seen FROM history_runs {where} "
            "ORDER BY started DESC LIMIT ? OFFSET ?", (limit, offset)).fetchall()
        return [_run_record(row) for row in rows]

    def run_tasks(self, run_id: str, limit: int = 200) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """Where each task of a run stands now: counts by state, and the tasks not yet done
        first (running, waiting, planned), then the latest finished, `limit` in all."""
        rows = self.db.execute(
            f"SELECT {', '.join(_TASK_FIELDS)}, kind FROM history_events WHERE id IN ("
            "SELECT max(id) FROM history_events WHERE run_id = ? GROUP BY task_id)",
            (run_id,)).fetchall()
        counts: dict[str, int] = {}
        order = {"running": 0, "retrying": 1, "waiting": 2, "waiting for input": 2,
                 "failed": 3, "timed out": 3,
                 "planned": 5}
        states = []
        for row in rows:
            record = task_record(row[:-1])
            state = record["status"]
            counts[state] = counts.get(state, 0) + 1
            record["kind"] = row[-1]
            states.append((order.get(state, 4), -row[6], record))
        states.sort(key=lambda item: (item[0], item[1]))
        return counts, [record for _, _, record in states[:limit]]

    def family_stats(self, since: float, days: int = 7) -> list[dict[str, Any]]:
        """Per family since `since`: runs by outcome, success rate, mean duration per day."""
        rows = self.db.execute(
            "SELECT family, status, count(*), sum(duration), "
            "cast((ts - ?) / 86400 AS INTEGER) AS day FROM history_events "
            f"WHERE {_FINISHED_ROWS} AND ts >= ? AND status IN ('built', 'failed') "
            "GROUP BY family, status, day", (since, since)).fetchall()
        families: dict[str, dict[str, Any]] = {}
        for family, status, count, total, day in rows:
            entry = families.setdefault(family, {
                "family": family, "built": 0, "failed": 0,
                "trend": [[0, 0.0] for _ in range(days)]})
            entry[status] += count
            if 0 <= day < days and status == "built":
                entry["trend"][day][0] += count
                entry["trend"][day][1] += total
        stats = []
        for entry in families.values():
            runs = entry["built"] + entry["failed"]
            entry["success_rate"] = entry["built"] / runs if runs else None
            entry["trend"] = [total / count if count else None
                              for count, total in entry["trend"]]
            stats.append(entry)
        stats.sort(key=lambda e: (-(e["failed"]), e["family"]))
        return stats

    def count_tasks(self, query: TaskQuery) -> int:
        where = [_FINISHED_ROWS]
        args: list[Any] = []
        if query.status is not None:
            where.append("status = ?")
            args.append(query.status)
        if query.since is not None:
            where.append("ts >= ?")
            args.append(query.since)
        (count,) = self.db.execute(
            f"SELECT count(*) FROM history_events WHERE {' AND '.join(where)}", args).fetchone()
        return int(count)


def read_yielded(path: str) -> dict[str, list[str]]:
    """Per task id, what its run() yielded in the last run in which it yielded anything
    (`records.yielded_spec` strings, in the order yielded), from the history file at
    `path`, opened read-only: `status` neither writes the history nor needs to be able to.

    Raises:
        sqlite3.Error: the file cannot be read as a history.
    """
    from pathlib import Path

    db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, timeout=10.0)
    latest: dict[str, tuple[str, list[str]]] = {}
    try:
        rows = db.execute("SELECT task_id, run_id, reason FROM history_events "
                          f"WHERE kind = '{YIELDED}' ORDER BY id")
        for task_id, run_id, spec in rows:
            last = latest.get(task_id)
            if last is None or last[0] != run_id:
                latest[task_id] = last = (run_id, [])
            if spec not in last[1]:
                last[1].append(spec)
    finally:
        db.close()
    return {task_id: specs for task_id, (_, specs) in latest.items()}


def read_workers(path: str) -> dict[str, str]:
    """Per task id, the worker address (`tcp://host:port`) its last finished attempt ran
    on, for tasks whose last record names one (an executor such as Dask's reports it; a
    machine's own name has no `://`), from the history file at `path`, opened read-only.

    Raises:
        sqlite3.Error: the file cannot be read as a history.
    """
    from pathlib import Path

    db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, timeout=10.0)
    try:
        # The bare column of a max() row is that row's (SQLite): each task's last record;
        # only those that name a worker come back (a million-task history is not read
        # into memory to keep a few).
        return dict(db.execute(
            f"SELECT task_id, host FROM (SELECT task_id, host, max(id) FROM history_events "
            f"WHERE {_FINISHED_ROWS} GROUP BY task_id) WHERE instr(host, '://') > 0"))
    finally:
        db.close()


def _run_record(row: Sequence[Any]) -> dict[str, Any]:
    (run_id, requested, host, user, pid, started, finished, exit_code, planned, counts,
     last_seen) = row
    return {
        "run_id": run_id, "requested": json.loads(requested), "host": host, "user": user,
        "pid": pid, "started": iso(started), "finished": iso(finished),
        "exit_code": exit_code, "planned": planned, "counts": json.loads(counts),
        "last_seen": iso(last_seen), "started_ts": started, "last_seen_ts": last_seen,
        "duration": round((finished or time.time()) - started, 3),
    }
