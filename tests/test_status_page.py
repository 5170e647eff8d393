"""The status page in a real headless browser, over a real lock server and real runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from support.lockutil import BATCHDEPS, LockProject, LockServer
from support.waiting import wait_for

NIGHTLY = '''
"""A nightly pipeline whose report fails while the warehouse is down."""
import os

import batchdeps as bd


class Extract(bd.Task):
    day = bd.DateParameter()

    def output(self):
        return bd.FileTarget(f"out/extract-{self.day}.csv")

    def run(self):
        with self.output().open("w") as out:
            out.write("rows\\n")


class Report(bd.Task):
    day = bd.DateParameter()

    def requires(self):
        return Extract(day=self.day)

    def output(self):
        return bd.FileTarget(f"out/report-{self.day}.csv")

    def run(self):
        print("loading the warehouse")
        if os.path.exists("warehouse-down"):
            raise ConnectionError("warehouse <db-1> refused the connection")
        with self.output().open("w") as out:
            out.write("report\\n")
'''
REPORT = "Report(day=2026-11-27)"
ERROR = "ConnectionError: warehouse <db-1> refused the connection"


def nightly_project(lock_project: LockProject) -> LockProject:
    (lock_project.root / "pipelines" / "nightly.py").write_text(NIGHTLY)
    return lock_project


def log_in(page: Any, server: LockServer, token: str) -> Any:
    """Open the page, fill in the login form, submit; the response to the form post."""
    page.goto(server.url + "/")
    page.fill("#token", token)
    with page.expect_navigation() as navigation:
        page.click("button[type=submit]")
    return navigation.value


def metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def command(project: LockProject, *args: str) -> Any:
    done = subprocess.run([BATCHDEPS, *args, "--json", "--lock-url", project.server.url],
                          cwd=project.root, env=project.env(), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_login_form_refuses_a_wrong_token_and_sets_an_http_only_cookie(
        browser: Any, lock_server: LockServer) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        response = page.goto(lock_server.url + "/")
        assert response.status == 401
        assert page.is_visible("form[action='/login']")
        refused = log_in(page, lock_server, "not-the-token")
        assert refused.status == 401
        assert page.inner_text("[role=alert]") == "Wrong token."
        assert context.cookies() == []
        assert not page.is_visible("#failures")
        accepted = log_in(page, lock_server, lock_server.token)
        assert accepted.status == 200 and page.url == lock_server.url + "/"
        assert page.inner_text("h1") == "batchdeps status"
        assert page.is_visible("#failures") and page.is_visible("#families")
        (cookie,) = context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # scripts cannot read the token
        with page.expect_navigation():
            page.click("text=Log out")
        assert page.is_visible("form[action='/login']") and context.cookies() == []
        # the failed login is in the audit log, with the client address and not the token
        status, body = lock_server.request("GET", "/v1/audit?since=0")
        assert status == 200
        failures = [a for a in body["audit"] if a["event"] == "auth-failure"]
        assert failures and failures[0]["address"] == "127.0.0.1"
        assert "not-the-token" not in json.dumps(body)
    finally:
        context.close()


def test_a_failing_nightly_run_shows_on_the_page_in_metrics_history_and_audit(
        browser: Any, lock_project: LockProject) -> None:
    project = nightly_project(lock_project)
    server = project.server
    (project.root / "warehouse-down").write_text("")
    code, output = project.run("Report", "--day", "2026-11-27")
    assert code == 1, output
    # history: the failure with its error and log file
    (failed,) = command(project, "history", "--status", "failed")
    assert failed["task_id"] == REPORT and failed["error"] == ERROR
    first_log = Path(failed["log"])
    assert "loading the warehouse" in first_log.read_text()
    # the page, in a real browser, after logging in through the form
    context = browser.new_context()
    try:
        page = context.new_page()
        log_in(page, server, server.token)
        failures = page.inner_text("#failures")
        assert REPORT in failures and ERROR in failures and str(first_log) in failures
        assert "Report" in page.inner_text("#families")
        runs = page.inner_text("#runs")
        assert failed["run_id"] in runs and "Report(day=2026-11-27)" in runs
        audit = page.inner_text("#audit")  # the environment token has the admin role
        assert "grant" in audit and "release" in audit and REPORT in audit
    finally:
        context.close()
    # metrics, parsed with prometheus_client's own parser
    status, text = server.request("GET", "/metrics")
    assert status == 200
    assert metric(text, "batchdeps_tasks_total", family="Report", outcome="failed") == 1
    assert metric(text, "batchdeps_tasks_total", family="Extract", outcome="built") == 1
    assert metric(text, "batchdeps_runs_total", outcome="failed") == 1
    assert metric(text, "batchdeps_task_duration_seconds_count", family="Report",
                  outcome="failed") == 1
    assert metric(text, "batchdeps_lock_acquisitions_total", outcome="granted") == 2
    assert metric(text, "batchdeps_leases_held") == 0
    # the audit log through `batchdeps audit`
    events = command(project, "audit")
    mine = [e["event"] for e in events if e["key"] == REPORT]
    assert "grant" in mine and "release" in mine
    # the rerun fails again: a log of its own, the first one kept, both in history
    code, output = project.run("Report", "--day", "2026-11-27")
    assert code == 1, output
    records = command(project, "history", "--task", REPORT)
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert records[1]["log"] == str(first_log) and first_log.exists()
    assert records[0]["log"] != str(first_log) and Path(records[0]["log"]).exists()
    # fixed: the next night builds it, and the family's success rate shows one in three
    (project.root / "warehouse-down").unlink()
    code, output = project.run("Report", "--day", "2026-11-27")
    assert code == 0, output
    context = browser.new_context(java_script_enabled=False)  # readable without scripts
    try:
        page = context.new_page()
        log_in(page, server, server.token)
        families = page.inner_text("#families")
        assert "33.3%" in families
        assert page.locator("meta[http-equiv=refresh]").count() == 1
        assert str(first_log) in page.inner_text("#failures")
    finally:
        context.close()
    status, text = server.request("GET", "/metrics")
    assert metric(text, "batchdeps_tasks_total", family="Report", outcome="built") == 1
    assert metric(text, "batchdeps_runs_total", outcome="ok") == 1


def test_a_run_in_progress_shows_its_tasks_and_leases(browser: Any,
                                                      lock_project: LockProject) -> None:
    server = lock_project.server
    running = lock_project.start("Slow", SLEEP_SLOW="60")
    try:
        def shown() -> bool:
            status, page = server.request("GET", "/")
            # the run's counts say a task runs (the run itself shows first, planned)
            return status == 200 and "Slow()" in page and "running: 1" in page

        wait_for(shown, 60, "the running task on the page")
        context = browser.new_context()
        try:
            page = context.new_page()
            log_in(page, server, server.token)
            progress = page.inner_text("#in-progress")
            assert "Slow()" in progress and "running" in progress
            assert f"pid {running.pid}" in progress
            leases = page.inner_text("#leases")
            assert "Slow()" in leases and f"pid {running.pid}" in leases
        finally:
            context.close()
    finally:
        os.killpg(running.pid, signal.SIGTERM)
        running.wait(60)
