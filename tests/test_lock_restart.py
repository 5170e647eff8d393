"""docs/locks.md's promise: a restart of the lock server within the TTL goes unnoticed."""

from __future__ import annotations

import subprocess
import time

from support.lockutil import LockProject
from support.waiting import wait_for

TOP_TASKS = 4 * 3 + 4 + 1  # leaves, mids, top


def test_a_server_restart_within_the_ttl_goes_unnoticed_by_two_runners(
        lock_project: LockProject) -> None:
    lock_project.write_config(ttl=12)
    server = lock_project.server
    procs = [lock_project.start("Top", "--workers", "2", SLEEP_LEAF="0.4", SLEEP_MID="0.2")
             for _ in range(2)]
    wait_for(lambda: len(lock_project.starts()) >= 4, what="some tasks to start")
    server.kill9()
    time.sleep(4)  # down for a third of the TTL: tasks end and want to release meanwhile
    server.start(port=server.port)
    results: list[tuple[int, str]] = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        results.append((proc.returncode, out + err))
    for code, text in results:
        assert code == 0, text
        assert "could not release" not in text, text
        assert "lost" not in text, text
        assert "cannot be reached" not in text, text
    starts = lock_project.starts()
    assert len(starts) == TOP_TASKS and set(starts.values()) == {1}, starts
    lock_project.assert_no_overlap()
    status, body = server.request("GET", "/v1/leases")
    assert status == 200 and body["leases"] == []  # every release arrived in the end
