"""Production runs through the real command: retries, timeouts, signals, JSON lines, hooks."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import batchdeps as bd
from batchdeps.backoff import retry_delay
from batchdeps.report.events import (
    AttemptFailed,
    RunFinished,
    TaskFinished,
    TaskRetrying,
    TaskStarted,
)

sys.path.insert(0, os.path.dirname(__file__))
from support.produtil import (
    add_prod_pipeline,
    all_files,
    attempt_log,
    journal_events,
    pid_gone,
)
from support.waiting import wait_for

FLAKY = "Flaky(name=f, fails={})"


# -- retries ------------------------------------------------------------------------------
def test_retry_delay_grows_exponentially_with_jitter_and_cap() -> None:
    low, high = (lambda: 0.0), (lambda: 1.0)
    assert [retry_delay(n, 1.0, 2.0, 300.0, high) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert [retry_delay(n, 1.0, 2.0, 300.0, low) for n in (1, 2, 3, 4)] == [0.5, 1, 2, 4]
    assert retry_delay(20, 1.0, 2.0, 60.0, high) == 60.0  # capped
    assert retry_delay(20, 1.0, 2.0, 60.0, low) == 30.0   # jitter stays within the cap's half
    assert retry_delay(2, 0.5, 3.0, 300.0, lambda: 0.5) == pytest.approx(1.125)


def test_failing_task_is_retried_until_it_succeeds(project: Any) -> None:
    add_prod_pipeline(project)
    done = project.run("run", "Flaky", "--fails", "2")
    assert done.returncode == 0, done.stderr
    task_id = FLAKY.format(2)
    assert journal_events(project, "start") == [task_id] * 3
    assert f"{task_id}: 3 attempts" in done.stdout
    assert (project.root / "out/flaky-f.txt").read_text() == "attempt 3\n"
    # each attempt is logged, and each retry says which attempt failed and why
    assert f"start {task_id} (attempt 2)" in done.stderr
    assert f"start {task_id} (attempt 3)" in done.stderr
    assert "after attempt 1 failed: RuntimeError: failure number 1" in done.stderr
    assert "after attempt 2 failed: RuntimeError: failure number 2" in done.stderr
    assert f"(log {attempt_log(project.root / 'logs/Flaky/name=f,fails=2', 1)})" in done.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_retries_run_out_after_retries_plus_one_attempts(project: Any, workers: str) -> None:
    add_prod_pipeline(project)
    done = project.run("run", "Flaky", "--fails", "9", "--workers", workers)
    assert done.returncode == 1
    task_id = FLAKY.format(9)
    assert journal_events(project, "start") == [task_id] * 4  # retries = 3: four runs
    assert re.search(rf"{re.escape(task_id)}: RuntimeError: failure number 4 "
                     r"\[4 attempt\(s\), log .*4\.log\]", done.stdout), done.stdout
    assert all_files(project.root / "out") == []  # no partial output, no temporary file


def test_retry_delays_grow_between_attempts(project: Any) -> None:
    add_prod_pipeline(project)
    done = project.run("run", "Flaky", "--fails", "9")
    delays = {int(m.group(2)): float(m.group(1)) for m in
              re.finditer(r"retry .* in ([0-9.e-]+) s after attempt (\d+) failed", done.stderr)}
    # retry_delay = 0.01, backoff 2: attempt n waits between half and all of 0.01 * 2**(n-1)
    assert sorted(delays) == [1, 2, 3]
    for attempt, delay in delays.items():
        full = 0.01 * 2 ** (attempt - 1)
        assert full / 2 * 0.99 <= delay <= full * 1.01, (attempt, delay)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_retry_options_come_from_config_when_the_class_sets_none(project: Any,
                                                                  workers: str) -> None:
    add_prod_pipeline(project, "retries = 1\nretry_delay = 0.01\n")
    done = project.run("run", "Configured", "--fails", "5", "--workers", workers)
    assert done.returncode == 1
    assert len(journal_events(project, "start")) == 2
    assert "[2 attempt(s)" in done.stdout


# -- timeouts -----------------------------------------------------------------------------
def test_timeout_kills_the_attempt_and_its_children_and_leaves_no_output(project: Any) -> None:
    add_prod_pipeline(project)
    started = time.monotonic()
    done = project.run("run", "TimesOut", SLEEP="30")
    took = time.monotonic() - started
    assert done.returncode == 1
    assert "TimesOut(): timed out after 1 s [1 attempt(s)" in done.stdout
    assert took < 20  # a bound on correctness (the task sleeps 30 s), not a speed claim
    assert journal_events(project, "sleeping") and not journal_events(project, "end")
    assert all_files(project.root / "out") == []
    child = int((project.root / "child.pid").read_text())
    wait_for(lambda: pid_gone(child), 10, "the task's child process to die")
    # the next run starts from scratch and can finish
    again = project.run("run", "TimesOut", SLEEP="0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (project.root / "out/timesout.txt").read_text() == "partial\ndone\n"


def test_a_timed_out_attempt_is_retried_like_a_failure(project: Any) -> None:
    add_prod_pipeline(project)
    done = project.run("run", "TimesOutTwice", SLEEP="30")
    assert done.returncode == 1
    assert len(journal_events(project, "start")) == 2
    assert "TimesOutTwice(): timed out after 1 s [2 attempt(s)" in done.stdout
    assert "after attempt 1 failed: timed out after 1 s" in done.stderr
    for n in (1, 2):
        log = attempt_log(project.root / "logs/TimesOutTwice/_", n)
        assert log.read_text().endswith(f"# attempt {n} failed: timed out after 1 s\n")
    assert all_files(project.root / "out") == []


# -- signals ------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_exits_130_with_no_partial_output_and_locks_freed(
        project: Any, workers: str, signum: int) -> None:
    add_prod_pipeline(project)
    process = project.popen("run", "Slow", "--workers", workers, SLEEP="30")
    wait_for(lambda: bool(journal_events(project, "sleeping")), 30, "the task to start")
    assert any(os.path.basename(name).startswith("slow.txt.")
               for name in all_files(project.root / "out"))
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, out + err
    assert "interrupted" in out
    assert not journal_events(project, "end")
    assert all_files(project.root / "out") == []  # no output and no temporary file
    # locks are free: a run right after builds the task instead of waiting for it
    again = project.run("run", "Slow", "--workers", workers, "--wait-timeout", "5", SLEEP="0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (project.root / "out/slow.txt").read_text() == "partial\ndone\n"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_second_sigint_stops_at_once(project: Any, workers: str) -> None:
    add_prod_pipeline(project, "kill_grace = 60\n")
    process = project.popen("run", "Stubborn", "--workers", workers)
    wait_for(lambda: bool(journal_events(project, "sleeping")), 30, "the task to start")
    process.send_signal(signal.SIGINT)
    wait_for(lambda: bool(journal_events(project, "ignored")), 20, "the task to shrug it off")
    time.sleep(0.2)
    assert process.poll() is None  # the first stop waits for the task (grace is 60 s)
    stopped = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 130, out + err
    assert time.monotonic() - stopped < 10  # far below the 60 s grace: it did not wait
    assert "stopped at once" in err
    task_pid = int((project.root / "stubborn.pid").read_text())
    wait_for(lambda: pid_gone(task_pid), 10, "the task's process to die")
    assert "stubborn.txt" not in all_files(project.root / "out")


# -- JSON log lines -----------------------------------------------------------------------
def test_log_format_json_gives_one_object_per_line_with_run_task_attempt_host(
        project: Any) -> None:
    add_prod_pipeline(project)
    done = project.run("run", "Flaky", "--fails", "1", "--log-format", "json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    assert events[0] == "run_started" and events[-1] == "run_finished"
    assert {"task_started", "task_retrying", "task_finished"} <= set(events)
    run_ids = {line["run_id"] for line in lines}
    assert len(run_ids) == 1 and None not in run_ids
    assert {line["host"] for line in lines} == {socket.gethostname()}
    started = [line for line in lines if line["event"] == "task_started"]
    assert [(s["task_id"], s["attempt"]) for s in started] == [(FLAKY.format(1), 1),
                                                                (FLAKY.format(1), 2)]
    finished = next(line for line in lines if line["event"] == "task_finished")
    assert finished["status"] == "built" and finished["attempt"] == 2
    assert lines[-1]["exit_code"] == 0


# -- hooks and listeners ------------------------------------------------------------------
def test_on_failure_runs_once_after_the_last_attempt(project: Any) -> None:
    add_prod_pipeline(project)
    project.write("fail-Hooked", "")
    done = project.run("run", "Hooked")
    assert done.returncode == 1
    lines = [line.split("\t")[0] for line in project.journal.read_text().splitlines()]
    assert lines == ["start", "start", "on_failure ValueError: marker says no"]


def test_on_success_runs_once_after_the_output_is_committed(project: Any) -> None:
    add_prod_pipeline(project)
    done = project.run("run", "Hooked")
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t")[0] for line in project.journal.read_text().splitlines()]
    assert lines == ["start", "on_success"]
    assert (project.root / "out/hooked.txt").exists()


class _Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_event(self, event: Any) -> None:
        self.events.append(event)


class _TwiceFlaky(bd.Task):
    """Fails its first attempt (counted in a file next to its output)."""

    folder = bd.Parameter()
    retries = 2
    retry_delay = 0.01

    def output(self) -> bd.Target:
        return bd.FileTarget(f"{self.folder}/twice.txt")

    def run(self) -> None:
        counter = Path(str(self.folder)) / "attempts"
        n = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(n))
        print(f"attempt {n} says hello")
        if n == 1:
            raise OSError("first attempt fails")
        with self.output().open("w") as out:
            out.write("ok\n")


@pytest.mark.parametrize("workers", [1, 2])
def test_build_listeners_hear_every_attempt_and_logs_are_captured(tmp_path: Path,
                                                                  workers: int) -> None:
    recorder = _Recorder()
    result = bd.build(_TwiceFlaky(folder=str(tmp_path)), workers=workers,
                      listeners=[recorder], log_dir=str(tmp_path / "logs"),
                      config=bd.Config(batchdeps={"lock_dir": str(tmp_path / "locks")}))
    assert result.exit_code == 0
    task_result = next(iter(result.tasks.values()))
    assert task_result.attempts == 2
    kinds = [type(e) for e in recorder.events]
    assert kinds.count(TaskStarted) == 2 and kinds.count(TaskRetrying) == 1
    failed = [e for e in recorder.events if isinstance(e, AttemptFailed)]
    assert [(e.attempt, e.error) for e in failed] == [(1, "OSError: first attempt fails")]
    assert failed[0].log_path and "attempt 1 says hello" in Path(failed[0].log_path).read_text()
    finished = [e for e in recorder.events if isinstance(e, TaskFinished)]
    assert [(e.status, e.attempts) for e in finished] == [("built", 2)]
    assert isinstance(recorder.events[-1], RunFinished)
    assert task_result.log_path and "attempt 2 says hello" in Path(task_result.log_path).read_text()


class _Broken:
    def on_event(self, event: Any) -> None:
        raise RuntimeError("listener bug")


def test_a_listener_that_raises_changes_nothing(tmp_path: Path) -> None:
    recorder = _Recorder()
    result = bd.build(_TwiceFlaky(folder=str(tmp_path)), listeners=[_Broken(), recorder],
                      config=bd.Config(batchdeps={"lock_dir": str(tmp_path / "locks")}))
    assert result.exit_code == 0
    assert isinstance(recorder.events[-1], RunFinished)
    assert (tmp_path / "twice.txt").read_text() == "ok\n"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_releases_lock_server_leases_at_once(project: Any, tmp_path: Path,
                                                     workers: str) -> None:
    from support.lockutil import TOKEN, LockServer

    server = LockServer(tmp_path / "locks.db").start()
    try:
        # a lease left behind would hold the task for 60 s; the rerun waits only 5 s
        add_prod_pipeline(project, f'\n[lock]\nurl = "{server.url}"\nttl = 60\n')
        env = {"BATCHDEPS_LOCK_TOKEN": TOKEN, "SLEEP": "30"}
        process = project.popen("run", "Slow", "--workers", workers, **env)
        wait_for(lambda: bool(journal_events(project, "sleeping")), 30, "the task to start")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 130, out + err
        assert all_files(project.root / "out") == []
        again = project.run("run", "Slow", "--workers", workers, "--wait-timeout", "5",
                            **{**env, "SLEEP": "0"})
        assert again.returncode == 0, again.stdout + again.stderr
        assert "built Slow()" in again.stderr
    finally:
        server.stop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_resolution_exits_130(project: Any, signum: int) -> None:
    add_prod_pipeline(project)
    process = project.popen("run", "SlowToResolve", SLEEP="30")
    wait_for(lambda: (project.root / "resolving").exists(), 30, "resolution to start")
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, out + err
    assert "interrupted" in err and "Traceback" not in err
    assert not journal_events(project, "start")


def test_kill_grace_then_sigkill_stops_a_task_that_ignores_sigterm(project: Any) -> None:
    add_prod_pipeline(project, "kill_grace = 1\n")
    process = project.popen("run", "Stubborn", "--workers", "2")
    wait_for(lambda: bool(journal_events(project, "sleeping")), 30, "the task to start")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)  # the task alone would sleep 60 s
    assert process.returncode == 130, out + err
    assert journal_events(project, "ignored")  # it did get SIGTERM first
    task_pid = int((project.root / "stubborn.pid").read_text())
    wait_for(lambda: pid_gone(task_pid), 10, "the task's process to die")
    assert all_files(project.root / "out") == []


def test_an_error_that_ends_the_command_is_a_json_line_too(project: Any) -> None:
    add_prod_pipeline(project)
    done = project.run("run", "Quiet", "--log-format", "json", "--lock-url",
                       "http://127.0.0.1:1")
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    error = lines[-1]
    assert error["event"] == "error" and error["exit_code"] == 1
    assert error["run_id"] and "lock server" in error["message"]
