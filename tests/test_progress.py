"""The live progress line: drawn under a pseudo-terminal, absent without one."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from typing import Any

from batchdeps.report.events import RunStarted, TaskFinished, TaskStarted
from batchdeps.report.progress import ProgressListener
from batchdeps.resolver import resolve

sys.path.insert(0, os.path.dirname(__file__))
from support.produtil import add_prod_pipeline

CLEAR = "\r\x1b[K"
LINE = re.compile(r"batchdeps: (\d+)/(\d+) done, (\d+) running, (\d+) pending, (\d+) failed"
                  r" \| \d+:\d\d elapsed, (~\d+:\d\d|\?) left")


def run_in_terminal(project: Any, *args: str, timeout: float = 60,
                    **env: str) -> tuple[int, str]:
    """Run `batchdeps` with stdout and stderr on a pseudo-terminal; (exit code, all output)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(project.command(*args), cwd=project.root,
                               env={**project.env, "TERM": "xterm", **env},
                               stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every process closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_progress_line_is_drawn_on_a_terminal(project: Any) -> None:
    add_prod_pipeline(project)
    code, output = run_in_terminal(project, "run", "Pair", "--workers", "2", SLEEP="1.5")
    assert code == 0, output
    assert CLEAR in output
    lines = [LINE.search(part) for part in output.split(CLEAR)]
    counts = [tuple(int(g) for g in m.groups()[:5]) for m in lines if m]
    assert counts, output
    assert all(total == 4 for _, total, _, _, _ in counts)
    assert any(running >= 1 for _, _, running, _, _ in counts)  # the slow task, running
    assert counts[-1] == (4, 4, 0, 0, 0)
    # done only grows, and the counts always add up to the total
    assert [c[0] for c in counts] == sorted(c[0] for c in counts)
    assert all(done + running + pending + failed <= total
               for done, total, running, pending, failed in counts)
    assert any(m.group(6).startswith("~") for m in lines if m)  # an estimate once a task ended
    assert "batchdeps: 4 task(s): 4 built" in output  # the summary still comes


def test_log_lines_are_written_above_the_progress_line(project: Any) -> None:
    add_prod_pipeline(project)
    code, output = run_in_terminal(project, "run", "Pair", "--workers", "2", SLEEP="1")
    assert code == 0, output
    for line in output.splitlines():
        if "INFO" in line:
            # a log line starts after a cleared line, never glued to the end of a progress line
            assert not LINE.search(line.split(CLEAR)[0]), line


def test_no_progress_line_without_a_terminal(project: Any) -> None:
    add_prod_pipeline(project)
    done = project.run("run", "Pair", "--workers", "2", SLEEP="0.6", TERM="xterm")
    assert done.returncode == 0
    assert "\x1b" not in done.stderr + done.stdout
    assert "done," not in done.stderr
    assert "INFO start Slow()" in done.stderr  # plain log lines only


def test_no_progress_line_on_a_dumb_terminal(project: Any) -> None:
    add_prod_pipeline(project)
    code, output = run_in_terminal(project, "run", "Pair", "--workers", "2", SLEEP="0.6",
                                   TERM="dumb")
    assert code == 0, output
    assert CLEAR not in output and "done," not in output
    assert "INFO start Slow()" in output  # plain log lines only


def test_progress_off_in_config_and_for_json_logs(project: Any) -> None:
    add_prod_pipeline(project, 'progress = "off"\n')
    code, output = run_in_terminal(project, "run", "Pair", SLEEP="0.6")
    assert code == 0 and CLEAR not in output and "INFO start Slow()" in output
    add_prod_pipeline(project)
    (project.root / "out").exists() and [p.unlink() for p in (project.root / "out").glob("*.txt")]
    code, output = run_in_terminal(project, "run", "Pair", "--log-format", "json", SLEEP="0")
    assert code == 0 and CLEAR not in output and '"event": "run_finished"' in output


def test_line_counts_and_estimate_from_events() -> None:
    import batchdeps as bd

    class One(bd.Task):
        n = bd.IntParameter()

        def output(self) -> bd.Target:
            return bd.FileTarget(f"memory://progress-test/{self.n}.txt")

    plan = resolve([One(n=i) for i in range(5)])
    now = [100.0]
    progress = ProgressListener(stream=open(os.devnull, "w"), clock=lambda: now[0],
                                interval=3600)
    progress.on_event(RunStarted("r", plan, 2))
    for i in range(3):
        progress.on_event(TaskStarted("r", f"One(n={i})", "One", 1, "missing"))
    for i in range(2):
        progress.on_event(TaskFinished("r", f"One(n={i})", "One", "built", 1))
    now[0] = 110.0
    assert progress.line() == ("batchdeps: 2/5 done, 1 running, 2 pending, 0 failed"
                               " | 0:10 elapsed, ~0:15 left")
    progress.on_event(TaskFinished("r", "One(n=2)", "One", "failed", 1))
    assert "2/5 done, 0 running, 2 pending, 1 failed" in progress.line()


def test_done_failed_and_skipped_count_what_the_docs_say() -> None:
    """operations.md: done = built and already complete; failed = failed, missing inputs and
    lock waits that ran out; tasks not run because of those = skipped."""
    import io

    import batchdeps as bd
    from batchdeps.report.result import Status

    class Two(bd.Task):
        n = bd.IntParameter()

        def output(self) -> bd.Target:
            return bd.FileTarget(f"memory://progress-count/{self.n}.txt")

    statuses = [Status.BUILT, Status.COMPLETE, Status.BUILT_ELSEWHERE, Status.FAILED,
                Status.MISSING_INPUT, Status.LOCK_TIMEOUT, Status.UPSTREAM_FAILED,
                Status.BLOCKED]
    plan = resolve([Two(n=i) for i in range(len(statuses))])
    progress = ProgressListener(stream=io.StringIO(), clock=lambda: 5.0, interval=3600)
    progress.on_event(RunStarted("r", plan, 1))
    for i, status in enumerate(statuses):
        progress.on_event(TaskFinished("r", f"Two(n={i})", "Two", status, 1))
    assert progress.line().startswith(
        "batchdeps: 3/8 done, 0 running, 0 pending, 3 failed, 2 skipped")


def test_redrawn_twice_a_second_and_at_most_ten_times_a_second_on_events() -> None:
    import io

    import batchdeps as bd

    class Three(bd.Task):
        n = bd.IntParameter()

        def output(self) -> bd.Target:
            return bd.FileTarget(f"memory://progress-rate/{self.n}.txt")

    assert ProgressListener(stream=io.StringIO()).interval == 0.5  # the ticker: twice a second
    stream = io.StringIO()
    now = [0.0]
    progress = ProgressListener(stream=stream, clock=lambda: now[0], interval=3600)
    plan = resolve([Three(n=i) for i in range(50)])
    progress.on_event(RunStarted("r", plan, 1))
    for i in range(50):  # 50 events within 0.5 s: one redraw per 0.1 s at most
        now[0] = i * 0.01
        progress.on_event(TaskStarted("r", f"Three(n={i})", "Three", 1, "missing"))
    assert 5 <= stream.getvalue().count(CLEAR) <= 6
