"""A run that waits for a task held elsewhere, through real processes and a real lock server."""

from __future__ import annotations

from support.lockutil import LockProject, holder_json
from support.waiting import wait_for

from batchdeps.errors import ExitCode

SLOW = "Slow()"


def test_a_waiting_run_sees_the_task_built_elsewhere_before_the_lease_runs_out(
        lock_project: LockProject) -> None:
    """The other holder built the task but could not give its lease back (a lock server
    restart lost the release): the waiting run looks at the outputs and is done, long
    before the lease's TTL frees the task."""
    lock_project.write_config(ttl=120)
    server = lock_project.server
    other = {"host": "elsewhere", "pid": 4242, "run_id": "other-run"}
    status, granted = server.request("POST", "/v1/acquire",
                                     {"key": SLOW, "holder": other, "ttl": 120})
    assert status == 200 and granted["granted"], granted
    proc = lock_project.start("Slow")
    assert proc.stderr is not None
    wait_for(lambda: "waiting for Slow()" in proc.stderr.readline(), 60,
             "the run to wait for Slow()")
    out_dir = lock_project.root / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "slow.txt").write_text("built by the other run\n")  # its commit
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.OK, out + err
    assert "1 built elsewhere" in out
    assert lock_project.starts() == {}  # run() never ran here
    held = holder_json(server)(SLOW)
    assert held["held"] and held["holder"]["run_id"] == "other-run"  # the lease never freed
