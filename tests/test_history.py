"""Run history: the store, the listener, and `batchdeps history` over real runs."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from batchdeps.history.listener import HISTORY_FILE, HistoryListener
from batchdeps.history.records import RowError, row_from_json, row_json, run_from_json
from batchdeps.history.since import parse_since
from batchdeps.history.store import HistoryStore, TaskQuery

sys.path.insert(0, os.path.dirname(__file__))
from support.produtil import add_prod_pipeline, attempt_log

FLAKY9 = "Flaky(name=f, fails=9)"


def history(project: Any, *args: str) -> list[dict[str, Any]]:
    done = project.run("history", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


# -- through the real command ------------------------------------------------------------
def test_a_failed_run_is_in_history_with_its_error_and_log_kept_after_a_rerun(
        project: Any) -> None:
    add_prod_pipeline(project)
    first = project.run("run", "Flaky", "--fails", "9")
    assert first.returncode == 1
    (failed,) = history(project, "--status", "failed")
    assert failed["task_id"] == FLAKY9 and failed["family"] == "Flaky"
    assert failed["error"] == "RuntimeError: failure number 4"
    assert failed["attempts"] == 4 and failed["duration"] > 0
    log = Path(failed["log"])
    assert log == attempt_log(project.root / "logs/Flaky/name=f,fails=9", 4)
    for field in ("run_id", "task_id", "family", "status", "started", "duration", "error",
                  "log"):
        assert field in failed
    # the rerun fails again; the first run's log is still there and still listed
    second = project.run("run", "Flaky", "--fails", "9")
    assert second.returncode == 1
    records = history(project, "--task", FLAKY9)
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert records[0]["run_id"] != records[1]["run_id"]
    assert records[1]["log"] == str(log) and log.exists()
    assert Path(records[0]["log"]).exists() and records[0]["log"] != str(log)
    text = project.run("history")
    assert text.returncode == 0
    assert "failed" in text.stdout and f"log:   {log}" in text.stdout
    assert "error: RuntimeError: failure number 4" in text.stdout


def test_history_lists_every_task_newest_first_and_filters(project: Any) -> None:
    project.write("in/source.txt", "raw\n")
    assert project.run("run", "D").returncode == 0
    assert project.run("run", "Other").returncode == 0
    records = history(project)
    assert [r["task_id"] for r in records[:1]] == ["Other()"]
    built = {r["task_id"] for r in records if r["status"] == "built"}
    assert built >= {"A(day=2026-11-24)", "B(day=2026-11-24)", "D(day=2026-11-24, count=3)"}
    assert [r["started"] for r in records] == sorted((r["started"] for r in records),
                                                     reverse=True)
    assert {r["family"] for r in history(project, "--family", "B")} == {"B"}
    assert len(history(project, "--limit", "2")) == 2
    assert history(project, "--since", "2000-01-01") == records
    assert history(project, "--since", "1h") == records
    assert history(project, "--status", "failed") == []
    # a run over complete targets records them as complete
    assert project.run("run", "Other").returncode == 0
    assert history(project, "--task", "Other()")[0]["status"] == "complete"


def test_bad_since_is_a_clear_usage_error(project: Any) -> None:
    done = project.run("history", "--since", "yesterday-ish")
    assert done.returncode == 2
    assert "--since" in done.stderr and "24h" in done.stderr and "Traceback" not in done.stderr


def test_history_with_no_runs_yet_says_so(project: Any) -> None:
    done = project.run("history")
    assert done.returncode == 0 and "no task runs recorded" in done.stdout
    assert history(project) == []


def test_state_dir_holds_the_history_file(project: Any) -> None:
    project.write("config.toml", '[batchdeps]\nmodules = ["pipelines"]\nstate_dir = "var/state"\n')
    assert project.run("run", "Other").returncode == 0
    assert (project.root / "var/state" / HISTORY_FILE).exists()
    assert not (project.root / HISTORY_FILE).exists()
    assert [r["task_id"] for r in history(project)] == ["Other()"]


def test_history_can_be_turned_off(project: Any) -> None:
    project.write("config.toml", '[batchdeps]\nmodules = ["pipelines"]\n[history]\nenabled = false\n')
    assert project.run("run", "Other").returncode == 0
    assert not (project.root / HISTORY_FILE).exists()


def test_the_run_record_has_requested_tasks_host_user_and_exit_code(project: Any) -> None:
    project.write("in/source.txt", "raw\n")
    project.write("fail-B", "")
    assert project.run("run", "D").returncode == 1
    store = HistoryStore(str(project.root / HISTORY_FILE))
    try:
        (run,) = store.runs()
        assert run["requested"] == ["D(day=2026-11-24, count=3)"]
        assert run["exit_code"] == 1 and run["finished"] is not None
        assert run["host"] and run["user"] and run["pid"] > 0
        assert run["counts"] == {"built": 2, "failed": 1, "upstream failed": 1}
        counts, _ = store.run_tasks(run["run_id"])
        assert counts == {"built": 2, "failed": 1, "upstream failed": 1}
        kinds = [row[0] for row in store.db.execute(
            "SELECT kind FROM history_events WHERE task_id = 'B(day=2026-11-24)' ORDER BY id")]
        assert kinds == ["planned", "started", "attempt failed", "finished"]
        reason = store.tasks(TaskQuery(task="A(day=2026-11-24)"))[0]["reason"]
        assert reason.startswith("output out/a-2026-11-24.txt") and reason.endswith("missing")
        (reason,) = store.db.execute(
            "SELECT reason FROM history_events WHERE kind = 'planned' AND task_id = "
            "'B(day=2026-11-24)'").fetchone()
        assert reason.startswith("output out/b-2026-11-24.txt") and reason.endswith("missing")
    finally:
        store.close()


def test_runs_past_the_retention_are_removed(project: Any) -> None:
    project.write("config.toml", '[batchdeps]\nmodules = ["pipelines"]\n[history]\n'
                  "retention_days = 1\n")
    assert project.run("run", "Other").returncode == 0
    path = str(project.root / HISTORY_FILE)
    db = sqlite3.connect(path)
    two_days_ago = time.time() - 2 * 86400
    db.execute("UPDATE history_runs SET started = ?", (two_days_ago,))
    db.execute("UPDATE history_events SET ts = ?", (two_days_ago,))
    db.commit()
    db.close()
    (project.root / "out/other.txt").unlink()
    assert project.run("run", "Other").returncode == 0
    records = history(project)
    assert len(records) == 1 and records[0]["status"] == "built"


def test_bd_build_without_a_config_file_writes_no_history(tmp_path: Path,
                                                          monkeypatch: Any) -> None:
    import batchdeps as bd

    monkeypatch.chdir(tmp_path)

    class Note(bd.Task):
        def output(self) -> Any:
            return bd.FileTarget(str(tmp_path / "note.txt"))

        def run(self) -> None:
            with self.output().open("w") as out:
                out.write("x")

    assert bd.build(Note()).ok
    assert not (tmp_path / HISTORY_FILE).exists()


# -- the parts, directly -----------------------------------------------------------------
def test_listener_writes_in_batches_and_everything_at_the_end(tmp_path: Path) -> None:
    from batchdeps.report.events import AttemptFailed, TaskFinished, TaskStarted

    path = str(tmp_path / "h.db")
    ticks = iter(range(1000))
    listener = HistoryListener(path, batch=3, interval=1e9, clock=lambda: float(next(ticks)))
    listener.on_event(TaskStarted("r1", "T(n=1)", "T", 1, "output t1 missing"))
    listener.on_event(TaskFinished("r1", "T(n=1)", "T", "built", 1, 0.5))
    # a quick task is one finished row that keeps its start and reason
    listener.on_event(TaskStarted("r1", "T(n=2)", "T", 1, "output t2 missing"))
    assert not os.path.exists(path)  # two rows: still pending
    listener.on_event(TaskStarted("r1", "T(n=3)", "T", 1, "output t3 missing"))
    store = HistoryStore(path)
    (first,) = store.tasks(TaskQuery())  # the batch of three was written
    assert first["task_id"] == "T(n=1)" and first["reason"] == "output t1 missing"
    assert first["started"] is not None
    listener.on_event(AttemptFailed("r1", "T(n=2)", "T", 1, "boom", "/l/1.log"))
    listener.on_event(TaskFinished("r1", "T(n=2)", "T", "failed", 1, 0.1, "boom", "/l/1.log"))
    listener.close()
    records = store.tasks(TaskQuery())
    assert [(r["task_id"], r["status"], r["error"], r["log"]) for r in records] == [
        ("T(n=2)", "failed", "boom", "/l/1.log"), ("T(n=1)", "built", None, None)]
    kinds = [k for (k,) in store.db.execute(
        "SELECT kind FROM history_events WHERE task_id = 'T(n=2)' ORDER BY id")]
    assert kinds == ["started", "attempt failed", "finished"]
    store.close()


def test_an_unwritable_history_file_never_fails_the_run(tmp_path: Path, caplog: Any) -> None:
    from batchdeps.report.events import TaskStarted

    (tmp_path / "file").write_text("")
    listener = HistoryListener(str(tmp_path / "file" / "h.db"), batch=1)
    listener.on_event(TaskStarted("r1", "T()", "T", 1, "missing"))  # must not raise
    listener.on_event(TaskStarted("r1", "U()", "U", 1, "missing"))
    listener.close()
    assert sum("run history is off" in r.getMessage() for r in caplog.records) == 1


def test_rows_travel_as_json_and_bad_rows_are_refused() -> None:
    row = ("r1", 1.5, "finished", "T(n=1)", "T", "failed", 2, 0.5, "boom", "/l", "", "h", 7,
           1.0)
    assert row_from_json(json.loads(json.dumps(row_json(row)))) == row
    for bad in ({**row_json(row), "kind": "exploded"}, {**row_json(row), "pid": -1},
                {**row_json(row), "extra": 1}, {**row_json(row), "task_id": ""},
                {**row_json(row), "error": 5}, {**row_json(row), "ts": "now"}, [1, 2]):
        with pytest.raises(RowError):
            row_from_json(bad)
    with pytest.raises(RowError, match="exit_code"):
        run_from_json({"run_id": "r", "exit_code": 999})


def test_since_takes_dates_and_ages() -> None:
    now = 1_800_000_000.0
    assert parse_since("24h", now) == now - 86400
    assert parse_since("30m", now) == now - 1800
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("2026-11-01") < parse_since("2026-11-02")
    with pytest.raises(ValueError, match="neither a date"):
        parse_since("soon", now)


def test_queries_stay_fast_shaped_with_many_records(tmp_path: Path) -> None:
    """The page's and the command's queries go through the partial indexes (query plans)."""
    store = HistoryStore(str(tmp_path / "h.db"))
    plans: list[str] = []
    execute = store.db.execute

    class Spy:
        def execute(self, sql: str, args: Any = ()) -> Any:
            if sql.lstrip().startswith("SELECT") and "history_events" in sql:
                plans.append(" ".join(str(r) for r in execute("EXPLAIN QUERY PLAN " + sql,
                                                              args)))
            return execute(sql, args)

    store.db = Spy()  # type: ignore[assignment]
    for query in (TaskQuery(), TaskQuery(task="T(n=1)"), TaskQuery(status="failed"),
                  TaskQuery(family="T"), TaskQuery(since=time.time() - 3600)):
        store.tasks(query)
    store.family_stats(time.time() - 7 * 86400)
    store.db = execute.__self__  # type: ignore[attr-defined]
    store.close()
    assert len(plans) == 6
    for plan in plans:
        assert "USING INDEX history_finished" in plan or "USING COVERING INDEX history_" \
            "finished" in plan, plan


def test_each_task_record_names_the_worker_process_that_ran_it(project: Any) -> None:
    assert project.run("run", "Many", "--workers", "2").returncode == 0
    records = [r for r in history(project) if r["family"] == "Leaf"]
    assert len(records) == 6
    store = HistoryStore(str(project.root / HISTORY_FILE))
    (run,) = store.runs()
    store.close()
    workers = {r["pid"] for r in records}
    assert run["pid"] not in workers  # forked workers, not the runner
    started = {int(line.split("\t")[2]) for line in project.journal.read_text().splitlines()
               if line.startswith("start\t")}
    assert workers == started


def test_a_blocked_task_is_listed_as_blocked(project: Any) -> None:
    (project.root / "in/source.txt").unlink()
    assert project.run("run", "D").returncode == 3
    blocked = history(project, "--status", "blocked")
    assert {r["task_id"] for r in blocked} >= {"A(day=2026-11-24)", "D(day=2026-11-24, count=3)"}
    assert {r["status"] for r in blocked} == {"blocked"}


def test_history_from_a_server_that_is_down_is_a_clear_error(project: Any) -> None:
    done = project.run("history", "--lock-url", "http://127.0.0.1:9")
    assert done.returncode != 0
    assert "cannot reach the lock server at http://127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_history_file_that_is_not_a_database_is_a_clear_error(project: Any) -> None:
    (project.root / HISTORY_FILE).write_text("not sqlite at all\n" * 100)
    done = project.run("history")
    assert done.returncode == 2
    assert f"cannot read the history file {project.root / HISTORY_FILE}" in done.stderr
    assert "Traceback" not in done.stderr
    assert (project.root / HISTORY_FILE).read_text().startswith("not sqlite")  # left alone
    # a run beside it still works; history is off for it, with a warning
    run = project.run("run", "Other")
    assert run.returncode == 0 and "run history is off for this run" in run.stderr


def test_workers_come_from_each_tasks_last_finished_record_only(tmp_path: Path) -> None:
    """`read_workers` names a task's worker when its last finished record names one (an
    address with `://`), not when an earlier one did; planned rows do not count."""
    from batchdeps.history.store import read_workers

    path = str(tmp_path / "history.db")
    store = HistoryStore(path)
    now = time.time()

    def row(kind: str, task_id: str, host: str) -> tuple[Any, ...]:
        return ("r", now, kind, task_id, "T", "built", 1, 0.0, "", "", "", host, 1, now)

    store.write([row("finished", "T(n=1)", "tcp://10.0.0.1:4000"),
                 row("finished", "T(n=1)", "here"),  # last: the machine itself
                 row("finished", "T(n=2)", "here"),
                 row("finished", "T(n=2)", "tcp://10.0.0.2:4000"),  # last: a worker
                 row("finished", "T(n=3)", "tcp://10.0.0.3:4000"),
                 row("planned", "T(n=3)", "here"),
                 row("planned", "T(n=4)", "tcp://10.0.0.4:4000")])
    store.close()
    assert read_workers(path) == {"T(n=2)": "tcp://10.0.0.2:4000",
                                  "T(n=3)": "tcp://10.0.0.3:4000"}
