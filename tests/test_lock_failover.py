"""Clients with several lock-server replicas: the order tried, stickiness, failover mid-run.

Real processes throughout: lock servers, a sick replica answering 503 (support/
sickreplica.py), `batchdeps` runs and commands. With SQLite one database file is served by
one server at a time, so a replica's death is played as in production with a shared
database: server A serves file F, is killed with -9 mid-run, and server B is started on F
on another port; the clients were given [A, B] from the start.
"""

from __future__ import annotations

import json
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.lockutil import BATCHDEPS, TOKEN, LockProject, LockServer
from support.pg import audit_counts
from support.sickreplica import SickReplica
from support.waiting import wait_for

import batchdeps as bd
from batchdeps.errors import LockAuthError, LockServerUnavailable
from batchdeps.locks.client import HttpLockProvider


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _nobody_at() -> str:
    """A URL where nothing listens: connections are refused."""
    return f"http://127.0.0.1:{_free_port()}"


@pytest.fixture
def sick() -> Iterator[SickReplica]:
    replica = SickReplica()
    yield replica
    replica.stop()


def _provider(urls: list[str], ttl: float = 5) -> HttpLockProvider:
    provider = HttpLockProvider(urls, token=TOKEN, ttl=ttl)
    provider.start()
    return provider


def _use_replicas(project: LockProject, urls: list[str], ttl: float = 2) -> None:
    (project.root / "config.toml").write_text(textwrap.dedent(f"""\
        [batchdeps]
        modules = ["pipelines"]

        [lock]
        url = {json.dumps(urls)}
        ttl = {ttl}
        """))


def _leases(server: LockServer) -> dict[str, int]:
    status, data = server.request("GET", "/v1/leases")
    assert status == 200, data
    return {lease["key"]: lease["token"] for lease in data["leases"]}


def _finish(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


# -- the order tried, and stickiness --------------------------------------------------------
def test_a_replica_answering_503_is_passed_over_once_and_the_next_one_kept(
        lock_server: LockServer, sick: SickReplica) -> None:
    provider = _provider([sick.url, lock_server.url])
    try:
        assert sick.seen() == 1  # start() asked it first, then moved on
        assert provider.url == lock_server.url
        leases = [provider.try_acquire(f"T{n}") for n in range(10)]
        assert all(leases)
        for lease in leases:
            provider.check(lease)  # type: ignore[arg-type]
            provider.release(lease)  # type: ignore[arg-type]
        provider.flush_releases()
        assert sick.seen() == 1  # sticky: never asked again while the other answers
        assert _leases(lock_server) == {}
    finally:
        provider.close()


def test_replicas_are_tried_in_the_order_given(lock_server: LockServer,
                                               sick: SickReplica) -> None:
    first = _provider([lock_server.url, sick.url])
    try:
        assert first.try_acquire("T") is not None
        assert sick.seen() == 0  # the first answers: the second is never asked
    finally:
        first.close()
    dead = _nobody_at()
    later = _provider([dead, sick.url, lock_server.url])
    try:
        assert later.url == lock_server.url
        assert sick.seen() == 1  # refused by the first, 503 from the second, then the third
    finally:
        later.close()


def test_the_client_keeps_to_the_replica_that_answers_when_an_earlier_one_returns(
        lock_server: LockServer) -> None:
    port = _free_port()
    provider = _provider([f"http://127.0.0.1:{port}", lock_server.url])
    try:
        assert provider.url == lock_server.url
        comeback = SickReplica(port)  # something answers on the first address again
        try:
            for n in range(5):
                assert provider.try_acquire(f"K{n}") is not None
            assert comeback.seen() == 0
        finally:
            comeback.stop()
    finally:
        provider.close()


def test_a_holder_renews_through_another_replica_when_its_own_is_down(
        tmp_path: Path) -> None:
    """Server A dies with the lease table; B opens the same file on another port: the
    heartbeat renews the lease through B with its fencing token unchanged."""
    db = tmp_path / "locks.db"
    a = LockServer(db).start()
    b_port = _free_port()
    b = LockServer(db)
    provider = _provider([a.url, f"http://127.0.0.1:{b_port}"], ttl=3)
    try:
        lease = provider.try_acquire("Held")
        assert lease is not None
        token = lease.fencing_token
        a.kill9()
        b.start(port=b_port)
        started = time.monotonic()
        wait_for(lambda: provider.url == b.url, timeout=10, what="a renewal through B")
        # Past a whole TTL after B came up the lease is still held, with the same token:
        # renewals went through B (without them B would have let it expire).
        wait_for(lambda: time.monotonic() - started > 5, timeout=10)
        assert not lease.lost, lease.lost_reason
        assert _leases(b) == {"Held": token}
        provider.check(lease)
    finally:
        provider.close()
        a.stop()
        b.stop()


def test_a_rate_limit_or_a_refused_token_is_not_a_reason_to_move_on(
        tmp_path: Path, sick: SickReplica) -> None:
    """429 says "slow down", not "sick": the same replica is asked again. 401 is the same on
    every replica: the request stops at once."""
    limited = LockServer(tmp_path / "locks.db", extra=["--rate-limit", "5"]).start()
    try:
        provider = _provider([limited.url, sick.url])
        try:
            for n in range(10):
                # this address's bucket emptied first: the client's requests meet 429s
                drained = [limited.request("GET", "/v1/whoami")[0] for _ in range(8)]
                assert 429 in drained
                assert provider.try_acquire(f"R{n}") is not None
        finally:
            provider.close()
        with pytest.raises(LockAuthError, match="refused the token"):
            HttpLockProvider([limited.url, sick.url], token="wrong-token", ttl=5).start()
        assert sick.seen() == 0
    finally:
        limited.stop()


def test_no_replica_answering_is_unavailable_naming_each(sick: SickReplica) -> None:
    dead = _nobody_at()
    with pytest.raises(LockServerUnavailable, match="cannot be reached") as info:
        HttpLockProvider([dead, sick.url], token=TOKEN, ttl=1).start()
    assert dead in str(info.value) and sick.url in str(info.value)
    assert "HTTP 503" in str(info.value)


# -- runs ---------------------------------------------------------------------------------
def test_kill_9_of_the_replica_in_use_mid_run_the_run_finishes_through_the_other(
        lock_project: LockProject) -> None:
    a = lock_project.server
    b_port = _free_port()
    b = LockServer(a.db)
    # B is a new process started after A's death; at load 30 that took longer than a 4 s
    # TTL, and the run then rightly gave its leases up. The TTL has to cover B's start.
    ttl = 30
    _use_replicas(lock_project, [a.url, f"http://127.0.0.1:{b_port}"], ttl=ttl)
    go_on = lock_project.root / "leaves-may-finish"  # the leaves run until it exists
    run = lock_project.start("Mid", "--g", "0", "--per", "2", "--workers", "2",
                             HOLD_LEAF=str(go_on))
    try:
        wait_for(lambda: len(lock_project.starts()) >= 2, what="both leaves to start")
        held = _leases(a)
        assert {"Leaf(n=0)", "Leaf(n=1)"} <= set(held), held
        a.kill9()
        b.start(port=b_port)
        came_up = time.monotonic()

        def renewed_through_b() -> bool:
            """B loaded the leases as granted at its start (before `came_up`): an expiry
            later than `came_up` plus a TTL is a renewal B made, with A's tokens."""
            sent = time.monotonic()
            status, data = b.request("GET", "/v1/leases")
            assert status == 200, data
            on_b = {lease["key"]: lease for lease in data["leases"]}
            return all(key in on_b and on_b[key]["token"] == held[key]
                       and on_b[key]["expires_in"] > came_up + ttl - sent
                       for key in ("Leaf(n=0)", "Leaf(n=1)"))

        wait_for(renewed_through_b, timeout=2 * ttl, what="the leaves' renewals through B")
        on_b = _leases(b)
        assert run.poll() is None, "the leaves should still be running"
        for key in ("Leaf(n=0)", "Leaf(n=1)"):
            assert on_b.get(key) == held[key], (key, on_b, held)
        go_on.touch()
        code, text = _finish(run)
    finally:
        if run.poll() is None:
            run.kill()
        b.stop()
    assert code == 0, text
    assert "lost" not in text, text
    starts = lock_project.starts()
    assert len(starts) == 3 and set(starts.values()) == {1}, starts  # 2 leaves and Mid
    assert (lock_project.root / "out" / "mid-0.txt").exists()
    assert b.proc is not None and b.proc.stderr is not None
    served = b.proc.stderr.read()
    assert "renew" in served, served  # B's count of requests served, logged at its stop
    lock_project.assert_no_overlap()


def test_every_replica_gone_past_the_ttl_is_exit_1_and_nothing_committed(
        lock_project: LockProject) -> None:
    a = lock_project.server
    _use_replicas(lock_project, [a.url, _nobody_at()], ttl=2)
    run = lock_project.start("Slow", SLEEP_SLOW="5")
    wait_for(lambda: "Slow()" in lock_project.starts(), what="Slow to start")
    a.kill9()
    code, text = _finish(run)
    assert code == 1, text
    assert "lost" in text and "cannot be reached" in text, text
    assert "Traceback" not in text
    assert not (lock_project.root / "out" / "slow.txt").exists()


def test_a_run_passes_over_a_sick_first_replica_and_its_history_arrives(
        lock_project: LockProject, sick: SickReplica) -> None:
    _use_replicas(lock_project, [sick.url, lock_project.server.url])
    code, text = lock_project.run("Top", "--groups", "1", "--workers", "2")
    assert code == 0, text
    assert set(lock_project.starts().values()) == {1}
    status, data = lock_project.server.request("GET", "/v1/history?limit=100")
    assert status == 200, data
    assert {record["task_id"] for record in data["tasks"]} >= {"Top(groups=1)", "Leaf(n=2)"}
    assert sick.seen() >= 2  # the lock client and the history sender each asked it once


class _Note(bd.Task):
    """Writes one file (bd.build's own run, in this process)."""

    path = bd.Parameter()

    def output(self):  # type: ignore[no-untyped-def]
        return bd.FileTarget(self.path)

    def run(self):  # type: ignore[no-untyped-def]
        with self.output().open("w") as out:
            out.write("note\n")


def test_bd_build_takes_a_list_of_replicas(lock_server: LockServer, sick: SickReplica,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setenv("BATCHDEPS_LOCK_TOKEN", TOKEN)
    target = tmp_path / "note.txt"
    result = bd.build(_Note(path=str(target)), lock_url=[sick.url, lock_server.url])
    assert result.exit_code == 0 and target.read_text() == "note\n"
    assert sick.seen() >= 1  # asked first, passed over


@pytest.mark.parametrize("command", [
    ["locks", "--json"], ["audit", "--json"], ["history", "--json"],
    ["locks", "release", "Nothing()"]])
def test_server_commands_fail_over_to_the_next_replica(
        lock_project: LockProject, sick: SickReplica, command: list[str]) -> None:
    lock_project.write_config()
    assert lock_project.run("Top", "--groups", "1")[0] == 0
    for first in (sick.url, _nobody_at()):
        done = subprocess.run(
            [BATCHDEPS, *command, "--lock-url", first, "--lock-url", lock_project.server.url],
            cwd=lock_project.root, env=lock_project.env(), capture_output=True, text=True,
            timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        if "release" in command:
            assert done.stdout.strip() == "not held: Nothing()"
            continue
        answer = json.loads(done.stdout)
        assert isinstance(answer, list)
        if command[0] != "locks":
            assert answer, command  # the audit log and the history of the run above


def test_status_asks_the_next_replica_who_holds_what(lock_project: LockProject,
                                                     sick: SickReplica) -> None:
    run = lock_project.start("Slow", SLEEP_SLOW="30")
    try:
        wait_for(lambda: "Slow()" in lock_project.starts(), what="Slow to start")
        done = subprocess.run(
            [BATCHDEPS, "status", "Slow", "--format", "json", "--lock-url", sick.url,
             "--lock-url", lock_project.server.url], cwd=lock_project.root,
            env=lock_project.env(), capture_output=True, text=True, timeout=60, check=False)
    finally:
        run.kill()
        run.wait()
    nodes = json.loads(done.stdout)["nodes"]
    assert [node["state"] for node in nodes] == ["running"], done.stderr


# -- bad values ---------------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [
    ("[]", "is an empty list"),
    ('["http://127.0.0.1:8765", "not a url"]', "[1] must look like http://HOST:PORT"),
    ('["http://127.0.0.1:8765", "http://127.0.0.1:8765/"]',
     "[1] names the same lock server as [0]"),
    ('["http://127.0.0.1:8765", 5]', "[1] must be a non-empty string"),
    ("5", "must be a URL or a list of URLs"),
])
def test_a_bad_list_of_replicas_is_exit_2_naming_the_entry(
        lock_project: LockProject, value: str, message: str) -> None:
    config = lock_project.root / "config.toml"
    config.write_text(config.read_text().replace(f'"{lock_project.server.url}"', value))
    code, output = lock_project.run("Top")
    assert code == 2, output
    assert "[lock] url" in output and message in output, output
    assert "Traceback" not in output
    assert lock_project.starts() == {}


def test_a_bad_or_repeated_lock_url_option_is_exit_2(lock_project: LockProject) -> None:
    url = lock_project.server.url
    cases = [
        (["--lock-url", url, "--lock-url", url], "names the same lock server"),
        (["--lock-url", url, "--lock-url", "ftp://x:1"], "[1] must look like http://HOST:PORT"),
    ]
    for args, message in cases:
        code, output = lock_project.run("Top", *args)
        assert code == 2, output
        assert "--lock-url" in output and message in output and "Traceback" not in output
        done = subprocess.run([BATCHDEPS, "locks", *args], cwd=lock_project.root,
                              env=lock_project.env(), capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    assert lock_project.starts() == {}


def test_replicas_from_the_environment_variable_are_comma_separated(
        lock_project: LockProject, sick: SickReplica) -> None:
    (lock_project.root / "config.toml").write_text('[batchdeps]\nmodules = ["pipelines"]\n')
    code, output = lock_project.run(
        "Top", "--groups", "1", BATCHDEPS_LOCK_URL=f"{sick.url}, {lock_project.server.url}")
    assert code == 0, output
    assert sick.seen() >= 1
    code, output = lock_project.run("Top", BATCHDEPS_LOCK_URL=f"{sick.url},,{sick.url}")
    assert code == 2, output
    assert "$BATCHDEPS_LOCK_URL [1] must be a non-empty string" in output, output


# -- two replicas on one PostgreSQL database -------------------------------------------------
RUNNERS = 4
GROUPS = 500  # Top(groups=500): 500 Mids of 3 Leaves each, and Top: 2,001 tasks


@pytest.mark.slow
def test_two_replicas_on_postgresql_survive_the_kill_9_of_one_under_four_runners(
        tmp_path: Path, pg_url: str) -> None:
    """4 runners x 2 workers spread over two replicas of one PostgreSQL database build
    2,001 tasks; one replica is killed with -9 mid-run. The runs finish, every task built
    exactly once, and no runner lost a lease: each moved to the other replica within one
    TTL. Both sides of that are checked: no client gave a lease up (it does after a whole
    TTL without a renewal), and the database let no lease run out or be taken over (on
    its own clock, whatever the runners believed)."""
    a = LockServer(pg_url).start()  # type: ignore[arg-type]
    b = LockServer(pg_url).start()  # type: ignore[arg-type]
    root = tmp_path / "project"
    root.mkdir()
    project = LockProject(root, a)
    _use_replicas(project, [a.url, b.url], ttl=5)
    orders = [[a.url, b.url], [b.url, a.url]]
    logs = [root / f"runner-{n}.log" for n in range(RUNNERS)]
    runs = []
    for n, log in enumerate(logs):  # output to files: a pipe nobody reads would stall a run
        with log.open("w") as out:
            runs.append(subprocess.Popen(
                [BATCHDEPS, "run", "Top", "--groups", str(GROUPS), "--workers", "2",
                 *[arg for url in orders[n % 2] for arg in ("--lock-url", url)]],
                cwd=root, env=project.env(), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True))
    try:
        wait_for(lambda: len(project.starts()) >= GROUPS, timeout=120,
                 what="a quarter of the tasks to start")
        a.kill9()
        codes = [run.wait(timeout=600) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
        a.stop()
        b.stop()
    results = [(code, log.read_text()) for code, log in zip(codes, logs)]
    for code, text in results:
        assert code == 0, text[-3000:]
        assert "lost" not in text, text[-3000:]
    moved = [text for code, text in results if f"using {b.url} from now on" in text]
    assert len(moved) == RUNNERS // 2, [text[-1000:] for _, text in results]
    events = audit_counts(pg_url)
    assert "expire" not in events and "takeover" not in events, events
    assert events["grant"] >= GROUPS * 4 + 1
    starts = project.starts()
    assert len(starts) == GROUPS * 4 + 1
    assert set(starts.values()) == {1}, {k: v for k, v in starts.items() if v != 1}
    project.assert_no_overlap()
