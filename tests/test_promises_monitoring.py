"""Promises of docs/monitoring.md that no other test kept, through the real interface.

docs/promises.md (section "docs/monitoring.md") maps each promise of that page to the test
that fails if it breaks; the tests here fill the gaps: real `batchdeps` processes, real
lock-server processes and the real history file.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.lockutil import BATCHDEPS, LockProject, LockServer
from support.produtil import add_prod_pipeline, closed_port
from support.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent
MONITORING = REPO / "docs/monitoring.md"
HISTORY_FILE = "batchdeps-history.db"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def metrics(server: LockServer, token: str | None = None) -> dict[Any, float]:
    status, text = server.request("GET", "/metrics", token=token)
    assert status == 200, text
    return samples(text)


def holder(name: str) -> dict[str, Any]:
    return {"host": f"host-{name}", "pid": 1000 + len(name), "run_id": f"run-{name}"}


def history_json(cwd: Path, *args: str, env: dict[str, str]) -> list[dict[str, Any]]:
    done = subprocess.run([BATCHDEPS, "history", "--json", "--limit", "1000", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def tokens_server(tmp_path: Path) -> tuple[LockServer, dict[str, str]]:
    """A lock server with a reader, a worker and an admin token."""
    tokens = {"reader": "reader-token-0123456789abcdef", "worker": "worker-token-0123456789ab",
              "admin": "admin-token-0123456789abcdef"}
    path = tmp_path / "tokens"
    path.write_text("".join(f"{role} {hashlib.sha256(token.encode()).hexdigest()}\n"
                            for role, token in tokens.items()))
    server = LockServer(tmp_path / "locks.db", token="",
                        extra=["--tokens-file", str(path)]).start()
    return server, tokens


# -- Prometheus metrics on the lock server ----------------------------------------------------
def test_lease_metrics_count_requests_expiries_and_fence_refusals_and_restart_at_zero(
        tmp_path: Path) -> None:
    """leases held, granted / held_elsewhere, expired leases and fence refusals, from real
    requests; after a restart the lock counters start again from zero."""
    server = LockServer(tmp_path / "locks.db").start()
    try:
        key = "Report(day=2026-11-27)"
        status, first = server.request("POST", "/v1/acquire",
                                       {"key": key, "holder": holder("a"), "ttl": 1})
        assert status == 200 and first["granted"], first
        found = metrics(server)
        assert found[("batchdeps_leases_held", ())] == 1
        assert found[("batchdeps_lock_acquisitions_total", (("outcome", "granted"),))] == 1
        assert found[("batchdeps_lock_acquisitions_total",
                      (("outcome", "held_elsewhere"),))] == 0
        status, refused = server.request("POST", "/v1/acquire",
                                         {"key": key, "holder": holder("b"), "ttl": 30})
        assert status == 200 and not refused["granted"], refused
        found = metrics(server)
        assert found[("batchdeps_lock_acquisitions_total",
                      (("outcome", "held_elsewhere"),))] == 1
        assert found[("batchdeps_leases_expired_total", ())] == 0
        time.sleep(1.5)  # a's lease runs past its TTL without renewal
        status, taken = server.request("POST", "/v1/acquire",
                                       {"key": key, "holder": holder("b"), "ttl": 30})
        assert status == 200 and taken["granted"], taken
        found = metrics(server)
        assert found[("batchdeps_leases_expired_total", ())] == 1
        assert found[("batchdeps_fence_refusals_total", ())] == 0
        # a's fence check before its commit: refused, and counted
        status, answer = server.request("POST", "/v1/check", {
            "key": key, "token": first["token"], "holder": holder("a")})
        assert status == 409 and answer["ok"] is False
        found = metrics(server)
        assert found[("batchdeps_fence_refusals_total", ())] == 1
        assert found[("batchdeps_lock_acquisitions_total", (("outcome", "granted"),))] == 2
        assert found[("batchdeps_leases_held", ())] == 1
        server.stop()
        server.start(port=server.port)
        found = metrics(server)
        assert found[("batchdeps_lock_acquisitions_total", (("outcome", "granted"),))] == 0
        assert found[("batchdeps_lock_acquisitions_total",
                      (("outcome", "held_elsewhere"),))] == 0
        assert found[("batchdeps_fence_refusals_total", ())] == 0
        assert found[("batchdeps_leases_held", ())] == 1  # grants are durable
    finally:
        server.stop()


EXTRA_PIPELINE = '''
import batchdeps as bd


class Raw(bd.ExternalTask):
    def output(self):
        return bd.FileTarget("in/raw.txt")


class NeedsRaw(bd.Task):
    def requires(self):
        return Raw()

    def output(self):
        return bd.FileTarget("out/needs-raw.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("x")
'''


def test_runs_total_counts_each_kind_of_exit_and_a_waiting_run_shows_built_elsewhere(
        lock_project: LockProject) -> None:
    """`batchdeps_runs_total` by outcome (ok, missing_input, lock_wait_timeout,
    interrupted; a run refused with exit 2 is not counted); the waiting run's history has
    its `waiting` row and the final state `built elsewhere`; labels are family and outcome
    only."""
    project = lock_project
    server = project.server
    (project.root / "pipelines" / "extra.py").write_text(EXTRA_PIPELINE)
    code, output = project.run("NeedsRaw")
    assert code == 3, output
    code, output = project.run("Top", "--groups", "many")  # refused before it starts
    assert code == 2, output
    hold = project.root / "let-go"
    holder_run = project.start("Slow", HOLD_SLOW=str(hold))
    waiter = None
    try:
        wait_for(lambda: metrics(server)[("batchdeps_leases_held", ())] >= 1, 60,
                 "the running Slow() to hold its lease")
        code, output = project.run("Slow", "--wait-timeout", "1")
        assert code == 4, output
        waiter = project.start("Slow")

        def waiting_rows() -> list[Any]:
            path = project.root / HISTORY_FILE
            if not path.exists():
                return []
            db = sqlite3.connect(path)
            try:
                return db.execute("SELECT run_id FROM history_events WHERE kind = 'waiting' "
                                  "AND task_id = 'Slow()'").fetchall()
            except sqlite3.OperationalError:
                return []
            finally:
                db.close()

        # the run that timed out waited too; the second waiter's row comes on top
        wait_for(lambda: len({r[0] for r in waiting_rows()}) >= 2, 60,
                 "the waiting run's `waiting` row in the history file")

        def in_progress() -> str:
            status, page = server.request("GET", "/", headers={"Accept": "text/html"})
            assert status == 200
            return str(page).split('id="in-progress"')[1].split("</section>")[0]

        # the page's runs in progress: the running task and the waiting one, with counts
        shown = wait_for(lambda: (lambda text: text if "waiting" in text
                                  and "running" in text else "")(in_progress()), 60,
                         "the running and the waiting Slow() among the runs in progress")
        assert "Slow()" in shown and "waiting: 1" in shown and "running: 1" in shown, shown
        hold.write_text("")
        assert holder_run.wait(60) == 0, holder_run.communicate()
        assert waiter.wait(60) == 0, waiter.communicate()
    finally:
        hold.write_text("")
        for proc in (holder_run, waiter):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
    # an interrupted run
    (project.root / "out/slow.txt").unlink()
    hold.unlink()
    interrupted = project.start("Slow", HOLD_SLOW=str(hold))
    try:
        wait_for(lambda: [e[0] for e in project.events()].count("start") == 2, 60,
                 "the next Slow() run to start its task")
        os.killpg(interrupted.pid, signal.SIGINT)
        out, err = interrupted.communicate(timeout=60)
        assert interrupted.returncode == 130, out + err
    finally:
        if interrupted.poll() is None:
            os.killpg(interrupted.pid, signal.SIGKILL)
            interrupted.wait(30)

    def runs_counted() -> dict[Any, float]:
        found = metrics(server)
        return found if sum(v for (name, _), v in found.items()
                            if name == "batchdeps_runs_total") == 5 else {}

    found = wait_for(runs_counted, 30, "five runs in batchdeps_runs_total")
    for outcome in ("missing_input", "lock_wait_timeout", "interrupted"):
        assert found[("batchdeps_runs_total", (("outcome", outcome),))] == 1, outcome
    assert found[("batchdeps_runs_total", (("outcome", "ok"),))] == 2
    assert ("batchdeps_runs_total", (("outcome", "usage"),)) not in found  # not counted
    assert found[("batchdeps_tasks_total", (("family", "Slow"), ("outcome", "built")))] == 1
    assert found[("batchdeps_tasks_total",
                  (("family", "Slow"), ("outcome", "built_elsewhere")))] == 1
    # built elsewhere did not run: not in the histogram of the seconds tasks ran
    assert ("batchdeps_task_duration_seconds_count",
            (("family", "Slow"), ("outcome", "built_elsewhere"))) not in found
    assert found[("batchdeps_task_duration_seconds_count",
                  (("family", "Slow"), ("outcome", "built")))] == 1
    # labels: the family and the outcome only (and the histogram's bucket bound)
    for _, labels in found:
        assert {name for name, _ in labels} <= {"family", "outcome", "le"}, labels
    records = history_json(project.root, "--task", "Slow()", "--lock-url", server.url,
                           env=project.env())
    assert "built elsewhere" in [r["status"] for r in records]


def test_dropped_history_rows_are_counted_on_the_server_even_after_it_was_down(
        tmp_path: Path) -> None:
    """Rows dropped while the server did not answer reach
    `batchdeps_history_dropped_rows_total` once it answers again."""
    from batchdeps.history.remote import RemoteHistory

    server = LockServer(tmp_path / "locks.db").start()
    server.stop()  # down: the runner's queue fills up
    row = ("r", time.time(), "finished", "T()", "T", "built", 1, 0.1, "", "", "", "h", 1,
           time.time())
    queue = RemoteHistory(server.url, server.token, bound=3, interval=0.1)
    try:
        queue.put([row] * 5, None)
        assert queue.dropped == 2
        wait_for(lambda: not queue._answering, 30, "a post to the stopped server to fail")
        server.start(port=server.port)

        def dropped_counted() -> float:
            return metrics(server)[("batchdeps_history_dropped_rows_total", ())]

        wait_for(lambda: queue.sent == 3, 60, "the kept rows to reach the server")
        assert dropped_counted() == 2
    finally:
        queue.close()
        server.stop()


# -- --metrics-file -------------------------------------------------------------------------
def test_metrics_file_is_replaced_by_a_rename_so_a_reader_never_sees_half_a_file(
        project: Any) -> None:
    add_prod_pipeline(project)
    (project.root / "metrics").mkdir()
    path = project.root / "metrics/run.prom"
    assert project.run("run", "Flaky", "--fails", "9", "--metrics-file",
                       str(path)).returncode == 1
    old_inode = path.stat().st_ino
    with open(path) as reader:  # node_exporter's collector, reading the old file
        assert project.run("run", "Flaky", "--fails", "0", "--name", "g", "--metrics-file",
                           str(path)).returncode == 0
        old = samples(reader.read())
    assert old[("batchdeps_last_run_exit_code", ())] == 1  # the old file, whole
    assert path.stat().st_ino != old_inode  # a new file renamed over the old one
    assert samples(path.read_text())[("batchdeps_last_run_exit_code", ())] == 0


# -- batchdeps history ----------------------------------------------------------------------
def documented_json_fields() -> set[str]:
    """The fields docs/monitoring.md says `history --json` prints."""
    text = MONITORING.read_text()
    paragraph = re.search(r"^`--json` prints .*?(?=\n\n)", text, re.MULTILINE | re.DOTALL)
    assert paragraph, "docs/monitoring.md no longer describes `history --json`"
    sentence = paragraph.group(0).split("`--since`")[0]
    return set(re.findall(r"`(\w+)`", sentence)) - {"null"}


def test_history_json_prints_the_documented_fields_and_takes_a_local_time(
        project: Any) -> None:
    fields = documented_json_fields()
    assert {"run_id", "task_id", "pid", "reason"} <= fields, fields
    assert project.run("run", "Other").returncode == 0
    (record,) = history_json(project.root, env=project.env)
    assert set(record) == fields
    assert record["status"] == "built"
    assert record["error"] is None and record["log"] is None  # null when there is none
    assert record["attempts"] == 1 and record["pid"] > 0 and record["host"]
    assert record["finished"] and record["reason"]
    # a date and time in local time, as `--since 2026-11-01T08:00`: on a clock five hours
    # behind UTC (a POSIX TZ string, no time zone database needed)
    behind = {**project.env, "TZ": "XYZ+5"}

    def local(seconds_from_now: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M",
                             time.gmtime(time.time() + seconds_from_now - 5 * 3600))

    assert [r["run_id"] for r in history_json(project.root, "--since", local(-1800),
                                              env=behind)] == [record["run_id"]]
    assert history_json(project.root, "--since", local(1800), env=behind) == []


def test_every_option_of_the_history_usage_block_is_in_its_help() -> None:
    text = MONITORING.read_text()
    block = re.search(r"^```\n(batchdeps history .*?)^```$", text, re.MULTILINE | re.DOTALL)
    assert block, "docs/monitoring.md has no `batchdeps history` usage block"
    options = set(re.findall(r"--[a-z][a-z-]*", block.group(1)))
    assert {"--task", "--since", "--lock-url", "--json"} <= options, options
    done = subprocess.run([BATCHDEPS, "history", "--help"], capture_output=True, text=True,
                          timeout=60, check=True)
    for option in options:
        assert re.search(rf"{option}\b", done.stdout), f"history --help lacks {option}"


def test_history_from_the_server_takes_a_reader_token_and_asks_replicas_in_turn(
        tmp_path: Path) -> None:
    server, tokens = tokens_server(tmp_path)
    try:
        server.token = tokens["worker"]  # the runs' token
        root = tmp_path / "project"
        root.mkdir()
        project = LockProject(root, server)
        code, output = project.run("Top", "--groups", "1")
        assert code == 0, output
        env = project.env(BATCHDEPS_LOCK_TOKEN=tokens["reader"])
        dead = f"http://127.0.0.1:{closed_port()}"
        records = history_json(tmp_path, "--lock-url", dead, "--lock-url", server.url,
                               env=env)
        assert {"Top(groups=1)", "Mid(g=0, per=3)"} <= {r["task_id"] for r in records}
    finally:
        server.stop()


def test_with_a_lock_server_the_local_file_keeps_everything_send_to_server_false_keeps_it(
        lock_project: LockProject) -> None:
    project = lock_project
    code, output = project.run("Top", "--groups", "1")
    assert code == 0, output
    env = project.env()
    local = history_json(project.root, env=env)
    remote = history_json(project.root, "--lock-url", project.server.url, env=env)
    assert local and local == remote
    project.write_config(extra="[history]\nsend_to_server = false\n")
    (project.root / "out/top.txt").unlink()
    code, output = project.run("Top", "--groups", "1")
    assert code == 0, output
    local_runs = {r["run_id"] for r in history_json(project.root, env=env)}
    remote_runs = {r["run_id"] for r in history_json(project.root, "--lock-url",
                                                     project.server.url, env=env)}
    assert len(local_runs) == 2 and len(remote_runs) == 1 and remote_runs < local_runs


def test_history_goes_to_state_dir_relative_to_the_config_file_and_is_in_wal_mode(
        project: Any, tmp_path: Path) -> None:
    project.write("config.toml", '[batchdeps]\nmodules = ["pipelines"]\n'
                  'state_dir = "var/state"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([BATCHDEPS, "run", "Other", "--config",
                           str(project.root / "config.toml")], cwd=elsewhere, env=project.env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    path = project.root / "var/state" / HISTORY_FILE
    assert path.exists() and not (elsewhere / "var").exists()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


BUILD_SCRIPT = '''
import sys

import batchdeps as bd

sys.path.insert(0, ".")
from pipelines.demo import Other

config = bd.load_config(sys.argv[1]) if len(sys.argv) > 1 else None
result = bd.build([Other()], config=config)
sys.exit(result.exit_code)
'''


def test_bd_build_records_a_run_when_its_config_came_from_a_file(project: Any) -> None:
    script = project.write("build.py", BUILD_SCRIPT)
    done = subprocess.run([sys.executable, str(script), "config.toml"], cwd=project.root,
                          env=project.env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    (record,) = history_json(project.root, env=project.env)
    assert record["task_id"] == "Other()" and record["status"] == "built"
    # a bare bd.build() beside it writes nothing more
    (project.root / "out/other.txt").unlink()
    done = subprocess.run([sys.executable, str(script)], cwd=project.root, env=project.env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert len(history_json(project.root, env=project.env)) == 1


def test_retrying_is_recorded_and_task_logs_are_pruned_at_most_once_an_hour(
        project: Any) -> None:
    add_prod_pipeline(project, "[history]\nretention_days = 1\n")
    logs = project.root / "logs/Quiet/n=0"
    two_days_ago = time.time() - 2 * 24 * 3600

    def old_run_folder(name: str) -> Path:
        folder = logs / name
        folder.mkdir(parents=True)
        (folder / "1.log").write_text("old\n")
        for path in (folder / "1.log", folder):
            os.utime(path, (two_days_ago, two_days_ago))
        return folder

    first = old_run_folder("0123456789ab")
    assert project.run("run", "Flaky", "--fails", "1").returncode == 0
    assert not first.exists()
    db = sqlite3.connect(project.root / HISTORY_FILE)
    try:
        kinds = [k for (k,) in db.execute(
            "SELECT kind FROM history_events WHERE family = 'Flaky' ORDER BY id")]
    finally:
        db.close()
    assert "retrying" in kinds and kinds[-1] == "finished"
    second = old_run_folder("123456789abc")
    assert project.run("run", "Quiet", "--n", "1").returncode == 0
    assert second.exists()  # pruned less than an hour ago: not again yet
    for marker in (project.root / "logs").rglob(".pruned"):
        os.utime(marker, (time.time() - 2 * 3600,) * 2)
    assert project.run("run", "Quiet", "--n", "2").returncode == 0
    assert not second.exists()


# -- the status page ------------------------------------------------------------------------
def get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    host, port = url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_the_page_refreshes_every_15_s_changes_nothing_and_shows_exit_codes_and_trends(
        project: Any) -> None:
    add_prod_pipeline(project)
    assert project.run("run", "Flaky", "--fails", "9").returncode == 1
    assert project.run("run", "Quiet").returncode == 0
    ui = subprocess.Popen([BATCHDEPS, "ui", "--port", "0"], cwd=project.root, env=project.env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert ui.stdout is not None
        line = ui.stdout.readline()
        url = line.split(" on ")[1].split()[0]
        status, page = get(url, "/")
        assert status == 200
        assert re.search(r'<meta http-equiv="refresh" content="15">', page)
        assert "<form" not in page and "<script" not in page  # nothing on it acts
        before = (project.root / HISTORY_FILE).read_bytes()
        get(url, "/")
        assert (project.root / HISTORY_FILE).read_bytes() == before  # reading wrote nothing
        runs = page.split('id="runs"')[1].split("</table>")[0]
        assert '<span class="failed">1</span>' in runs and '<span class="ok">0</span>' in runs
        families = page.split('id="families"')[1].split("</table>")[0]
        assert "Flaky" in families and "mean duration per day" in families
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(10)


def test_ui_serves_on_127_0_0_1_port_8780_by_default(project: Any) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8780))
        except OSError:
            pytest.skip("port 8780 is taken on this machine")
    ui = subprocess.Popen([BATCHDEPS, "ui"], cwd=project.root, env=project.env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert ui.stdout is not None
        line = ui.stdout.readline()
        assert "http://127.0.0.1:8780/" in line, line + (ui.stderr.read() if ui.poll() else "")
        assert get("http://127.0.0.1:8780", "/")[0] == 200
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(10)


def test_the_login_cookie_is_taken_on_get_requests_only(lock_server: LockServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", lock_server.port, timeout=10)
    try:
        conn.request("POST", "/login", body=f"token={lock_server.token}", headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        assert response.status == 303
        cookie = response.getheader("Set-Cookie", "").split(";")[0]
        assert cookie.startswith("batchdeps_token=")
    finally:
        conn.close()

    def send(method: str, path: str, body: Any = None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", lock_server.port, timeout=10)
        try:
            headers = {"Cookie": cookie, "Accept": "text/html"}
            payload = None
            if body is not None:
                payload = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    assert send("GET", "/") == 200
    assert send("GET", "/metrics") == 200
    assert send("GET", "/v1/history") == 200
    # a POST with the cookie alone is not authorised (no cross-site request can act)
    assert send("POST", "/v1/history", {"events": []}) == 401
    assert send("POST", "/v1/acquire", {"key": "T()", "holder": holder("c"), "ttl": 30}) == 401
    status, leases = lock_server.request("GET", "/v1/leases")
    assert status == 200 and "T()" not in json.dumps(leases)


def test_the_server_keeps_30_days_of_history_by_default() -> None:
    done = subprocess.run([BATCHDEPS, "lock-server", "--help"], capture_output=True,
                          text=True, timeout=60, check=True)
    option = re.search(r"--history-days[^\n]*(?:\n {10,}[^\n]*)*", done.stdout)
    assert option and "30" in option.group(0), done.stdout
