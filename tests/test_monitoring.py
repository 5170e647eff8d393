"""Metrics, the lock server's monitoring routes and `batchdeps ui`, through real processes."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.lockutil import BATCHDEPS, LockServer
from support.produtil import add_prod_pipeline
from support.waiting import wait_for

from batchdeps.history.remote import RemoteHistory
from batchdeps.web.page import PageData, render

FLAKY9 = "Flaky(name=f, fails=9)"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def history_json(cwd: Path, *args: str, env: dict[str, str] | None = None) -> list[Any]:
    done = subprocess.run([BATCHDEPS, "history", "--json", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


# -- --metrics-file ---------------------------------------------------------------------
def test_metrics_file_holds_the_runs_metrics_in_prometheus_text_format(project: Any) -> None:
    add_prod_pipeline(project)
    (project.root / "metrics").mkdir()
    done = project.run("run", "Flaky", "--fails", "9", "--metrics-file", "metrics/run.prom")
    assert done.returncode == 1
    text = (project.root / "metrics/run.prom").read_text()
    found = samples(text)
    assert found[("batchdeps_tasks_total", (("family", "Flaky"), ("outcome", "failed")))] == 1
    assert found[("batchdeps_runs_total", (("outcome", "failed"),))] == 1
    assert found[("batchdeps_task_duration_seconds_count",
                  (("family", "Flaky"), ("outcome", "failed")))] == 1
    assert found[("batchdeps_last_run_exit_code", ())] == 1
    assert abs(found[("batchdeps_last_run_finished_timestamp_seconds", ())] - time.time()) < 600
    # labels are family and outcome only: no parameter value anywhere
    assert "fails=9" not in text and "name=f" not in text
    assert [p.name for p in (project.root / "metrics").iterdir()] == ["run.prom"]  # no temp
    # the next run replaces the file as a whole
    assert project.run("run", "Flaky", "--fails", "0", "--name", "g", "--metrics-file",
                       "metrics/run.prom").returncode == 0
    found = samples((project.root / "metrics/run.prom").read_text())
    assert found[("batchdeps_last_run_exit_code", ())] == 0
    assert ("batchdeps_tasks_total", (("family", "Flaky"), ("outcome", "failed"))) not in found


def test_metrics_file_in_a_missing_folder_is_a_usage_error(project: Any) -> None:
    add_prod_pipeline(project)
    done = project.run("run", "Flaky", "--fails", "0", "--metrics-file", "nowhere/run.prom")
    assert done.returncode == 2
    assert "--metrics-file nowhere/run.prom" in done.stderr and "Traceback" not in done.stderr
    assert not (project.root / "out").exists()  # nothing ran


# -- the lock server ------------------------------------------------------------------------
def test_health_answers_without_a_token_and_tells_nothing(lock_server: LockServer) -> None:
    status, body = lock_server.request("GET", "/v1/health", token="")
    assert status == 200 and body == {"ok": True, "database": "sqlite", "answers": True}


def test_metrics_and_history_need_a_token(lock_server: LockServer) -> None:
    for method, path in (("GET", "/metrics"), ("GET", "/v1/history"), ("POST", "/v1/history")):
        status, _ = lock_server.request(method, path, body={} if method == "POST" else None,
                                        token="wrong")
        assert status == 401, path
    status, page = lock_server.request("GET", "/", token="", headers={"Accept": "text/html"})
    assert status == 401 and '<form method="post" action="/login">' in page
    # a script (no HTML in Accept) gets the API's JSON error instead of the form
    status, answer = lock_server.request("GET", "/", token="wrong")
    assert status == 401 and "token" in answer["error"]
    status, answer = lock_server.request("POST", "/login", raw=b"token=wrong", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 401 and answer["error"] == "Wrong token."


def test_public_status_opens_the_page_and_metrics_but_not_history_posts(tmp_path: Path) -> None:
    server = LockServer(tmp_path / "locks.db", extra=["--public-status"]).start()
    try:
        status, page = server.request("GET", "/", token="")
        assert status == 200 and "Recent failures" in page
        status, text = server.request("GET", "/metrics", token="")
        assert status == 200 and "batchdeps_leases_held" in text
        assert "Audit log" in page and "admin tokens only" in page  # no audit for anyone
        status, _ = server.request("POST", "/v1/history", body={"events": []}, token="")
        assert status == 401
    finally:
        server.stop()


@pytest.mark.parametrize("body", [
    [], {"events": "x"}, {"events": [], "extra": 1}, {"events": [{"kind": "finished"}]},
    {"events": [], "dropped": -1}, {"events": [], "run": {"run_id": "r", "exit_code": "1"}},
    {"events": [{"run_id": "r", "task_id": "T()", "kind": "exploded"}]},
])
def test_bad_history_posts_are_refused_and_store_nothing(lock_server: LockServer,
                                                         body: Any) -> None:
    status, answer = lock_server.request("POST", "/v1/history", body=body)
    assert status == 400 and answer["error"]
    status, answer = lock_server.request("GET", "/v1/history")
    assert status == 200 and answer == {"tasks": []}


def test_bad_history_queries_are_refused(lock_server: LockServer) -> None:
    for query in ("limit=0", "limit=x", "since=yesterday", "bogus=1"):
        status, answer = lock_server.request("GET", f"/v1/history?{query}")
        assert status == 400 and answer["error"], query
    status, answer = lock_server.request("GET", "/?failures_page=x")
    assert status == 400


def test_runs_on_two_machines_share_history_metrics_and_audit_across_a_restart(
        lock_project: Any) -> None:
    """Two runner processes against one server; then the server restarts."""
    server = lock_project.server
    lock_project.write_config(ttl=5, extra="[history]\nenabled = true\n")
    first = lock_project.start("Top", "--groups", "2", SLEEP_LEAF="0.2")
    second = lock_project.start("Flaky", FLAKY_RETRY_DELAY="0")
    assert first.wait(120) == 0, first.communicate()
    assert second.wait(120) == 0, second.communicate()
    env = lock_project.env()
    records = history_json(lock_project.root, "--lock-url", server.url, "--limit", "100",
                           env=env)
    runs = {r["run_id"] for r in records}
    assert len(runs) == 2
    assert {r["pid"] for r in records} == {first.pid, second.pid}
    assert {r["task_id"] for r in records if r["status"] == "built"} >= {
        "Top(groups=2)", "Mid(g=0, per=3)", "Leaf(n=5)", "Flaky()"}
    (flaky,) = [r for r in records if r["task_id"] == "Flaky()"]
    assert flaky["attempts"] == 2
    server.stop()
    server.start(port=server.port)  # same port and database
    after = history_json(lock_project.root, "--lock-url", server.url, "--limit", "100",
                         env=env)
    assert after == records
    status, text = server.request("GET", "/metrics")
    assert status == 200
    found = samples(text)
    assert found[("batchdeps_tasks_total", (("family", "Leaf"), ("outcome", "built")))] == 6
    assert found[("batchdeps_tasks_total", (("family", "Flaky"), ("outcome", "built")))] == 1
    assert found[("batchdeps_runs_total", (("outcome", "ok"),))] == 2
    assert found[("batchdeps_leases_held", ())] == 0
    audit = subprocess.run([BATCHDEPS, "audit", "--json", "--lock-url", server.url], env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert audit.returncode == 0, audit.stderr
    events = json.loads(audit.stdout)
    granted = {e["key"] for e in events if e["event"] == "grant"}
    assert {"Top(groups=2)", "Flaky()", "Leaf(n=0)"} <= granted
    holders = {e["holder"].split()[3] for e in events if e["event"] == "grant"}
    assert holders == {str(first.pid), str(second.pid)}
    # a run after the restart: the lease metrics count again, the counters kept going
    (lock_project.root / "out/top.txt").unlink()
    code, output = lock_project.run("Top", "--groups", "2")
    assert code == 0, output
    found = samples(server.request("GET", "/metrics")[1])
    assert found[("batchdeps_lock_acquisitions_total", (("outcome", "granted"),))] >= 1
    assert found[("batchdeps_runs_total", (("outcome", "ok"),))] == 3


def test_a_server_that_is_down_never_holds_up_the_end_of_a_run() -> None:
    dead = RemoteHistory("http://127.0.0.1:9", "t", drain=30)
    dead.put([("r", 0.0, "finished", "T()", "T", "built", 1, 0.0, "", "", "", "h", 1, 0.0)],
             None)
    wait_for(lambda: not dead._answering, 30, "the post to a closed port to fail")
    started = time.monotonic()
    dead.close()
    assert time.monotonic() - started < 5  # the run's end does not wait for a dead server
    assert dead.dropped == 1


def test_history_rows_past_the_bound_are_dropped_with_one_warning(caplog: Any) -> None:
    queue = RemoteHistory("http://127.0.0.1:9", "t", bound=3)
    row = ("r", 0.0, "finished", "T()", "T", "built", 1, 0.0, "", "", "", "h", 1, 0.0)
    queue.put([row] * 2, None)
    queue.put([row] * 2, None)
    queue.put([row] * 2, None)
    assert queue.dropped >= 3
    assert sum("dropping history rows" in r.getMessage() for r in caplog.records) == 1
    queue.close()


# -- the page --------------------------------------------------------------------------------
def test_the_page_escapes_everything_that_comes_from_users() -> None:
    evil = '<script>alert("x")</script>'
    record = {"run_id": evil, "task_id": f"T(name={evil})", "family": "T", "status": "failed",
              "started": "2026-11-28T00:00:00", "finished": "2026-11-28T00:00:01",
              "duration": 1.0, "error": evil, "log": f"/logs/{evil}", "attempts": 1,
              "reason": evil, "host": evil, "pid": 1}
    run = {"run_id": evil, "requested": [evil], "host": evil, "user": evil, "pid": 1,
           "started_ts": 0.0, "planned": 1, "finished": None, "exit_code": None,
           "counts": {evil: 1}, "duration": 1.0}
    html = render(PageData(
        title="t", source=evil, now=0.0, runs_in_progress=[(run, {evil: 1}, [record])],
        leases=[{"key": evil, "holder_text": evil, "age": 1.0, "expires_in": 1.0}],
        failures=[record], families=[{"family": evil, "built": 1, "failed": 1,
                                      "success_rate": 0.5, "trend": [1.0, None]}],
        runs=[run], audit=[{"at": 0.0, "event": evil, "key": evil, "holder": evil,
                            "address": evil, "detail": evil}],
        query={"runs_page": evil}))
    assert "<script" not in html
    assert html.count("&lt;script&gt;") >= 15


def test_ui_serves_the_page_of_the_local_history(project: Any) -> None:
    add_prod_pipeline(project)
    assert project.run("run", "Flaky", "--fails", "9").returncode == 1
    ui = subprocess.Popen([BATCHDEPS, "ui", "--port", "0"], cwd=project.root, env=project.env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert ui.stdout is not None
        line = ui.stdout.readline()
        assert line.startswith("serving the status page"), line + ui.stderr.read()
        url = line.split(" on ")[1].split()[0]
        host_port = url.split("//")[1].rstrip("/")
        assert host_port.startswith("127.0.0.1:")
        conn = http.client.HTTPConnection(*host_port.split(":"), timeout=10)
        conn.request("GET", "/")
        response = conn.getresponse()
        page = response.read().decode()
        assert response.status == 200
        assert FLAKY9 in page
        assert "RuntimeError: failure number 4" in page
        assert '<meta http-equiv="refresh"' in page and "<script" not in page
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(10)
    assert ui.returncode == 0


def test_ui_port_in_use_is_a_clear_error(project: Any) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = project.run("ui", "--port", str(port))
    assert done.returncode == 2 and f"127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_metrics_are_not_imported_by_help() -> None:
    done = subprocess.run([BATCHDEPS, "--help"], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert "prometheus_client" not in done.stderr and "sqlite3" not in done.stderr


def test_monitoring_md_names_only_tests_that_exist() -> None:
    """docs/monitoring.md: each promise's test exists; the screenshot it shows exists."""
    import re

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "docs/monitoring.md").read_text()
    named = re.findall(r"(tests/[\w/]+\.py)::(test_\w+)", text)
    assert len(named) > 20
    for path, name in named:
        assert re.search(rf"^def {name}\(", (repo / path).read_text(), re.MULTILINE), \
            f"docs/monitoring.md names {path}::{name}, which does not exist"
    assert (repo / "docs/status-page.png").read_bytes().startswith(b"\x89PNG")


def test_the_server_removes_history_past_its_history_days(tmp_path: Path) -> None:
    from batchdeps.history.store import HistoryStore
    from batchdeps.locks.store import SqliteLeaseStore as LeaseStore

    db = tmp_path / "locks.db"
    LeaseStore(str(db)).close()
    store = HistoryStore(str(db))
    old, new = time.time() - 3 * 86400, time.time()
    for run_id, when in (("old", old), ("new", new)):
        store.write([(run_id, when, "finished", f"T(r={run_id})", "T", "built", 1, 0.1, "",
                      "", "", "h", 1, when)],
                    {"run_id": run_id, "requested": [], "host": "h", "user": "u", "pid": 1,
                     "started": when, "finished": when, "exit_code": 0, "planned": 1,
                     "counts": {"built": 1}, "last_seen": when})
    store.close()
    server = LockServer(db, extra=["--history-days", "2"]).start()
    try:
        status, body = server.request("GET", "/v1/history")
        assert status == 200
        assert [r["task_id"] for r in body["tasks"]] == ["T(r=new)"]
    finally:
        server.stop()


def test_a_long_task_shows_while_it_runs_and_a_killed_run_not_as_running(
        project: Any) -> None:
    add_prod_pipeline(project)
    runner = project.popen("run", "Slow", SLEEP="60")
    wait_for(lambda: (project.root / "journal.log").exists()
             and "sleeping" in (project.root / "journal.log").read_text(), 60,
             "the task to start")
    from batchdeps.history.store import HistoryStore
    from batchdeps.web.status import page_data

    def running_shown() -> bool:
        store = HistoryStore(str(project.root / "batchdeps-history.db"))
        try:
            data = page_data(store, {}, title="t", source="s")
        finally:
            store.close()
        return any(t["task_id"] == "Slow()" and t["status"] == "running"
                   for _, _, tasks in data.runs_in_progress for t in tasks)

    wait_for(running_shown, 60, "the running task among the runs in progress")
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait(30)
    store = HistoryStore(str(project.root / "batchdeps-history.db"))
    try:
        data = page_data(store, {}, title="t", source="s")
    finally:
        store.close()
    assert data.runs_in_progress == []
    (run,) = data.runs
    assert run["finished"] is None and run["alive"] is False
    assert "no end recorded" in render(data)


def test_roles_reader_sees_page_and_metrics_worker_posts_history_admin_sees_audit(
        tmp_path: Path) -> None:
    import hashlib

    tokens = {"reader": "reader-token-0123456789abcdef", "worker": "worker-token-0123456789ab",
              "admin": "admin-token-0123456789abcdef"}
    path = tmp_path / "tokens"
    path.write_text("".join(f"{role} {hashlib.sha256(token.encode()).hexdigest()}\n"
                            for role, token in tokens.items()))
    server = LockServer(tmp_path / "locks.db", token="",
                        extra=["--tokens-file", str(path)]).start()
    batch = {"events": [{"run_id": "r1", "ts": 1.0, "kind": "finished", "task_id": "T()",
                         "family": "T", "status": "built", "attempt": 1}]}
    try:
        reader, worker, admin = tokens["reader"], tokens["worker"], tokens["admin"]
        status, page = server.request("GET", "/", token=reader)
        assert status == 200 and "admin tokens only" in page
        assert server.request("GET", "/metrics", token=reader)[0] == 200
        assert server.request("GET", "/v1/history", token=reader)[0] == 200
        assert server.request("POST", "/v1/history", body=batch, token=reader)[0] == 403
        assert server.request("POST", "/v1/history", body=batch, token=worker) == (
            200, {"stored": 1})
        status, page = server.request("GET", "/", token=admin)
        assert status == 200 and "admin tokens only" not in page
        assert "auth-failure" not in page  # nobody failed to log in yet
        assert [r["task_id"] for r in server.request("GET", "/v1/history",
                                                     token=reader)[1]["tasks"]] == ["T()"]
    finally:
        server.stop()


def test_failures_and_runs_are_paged_twenty_at_a_time(tmp_path: Path) -> None:
    from batchdeps.history.store import HistoryStore
    from batchdeps.web.status import BadQuery, page_data

    store = HistoryStore(str(tmp_path / "h.db"))
    now = time.time()
    store.write([("r1", now - i, "finished", f"T(n={i})", "T", "failed", 1, 0.1, "boom", "",
                  "", "h", 1, now - i) for i in range(25)])
    first = page_data(store, {}, title="t", source="s")
    assert [f["task_id"] for f in first.failures] == [f"T(n={i})" for i in range(20)]
    assert 'href="?failures_page=1">older' in render(first)
    second = page_data(store, {"failures_page": "1"}, title="t", source="s")
    assert [f["task_id"] for f in second.failures] == [f"T(n={i})" for i in range(20, 25)]
    html = render(second)
    assert 'href="?failures_page=0">&larr; newer' in html and "failures_page=2" not in html
    with pytest.raises(BadQuery):
        page_data(store, {"failures_page": "-1"}, title="t", source="s")
    store.close()
