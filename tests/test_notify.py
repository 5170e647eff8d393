"""Failure alerts through the real command: a webhook on a real local HTTP server, a command."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from batchdeps.report.notify import Notifier, alert_payload, redact_url
from batchdeps.report.result import BuildResult, Status, TaskResult

sys.path.insert(0, os.path.dirname(__file__))
from support.produtil import WebhookServer, add_prod_pipeline, attempt_log, closed_port

FAST = "retries = {retries}\nretry_delay = 0.01\ntimeout = 5\n"


def notify_config(url: str = "", command: str = "", retries: int = 2) -> str:
    lines = ["\n[notify]"]
    if url:
        lines.append(f'on_failure = "{url}"')
    if command:
        lines.append(f"command = {json.dumps(command)}")
    lines.append(FAST.format(retries=retries))
    return "\n".join(lines)


def test_failed_run_posts_json_with_failed_tasks_errors_host_and_logs(project: Any) -> None:
    with WebhookServer() as server:
        add_prod_pipeline(project, notify_config(server.url))
        done = project.run("run", "Flaky", "--fails", "9")
    assert done.returncode == 1
    assert len(server.received) == 1
    assert server.paths == ["/hooks/secret-token"]
    assert server.received[0]["content_type"] == "application/json"
    alert = server.received[0]["json"]
    task_id = "Flaky(name=f, fails=9)"
    assert alert["pipeline"] == task_id and alert["requested"] == [task_id]
    assert alert["status"] == "failed" and alert["exit_code"] == 1
    assert alert["host"] == socket.gethostname()
    assert len(alert["run_id"]) >= 8
    log_path = str(attempt_log(project.root / "logs/Flaky/name=f,fails=9", 4))
    assert alert["failed"] == [{"task_id": task_id, "error": "RuntimeError: failure number 4",
                                "attempts": 4, "log_path": log_path}]
    assert alert["log_paths"] == [log_path] and Path(log_path).exists()
    assert task_id in alert["text"] and "failure number 4" in alert["text"]
    assert "alert sent via webhook http://127.0.0.1:" in done.stderr
    assert "secret-token" not in done.stderr  # the URL's path may hold a secret


def test_successful_run_sends_no_alert(project: Any) -> None:
    with WebhookServer() as server:
        add_prod_pipeline(project, notify_config(server.url))
        done = project.run("run", "Flaky", "--fails", "1")
    assert done.returncode == 0
    assert server.received == []


def test_missing_input_is_alerted_with_its_path(project: Any) -> None:
    with WebhookServer() as server:
        project.write("config.toml", '[batchdeps]\nmodules = ["pipelines"]\n'
                      + notify_config(server.url))
        done = project.run("run", "NeedsMissing")  # conftest's demo pipeline
    assert done.returncode == 3
    alert = server.received[0]["json"]
    assert alert["status"] == "missing input" and alert["exit_code"] == 3
    assert alert["missing_inputs"][0]["paths"] == ["in/absent.txt"]


def test_webhook_is_retried_after_server_errors(project: Any) -> None:
    with WebhookServer(statuses=[500, 503]) as server:
        add_prod_pipeline(project, notify_config(server.url, retries=3))
        done = project.run("run", "Flaky", "--fails", "9")
    assert done.returncode == 1
    assert len(server.received) == 3  # 500, 503, then 200
    assert "failed (attempt 1 of 4): HTTP 500" in done.stderr
    assert "failed (attempt 2 of 4): HTTP 503" in done.stderr
    assert "alert sent via webhook" in done.stderr


def test_client_error_is_not_retried_and_does_not_change_the_exit_code(project: Any) -> None:
    with WebhookServer(statuses=[404]) as server:
        add_prod_pipeline(project, notify_config(server.url, retries=3))
        done = project.run("run", "Flaky", "--fails", "9")
    assert done.returncode == 1
    assert len(server.received) == 1
    assert "failed after 1 attempt(s): HTTP 404" in done.stderr


def test_unreachable_webhook_is_logged_and_the_exit_code_stays(project: Any) -> None:
    port = closed_port()
    add_prod_pipeline(project, notify_config(f"http://127.0.0.1:{port}/hook", retries=2))
    done = project.run("run", "Flaky", "--fails", "9")
    assert done.returncode == 1  # as without an alert
    assert f"alert via webhook http://127.0.0.1:{port}/... failed after 3 attempt(s)" in done.stderr
    assert "Traceback" not in done.stderr
    assert "failure number 4" in done.stdout  # the summary is there as usual


def test_command_alert_gets_the_json_on_stdin_and_variables(project: Any) -> None:
    command = 'cat > alert.json; echo "$BATCHDEPS_EXIT_CODE $BATCHDEPS_FAILED" > alert.env'
    add_prod_pipeline(project, notify_config(command=command))
    done = project.run("run", "Flaky", "--fails", "9")
    assert done.returncode == 1
    alert = json.loads((project.root / "alert.json").read_text())
    assert alert["failed"][0]["task_id"] == "Flaky(name=f, fails=9)"
    assert (project.root / "alert.env").read_text() == "1 Flaky(name=f, fails=9)\n"


def test_failing_command_is_retried_logged_and_changes_nothing(project: Any) -> None:
    add_prod_pipeline(project, notify_config(command="echo try >> tries; echo nope >&2; exit 7",
                                             retries=1))
    done = project.run("run", "Flaky", "--fails", "9")
    assert done.returncode == 1
    assert (project.root / "tries").read_text() == "try\ntry\n"
    assert "failed after 2 attempt(s): exit code 7: nope" in done.stderr


def test_webhook_that_is_not_http_is_a_config_error(project: Any) -> None:
    add_prod_pipeline(project, notify_config("ftp://example.invalid/x"))
    done = project.run("run", "Flaky", "--fails", "0")
    assert done.returncode == 2
    assert "[notify] on_failure must be an http:// or https:// URL" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (project.root / "journal.log").exists()  # nothing ran


def test_unknown_notify_key_is_a_config_error(project: Any) -> None:
    add_prod_pipeline(project, "\n[notify]\nwebhook = \"http://127.0.0.1:1/\"\n")
    done = project.run("run", "Flaky")
    assert done.returncode == 2
    assert "[notify] webhook: unknown key" in done.stderr


# -- the pieces, without a run --------------------------------------------------------------
def test_delivery_retries_use_growing_delays() -> None:
    slept: list[float] = []
    notifier = Notifier(command="exit 1", retries=3, retry_delay=0.5, sleep=slept.append,
                        rand=lambda: 1.0)
    result = BuildResult("r1", requested=["T()"], tasks={
        "T()": TaskResult("T()", Status.FAILED, attempts=1, error="boom")})
    notifier.notify(result)
    assert slept == [0.5, 1.0, 2.0]
    assert notifier.delivered == []


def test_payload_and_redaction() -> None:
    result = BuildResult("r2", requested=["T()"], interrupted=True, tasks={
        "T()": TaskResult("T()", Status.NOT_RUN)})
    payload = alert_payload(result, host="h1")
    assert payload["status"] == "interrupted" and payload["exit_code"] == 130
    assert payload["failed"] == [] and payload["host"] == "h1"
    assert redact_url("https://hooks.example.com:8443/services/T0/B0/SECRET?x=1") == \
        "https://hooks.example.com:8443/..."


def test_run_stopped_by_an_error_is_alerted_with_the_error(project: Any) -> None:
    with WebhookServer() as server:
        add_prod_pipeline(project, notify_config(server.url))
        port = closed_port()
        done = project.run("run", "Quiet", "--lock-url", f"http://127.0.0.1:{port}",
                           timeout=120)
    assert done.returncode not in (0, 2)
    assert "Traceback" not in done.stderr
    assert len(server.received) == 1
    alert = server.received[0]["json"]
    assert alert["status"] == "error" and alert["exit_code"] == done.returncode
    assert alert["pipeline"] == "Quiet(n=0)"
    assert str(port) in alert["error"] or "lock server" in alert["error"]


def test_command_that_hangs_is_killed_after_its_timeout(project: Any) -> None:
    # the shell's child keeps the pipes open: only killing the group ends it
    add_prod_pipeline(project, "\n[notify]\ncommand = \"sleep 60 & echo $! > alert.pid; wait\"\n"
                      "retries = 0\ntimeout = 1\n")
    done = project.run("run", "Flaky", "--fails", "9", timeout=40)
    assert done.returncode == 1
    assert "failed after 1 attempt(s): timed out after 1 s" in done.stderr
    from support.produtil import pid_gone
    from support.waiting import wait_for

    child = int((project.root / "alert.pid").read_text())
    wait_for(lambda: pid_gone(child), 10, "the alert command's child to die")
