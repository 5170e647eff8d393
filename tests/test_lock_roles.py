"""Roles on the real lock server: a tokens file, reader/worker/admin routes, SIGHUP reload,
forced release and the audit log through `batchdeps locks release` and `batchdeps audit`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.lockutil import BATCHDEPS, LockServer
from support.waiting import wait_for

from batchdeps.errors import LockAuthError
from batchdeps.locks.client import HttpLockProvider

READER = "reader-token-0123456789abcdef"
WORKER = "worker-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
HOLDER = {"host": "etl-1", "pid": 4242, "run_id": "r1"}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def write_tokens(path: Path, **tokens: str) -> None:
    path.write_text("# role and SHA-256 of the token\n" + "".join(
        f"{role} {sha(token)}\n" for role, token in tokens.items()))


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    write_tokens(path, reader=READER, worker=WORKER, admin=ADMIN)
    return path


@pytest.fixture
def server(tmp_path: Path, tokens_file: Path) -> Iterator[LockServer]:
    server = LockServer(tmp_path / "locks.db", token="",
                        extra=["--tokens-file", str(tokens_file)]).start()
    yield server
    server.stop()


def cli(server: LockServer, *args: str, token: str = "", token_file: str = "",
        ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("BATCHDEPS_LOCK_TOKEN", "BATCHDEPS_LOCK_TOKEN_FILE", "BATCHDEPS_CONFIG")}
    if token:
        env["BATCHDEPS_LOCK_TOKEN"] = token
    if token_file:
        env["BATCHDEPS_LOCK_TOKEN_FILE"] = token_file
    return subprocess.run([BATCHDEPS, *args, "--lock-url", server.url], env=env,
                          capture_output=True, text=True, timeout=60, check=False,
                          cwd=server.db.parent)


def acquire(server: LockServer, key: str, token: str = WORKER) -> dict:
    status, body = server.request("POST", "/v1/acquire", {"key": key, "holder": HOLDER,
                                                          "ttl": 60}, token=token)
    assert status == 200 and body["granted"], body
    return body


def test_each_role_reaches_only_its_routes(server: LockServer) -> None:
    lease = acquire(server, "T")
    assert server.request("POST", "/v1/acquire", {"key": "U", "holder": HOLDER, "ttl": 60},
                          token=READER)[0] == 403
    # A reader sees the leases, but never a fencing token (with the holder it would let
    # anyone release the lease).
    status, body = server.request("GET", "/v1/leases", token=READER)
    assert status == 200 and body["leases"][0]["key"] == "T"
    assert "token" not in body["leases"][0]
    assert "token" not in server.request("POST", "/v1/holder", {"key": "T"}, token=WORKER)[1]
    admin_view = server.request("GET", "/v1/leases", token=ADMIN)[1]
    assert admin_view["leases"][0]["token"] == lease["token"]
    for token in (READER, WORKER):
        assert server.request("POST", "/v1/force-release", {"keys": ["T"]}, token=token)[0] == 403
        assert server.request("GET", "/v1/audit", token=token)[0] == 403
    assert server.request("GET", "/v1/whoami", token=READER)[1] == {"roles": ["reader"]}
    assert server.request("GET", "/v1/whoami", token=ADMIN)[1] == {
        "roles": ["reader", "worker", "admin"]}
    assert server.request("GET", "/v1/health", token="")[0] == 200
    assert server.request("GET", "/v1/leases", token="")[0] == 401


def test_a_run_needs_the_worker_role(server: LockServer) -> None:
    reader = HttpLockProvider(server.url, token=READER, ttl=5)
    with pytest.raises(LockAuthError, match="needs worker"):
        reader.start()
    worker = HttpLockProvider(server.url, token=WORKER, ttl=5)
    worker.start()
    lease = worker.try_acquire("T")
    assert lease is not None
    worker.close()


def test_the_client_reads_its_token_from_a_file(server: LockServer, tmp_path: Path) -> None:
    acquire(server, "T")
    secret = tmp_path / "secret"
    secret.write_text(READER + "\n")
    done = cli(server, "locks", "--json", token_file=str(secret))
    assert done.returncode == 0, done.stderr
    assert [lease["key"] for lease in json.loads(done.stdout)] == ["T"]
    assert READER not in done.stdout + done.stderr
    table = cli(server, "locks", token_file=str(secret))
    header, row = table.stdout.splitlines()
    assert header.split()[-1] == "TOKEN" and row.split()[-1] == "-"  # no fencing token


def test_sighup_rereads_the_tokens_file(server: LockServer, tokens_file: Path) -> None:
    new_admin = "another-admin-token-0123456789"
    assert server.request("GET", "/v1/whoami", token=new_admin)[0] == 401
    write_tokens(tokens_file, admin=new_admin)  # the old tokens are gone from the file
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: server.request("GET", "/v1/whoami", token=new_admin)[0] == 200,
             timeout=10, what="the new token to be accepted")
    assert server.request("GET", "/v1/whoami", token=ADMIN)[0] == 401
    tokens_file.write_text("admin not-a-hash\n")  # a broken file keeps the tokens in force
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: server.request("GET", "/v1/whoami", token=new_admin)[0] == 200, timeout=5)
    assert server.alive()


def test_locks_release_frees_stale_leases_for_an_admin_only(server: LockServer) -> None:
    for key in ("Stuck(n=1)", "Stuck(n=2)", "Other()"):
        acquire(server, key)
    refused = cli(server, "locks", "release", "Stuck(n=1)", token=WORKER)
    assert refused.returncode == 1 and "needs admin" in refused.stderr
    assert "Traceback" not in refused.stderr
    done = cli(server, "locks", "release", "Stuck(n=1)", "Gone()", "--reason", "host died",
               token=ADMIN)
    assert done.returncode == 0, done.stderr
    assert "released Stuck(n=1) (was held by host etl-1 pid 4242 run r1" in done.stdout
    assert "not held: Gone()" in done.stdout
    # granted just now: its holder may commit on its own answer for half its TTL, so the
    # key goes to nobody until then (how long is said), and is not released twice
    closed_for = float(re.search(r"nobody else gets it for ([0-9.]+) s", done.stdout)[1])
    assert 25 < closed_for <= 30
    answer = server.request("POST", "/v1/holder", {"key": "Stuck(n=1)"}, token=READER)[1]
    assert answer["held"] and answer["holder_text"].startswith("nobody (released by force")
    assert "not held: Stuck(n=1)" in cli(server, "locks", "release", "Stuck(n=1)",
                                         token=ADMIN).stdout
    by_holder = cli(server, "locks", "release", "--holder", "etl-1:4242", token=ADMIN)
    assert by_holder.returncode == 0, by_holder.stderr
    assert "Stuck(n=2)" in by_holder.stdout and "Other()" in by_holder.stdout
    listed = server.request("GET", "/v1/leases", token=READER)[1]["leases"]
    assert sorted(lease["key"] for lease in listed) == ["Other()", "Stuck(n=1)", "Stuck(n=2)"]
    assert all(lease["holder_text"].startswith("nobody") for lease in listed)
    usage = cli(server, "locks", "release", token=ADMIN)
    assert usage.returncode == 2 and "--holder" in usage.stderr
    bad = cli(server, "locks", "release", "--holder", "etl-1", token=ADMIN)
    assert bad.returncode == 2 and "HOST:PID" in bad.stderr
    audit = cli(server, "audit", "--json", token=ADMIN)
    assert audit.returncode == 0, audit.stderr
    forced = [line for line in json.loads(audit.stdout) if line["event"] == "force-release"]
    assert {line["key"] for line in forced} == {"Stuck(n=1)", "Stuck(n=2)", "Other()"}
    assert all(line["address"] == "127.0.0.1" for line in forced)
    assert any(line["detail"] == "host died" for line in forced)


def test_audit_records_failed_authentications_without_the_token(server: LockServer) -> None:
    lease = acquire(server, "T")
    server.request("POST", "/v1/release", {"key": "T", "token": lease["token"],
                                           "holder": HOLDER}, token=WORKER)
    wrong = "wrong-token-that-must-never-be-stored"
    assert server.request("GET", "/v1/leases", token=wrong)[0] == 401
    refused = cli(server, "audit", token=READER)
    assert refused.returncode == 1 and "needs admin" in refused.stderr
    done = cli(server, "audit", "--since", "1h", token=ADMIN)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["TIME", "EVENT", "KEY"]
    events = [line.split()[2] for line in lines[1:]]  # date, time, event
    assert events[:3] == ["auth-failure", "release", "grant"]
    assert "127.0.0.1" in lines[1] and "GET /v1/leases" in lines[1]
    assert wrong not in done.stdout
    assert wrong.encode() not in server.db.read_bytes()
    wal = Path(str(server.db) + "-wal")
    assert not wal.exists() or wrong.encode() not in wal.read_bytes()
    bad = cli(server, "audit", "--since", "yesterday-ish", token=ADMIN)
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_keys_and_holders_are_printed_with_control_characters_escaped(
        server: LockServer) -> None:
    forged = "Real()\nForged()  host evil pid 1 run x  0.1s  59.9s  1"
    holder = {"host": "etl\x1b[31m-red", "pid": 7, "run_id": "r\u202eun"}
    status, _ = server.request("POST", "/v1/acquire", {"key": forged, "holder": holder,
                                                       "ttl": 60}, token=WORKER)
    assert status == 200
    listing = cli(server, "locks", token=ADMIN)
    assert listing.returncode == 0, listing.stderr
    assert len(listing.stdout.splitlines()) == 2  # the header and one lease: no forged row
    assert "Real()\\x0aForged()" in listing.stdout
    assert "etl\\x1b[31m-red" in listing.stdout and "r\\u202eun" in listing.stdout
    assert "\x1b" not in listing.stdout and "\u202e" not in listing.stdout
    released = cli(server, "locks", "release", forged, token=ADMIN)
    assert released.returncode == 0 and "\x1b" not in released.stdout
    assert len(released.stdout.splitlines()) == 1
    audit = cli(server, "audit", token=ADMIN)
    assert "\x1b" not in audit.stdout
    assert len(audit.stdout.splitlines()) == 3  # header, grant, force-release


def test_short_or_missing_tokens_are_refused_off_loopback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("BATCHDEPS_LOCK_TOKEN", "BATCHDEPS_LOCK_TOKEN_FILE")}
    base = [BATCHDEPS, "lock-server", "--host", "0.0.0.0", "--port", "0",
            "--db", str(tmp_path / "l.db")]
    short = subprocess.run(base, env={**env, "BATCHDEPS_LOCK_TOKEN": "too-short"},
                           capture_output=True, text=True, timeout=30, check=False)
    assert short.returncode == 2 and "shorter than 16 characters" in short.stderr
    assert "too-short" not in short.stderr
    none = subprocess.run(base, env=env, capture_output=True, text=True, timeout=30,
                          check=False)
    assert none.returncode == 2 and "without a token" in none.stderr
    bad_file = tmp_path / "tokens"
    bad_file.write_text("superuser " + sha(ADMIN) + "\n")
    broken = subprocess.run(base + ["--tokens-file", str(bad_file)], env=env,
                            capture_output=True, text=True, timeout=30, check=False)
    assert broken.returncode == 2 and "line 1" in broken.stderr and "ROLE" in broken.stderr
