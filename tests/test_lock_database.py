"""The lock server's database through the real server: damage is refused, one server per
file whatever path names it, tokens stay above every earlier one, rows do not pile up."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from support.lockutil import BATCHDEPS, TOKEN, LockServer
from support.waiting import wait_for

HOLDER = {"host": "etl-1", "pid": 1, "run_id": "r"}


def start_fails(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BATCHDEPS, "lock-server", "--port", "0", "--db", str(db)],
                          env={**os.environ, "BATCHDEPS_LOCK_TOKEN": TOKEN},
                          capture_output=True, text=True, timeout=30, check=False)


def grant(server: LockServer, key: str, ttl: float = 60) -> int:
    status, body = server.request("POST", "/v1/acquire", {"key": key, "holder": HOLDER,
                                                          "ttl": ttl})
    assert status == 200 and body["granted"], body
    return int(body["token"])


@pytest.mark.parametrize("damage", ["truncated", "truncated beside its WAL", "zeroed", "wal"])
def test_a_damaged_database_is_refused_with_exit_2_and_left_alone(tmp_path: Path,
                                                                  damage: str) -> None:
    db = tmp_path / "locks.db"
    server = LockServer(db).start()
    for n in range(200):
        grant(server, f"Task(n={n}, pad={'x' * 300})")
    server.kill9()  # the grants are in the WAL, not checkpointed
    wal = Path(str(db) + "-wal")
    if damage == "truncated":
        server.proc = None
        LockServer(db).start().stop()  # a clean stop checkpoints everything into the file
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    elif damage == "truncated beside its WAL":  # the WAL holds the grants: a close of a
        db.write_bytes(db.read_bytes()[:4096 + 100])  # read-write connection would write
    elif damage == "zeroed":
        db.write_bytes(b"\0" * db.stat().st_size)
    else:
        data = bytearray(wal.read_bytes())
        data[0:4] = b"\0\0\0\0"
        wal.write_bytes(bytes(data))
    before = db.read_bytes(), wal.read_bytes() if wal.exists() else b""
    done = start_fails(db)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not re-initialised" in done.stderr and "Traceback" not in done.stderr
    assert "listening" not in done.stdout
    assert (db.read_bytes(), wal.read_bytes() if wal.exists() else b"") == before


def test_a_second_server_on_the_same_file_is_refused_through_a_symlink_or_relative_path(
        tmp_path: Path) -> None:
    db = tmp_path / "data" / "locks.db"
    db.parent.mkdir()
    server = LockServer(db).start()
    try:
        link = tmp_path / "link.db"
        link.symlink_to(db)
        for other in (link, tmp_path / "data" / ".." / "data" / "locks.db"):
            done = start_fails(other)
            assert done.returncode == 2 and "another lock server is already using" in done.stderr
        assert server.alive()
        grant(server, "T")
    finally:
        server.stop()


def test_tokens_stay_above_the_old_ones_after_starting_from_a_fresh_file(
        tmp_path: Path) -> None:
    old_db = tmp_path / "locks.db"
    server = LockServer(old_db).start()
    issued = [grant(server, f"T{n}") for n in range(20)]
    server.stop()
    old_db.rename(tmp_path / "damaged.db")  # the operator moves a damaged file away
    fresh = LockServer(old_db).start()
    try:
        assert grant(fresh, "T0") > max(issued)
    finally:
        fresh.stop()


def test_released_and_expired_leases_leave_no_rows(tmp_path: Path) -> None:
    db = tmp_path / "locks.db"
    server = LockServer(db).start()
    try:
        for n in range(30):
            token = grant(server, f"Released(n={n})")
            server.request("POST", "/v1/release", {"key": f"Released(n={n})", "token": token,
                                                   "holder": HOLDER})
        for n in range(30):
            grant(server, f"Expiring(n={n})", ttl=1)

        def rows() -> int:
            other = sqlite3.connect(db)
            try:
                return int(other.execute("SELECT COUNT(*) FROM leases").fetchone()[0])
            finally:
                other.close()

        wait_for(lambda: rows() == 0, timeout=20, what="expired rows to be deleted")
        assert server.request("GET", "/v1/health", token="")[1] == {
            "ok": True, "database": "sqlite", "answers": True}
        status, audit = server.request("GET", "/v1/audit")
        events = [line["event"] for line in audit["audit"]]
        assert events.count("expire") == 30 and events.count("release") == 30
    finally:
        server.stop()
