"""End to end: real lock-server and `batchdeps run` processes, kill -9, SIGSTOP, restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from support.lockutil import BATCHDEPS, LockProject, holder_json
from support.waiting import wait_for

TOP_TASKS = 4 * 3 + 4 + 1  # leaves, mids, top


def _finish(procs: list[subprocess.Popen[str]], timeout: float = 60) -> list[tuple[int, str]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append((proc.returncode, out + err))
    return results


def _started(project: LockProject, task_id: str) -> bool:
    return project.starts().get(task_id, 0) > 0


def test_three_runners_with_two_workers_run_every_task_exactly_once(
        lock_project: LockProject) -> None:
    lock_project.write_config(ttl=10)  # a loaded machine must not make leases lapse here
    procs = [lock_project.start("Top", "--workers", "2", SLEEP_LEAF="0.1", SLEEP_MID="0.05")
             for _ in range(3)]
    for code, text in _finish(procs):
        assert code == 0, text
    starts = lock_project.starts()
    assert len(starts) == TOP_TASKS
    assert set(starts.values()) == {1}, starts
    lock_project.assert_no_overlap()
    assert (lock_project.root / "out" / "top.txt").exists()


def test_kill_9_of_a_holder_lets_another_worker_take_over_within_about_one_lease(
        lock_project: LockProject) -> None:
    ttl = 2.0
    first = lock_project.start("Slow", SLEEP_SLOW="60")
    wait_for(lambda: _started(lock_project, "Slow()"), what="first run to start Slow")
    second = lock_project.start("Slow", SLEEP_SLOW="0")
    time.sleep(0.5)  # the second run is now waiting for the lease
    os.killpg(first.pid, signal.SIGKILL)
    killed_at = time.time()
    first.communicate()
    code, text = _finish([second])[0]
    assert code == 0, text
    taken = [when for event, task, pid, when in lock_project.events()
             if event == "start" and pid != first.pid]
    assert len(taken) == 1
    assert taken[0] - killed_at < ttl + 5.0  # one lease plus polling and start-up
    content = (lock_project.root / "out" / "slow.txt").read_text()
    assert f"by {first.pid}" not in content


def test_sigstopped_holder_resumed_after_its_lease_cannot_commit(
        lock_project: LockProject) -> None:
    paused = lock_project.start("Slow", SLEEP_SLOW="3")
    wait_for(lambda: _started(lock_project, "Slow()"), what="the first run to start Slow")
    os.killpg(paused.pid, signal.SIGSTOP)
    try:
        time.sleep(2.0 + 1.0)  # past the 2 s lease
        code, text = lock_project.run("Slow", SLEEP_SLOW="0")
        assert code == 0, text
        new_output = (lock_project.root / "out" / "slow.txt").read_text()
    finally:
        os.killpg(paused.pid, signal.SIGCONT)
    code, text = _finish([paused])[0]
    # The resumed run finished run() but its commit was refused; the other run's output
    # stays, and the resumed run then sees the task built elsewhere.
    assert (lock_project.root / "out" / "slow.txt").read_text() == new_output
    assert f"by {paused.pid}" not in new_output
    assert "lost" in text and "Slow()" in text, text
    ends = [pid for event, task, pid, _ in lock_project.events() if event == "end"]
    assert paused.pid in ends  # its run() did complete, so the refusal was the fence
    assert code == 0, text
    leftovers = list((lock_project.root / "out").rglob("*.tmp*"))
    assert not [p for p in leftovers if p.is_file()], leftovers


def test_kill_9_of_the_server_mid_run_then_restart_runs_nothing_twice(
        lock_project: LockProject) -> None:
    # The runs retry for one TTL while the server is away; a restart is a new process,
    # which took over 8 s at load 30 here. Nothing waits for a lease to run out, so a long
    # TTL costs no time: it only has to cover the restart.
    lock_project.write_config(ttl=60)
    server = lock_project.server
    procs = [lock_project.start("Top", "--workers", "2", SLEEP_LEAF="0.3") for _ in range(3)]
    wait_for(lambda: len(lock_project.starts()) >= 3, what="some tasks to start")
    server.kill9()
    time.sleep(0.5)
    server.start(port=server.port)
    for code, text in _finish(procs, timeout=90):
        assert code == 0, text
    starts = lock_project.starts()
    assert len(starts) == TOP_TASKS
    assert set(starts.values()) == {1}, starts
    lock_project.assert_no_overlap()


def test_wrong_token_is_refused_and_nothing_runs(lock_project: LockProject) -> None:
    code, text = lock_project.run("Top", BATCHDEPS_LOCK_TOKEN="not-the-token")
    assert code == 1, text
    assert "refused the token" in text
    assert "Traceback" not in text
    assert lock_project.events() == []
    assert not (lock_project.root / "out").exists()


def test_server_down_at_start_is_a_clear_error_and_nothing_runs(
        lock_project: LockProject) -> None:
    lock_project.server.stop()
    code, text = lock_project.run("Top")
    assert code == 1, text
    assert "cannot be reached" in text and lock_project.server.url in text
    assert "Traceback" not in text
    assert lock_project.events() == []
    assert not (lock_project.root / "out").exists()


def test_wait_timeout_from_flag_and_config_exits_4_naming_the_holder(
        lock_project: LockProject) -> None:
    holder = lock_project.start("Slow", SLEEP_SLOW="60")
    try:
        wait_for(lambda: _started(lock_project, "Slow()"), what="the holder to start Slow")
        code, text = lock_project.run("Slow", "--wait-timeout", "1")
        assert code == 4, text
        assert f"pid {holder.pid}" in text and "Slow()" in text, text

        listing = subprocess.run(check=False, args=[BATCHDEPS, "locks"], cwd=lock_project.root,
                                 env=lock_project.env(), capture_output=True, text=True)
        assert listing.returncode == 0, listing.stderr
        assert "Slow()" in listing.stdout and f"pid {holder.pid}" in listing.stdout

        lock_project.write_config(extra="wait_timeout = 1\n")
        code, text = lock_project.run("Slow")
        assert code == 4, text
        assert f"pid {holder.pid}" in text
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.communicate()
    assert lock_project.starts() == {"Slow()": 1}


def test_resource_pool_caps_concurrency_across_runners(lock_project: LockProject) -> None:
    lock_project.write_config(ttl=10, extra="\n[resources]\nwarehouse = 2\n")
    procs = [lock_project.start("AllPooled", "--workers", "3", SLEEP_POOLED="0.4")
             for _ in range(2)]
    for code, text in _finish(procs):
        assert code == 0, text
    spans = [span for task, runs in lock_project.intervals().items()
             if task.startswith("Pooled(") for span in runs]
    assert len(spans) == 6
    points = sorted([(start, 1) for start, _, _ in spans] + [(end, -1) for _, end, _ in spans])
    running = peak = 0
    for _, change in points:
        running += change
        peak = max(peak, running)
    assert peak <= 2
    assert not holder_json(lock_project.server)("resource:warehouse:0")["held"]


def test_server_gone_for_good_mid_run_stops_the_run_without_committing(
        lock_project: LockProject) -> None:
    running = lock_project.start("Slow", "--workers", "2", SLEEP_SLOW="3")
    wait_for(lambda: _started(lock_project, "Slow()"), what="the run to start Slow")
    lock_project.server.kill9()
    code, text = _finish([running])[0]
    assert code == 1, text
    assert "lost" in text and "cannot be reached" in text, text
    assert "Traceback" not in text
    assert not (lock_project.root / "out" / "slow.txt").exists()


def test_lease_lost_during_a_retry_delay_is_not_used_for_the_retry(
        lock_project: LockProject) -> None:
    """A run paused past its lease between two attempts must not start the retry on the
    lost lease while the new holder runs the task."""
    paused = lock_project.start("Flaky", FLAKY_RETRY_DELAY="6", SLEEP_FLAKY="0")
    wait_for(lambda: any(event == "fail" for event, *_ in lock_project.events()),
             what="the first attempt to fail")
    os.killpg(paused.pid, signal.SIGSTOP)
    try:
        time.sleep(2.0 + 1.0)  # past the 2 s lease; the retry is due 3 to 6 s after the failure
        taker = lock_project.start("Flaky", SLEEP_FLAKY="4")
        wait_for(lambda: _started(lock_project, "Flaky()"), what="the second run to start Flaky")
    finally:
        os.killpg(paused.pid, signal.SIGCONT)
    for code, text in _finish([paused, taker]):
        assert code == 0, text
    lock_project.assert_no_overlap()
    assert lock_project.starts() == {"Flaky()": 1}  # the taker's; the failed one journals "fail"
    assert f"by {taker.pid}" in (lock_project.root / "out" / "flaky.txt").read_text()
