"""The one assembly of a run: bd.build and `batchdeps run` get the same run from a Session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.lockutil import LockProject
from support.produtil import WebhookServer, closed_port
from support.waiting import wait_for

import batchdeps as bd
from batchdeps.config import load_config
from batchdeps.errors import ExitCode, LockServerUnavailable, UsageError
from batchdeps.report.events import RunStarted
from batchdeps.report.notify import Notifier
from batchdeps.run.session import Session


class Note(bd.Task):
    """Writes one file; the test checks whether it ran."""

    path = bd.Parameter()

    def output(self):
        return bd.FileTarget(self.path)

    def run(self):
        with self.output().open("w") as out:
            out.write("note\n")


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_event(self, event: Any) -> None:
        self.events.append(event)


def _config_file(folder: Path, text: str) -> Path:
    path = folder / "config.toml"
    path.write_text('[batchdeps]\nmodules = []\n' + text)
    return path


def test_bd_build_and_batchdeps_run_both_alert_when_the_lock_server_is_down(
        project: Any, tmp_path: Path) -> None:
    port = closed_port()
    down = f"http://127.0.0.1:{port}"
    with WebhookServer() as server:
        notify = f'\n[notify]\non_failure = "{server.url}"\nretries = 0\n'
        # the command line
        project.write("config.toml", f'[batchdeps]\nmodules = ["pipelines"]\n[lock]\n'
                      f'url = "{down}"\n' + notify)
        done = project.run("run", "Other")
        assert done.returncode == ExitCode.FAILED
        assert "cannot be reached" in done.stderr and "Traceback" not in done.stderr
        assert len(server.received) == 1
        # the Python API, with the same settings
        api_folder = tmp_path / "api"
        api_folder.mkdir()
        config = load_config(str(_config_file(api_folder, f'[lock]\nurl = "{down}"\n' + notify)))
        target = api_folder / "note.txt"
        with pytest.raises(LockServerUnavailable):
            bd.build(Note(path=str(target)), config=config)
        assert len(server.received) == 2
    cli_alert, api_alert = (received["json"] for received in server.received)
    for alert, pipeline in ((cli_alert, "Other()"), (api_alert, f"Note(path={target})")):
        assert alert["status"] == "error" and alert["exit_code"] == ExitCode.FAILED
        assert alert["pipeline"] == pipeline
        assert str(port) in alert["error"]
    assert set(cli_alert) == set(api_alert)
    assert not target.exists() and not (project.root / "out" / "other.txt").exists()


def test_workers_below_one_is_a_usage_error_in_python_as_on_the_command_line(
        project: Any, tmp_path: Path) -> None:
    target = tmp_path / "note.txt"
    with pytest.raises(UsageError, match="workers must be a whole number of 1 or more, got 0"):
        bd.build([Note(path=str(target))], workers=0)
    assert not target.exists()
    done = project.run("run", "Other", "--workers", "0")
    assert done.returncode == ExitCode.USAGE
    assert not (project.root / "out" / "other.txt").exists()


def test_run_started_carries_the_worker_count_of_the_run(tmp_path: Path) -> None:
    recorder = Recorder()
    locks_dir = str(tmp_path / "locks")
    config = load_config(str(_config_file(tmp_path, f'lock_dir = "{locks_dir}"\n')))
    result = bd.build([Note(path=str(tmp_path / f"n{i}.txt")) for i in range(3)], workers=3,
                      config=config, listeners=[recorder])
    assert result.ok
    started = [e for e in recorder.events if isinstance(e, RunStarted)]
    assert [e.workers for e in started] == [3]


def test_listeners_are_assembled_in_one_place_in_a_documented_order(tmp_path: Path) -> None:
    config = load_config(str(_config_file(
        tmp_path, 'log_dir = "logs"\n[notify]\non_failure = "http://127.0.0.1:9/x"\n')))
    mine = Recorder()
    session = Session.from_config(config, console=True, listeners=[mine])
    assembled = session.assemble_listeners(session._task_logs())
    names = [type(listener).__name__ for listener in assembled.all]
    assert names == ["LogListener", "TaskLogs", "HistoryListener", "SummaryListener",
                     "Notifier", "Recorder"]
    assert isinstance(assembled.notifier, Notifier) and assembled.all[-1] is mine
    assert [type(c).__name__ for c in assembled.to_close] == ["HistoryListener"]
    for closable in assembled.to_close:
        closable.close()
    # bd.build: no console output, the rest the same
    quiet = Session.from_config(config, local_history=False)
    names = [type(listener).__name__ for listener in quiet.assemble_listeners(None).all]
    assert names == ["Notifier"]


def test_lock_server_killed_mid_run_still_prints_the_summary_with_the_error_first(
        lock_project: LockProject) -> None:
    """Top <- Mid(g=0) <- Leaf(0..2): the leaves are built, then the server dies while Mid
    runs; the run stops, and the summary says what was built, under the error."""
    proc = lock_project.start("Top", "--groups", "1", SLEEP_MID="3")
    wait_for(lambda: lock_project.starts().get("Mid(g=0, per=3)"), 60, "Mid to start")
    lock_project.server.kill9()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.FAILED, out + err
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if "stopped by an error" in line)
    assert "lock server" in lines[head] and "cannot be reached" in lines[head]
    assert lines[head + 1].startswith("batchdeps: 5 task(s): 3 built, 2 not run")
    assert "Traceback" not in err
    assert "batchdeps: error: lock server" in err  # and the error as the command's last word
    ends = [event for event, *_ in lock_project.events() if event == "end"]
    assert len(ends) >= 3  # the leaves (Mid's run() may end too; it is not committed)
    assert not (lock_project.root / "out" / "mid-0.txt").exists()
