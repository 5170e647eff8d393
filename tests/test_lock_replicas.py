"""Lock-server replicas on one PostgreSQL database, end to end with real processes: runs
spread over two replicas, kill -9 of a replica mid-run, a PostgreSQL restart within a TTL,
and an outage past it."""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.lockutil import BATCHDEPS, TOKEN, LockProject, LockServer
from support.pg import PgCluster, audit_counts
from support.waiting import wait_for

GROUPS, SMALL_GROUPS = 500, 8
BIG = GROUPS * 4 + 1  # 2,001 tasks: three leaves and a mid per group, the top
SMALL = SMALL_GROUPS * 4 + 1


def _postmaster_started(url: str) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return float(conn.execute(
            "SELECT extract(epoch FROM pg_postmaster_start_time())").fetchone()[0])


def _task_of(output: str) -> str:
    """The task id whose output file is `output` (the lock test pipeline's names)."""
    stem = output.removesuffix(".txt")
    if stem == "top":
        return f"Top(groups={SMALL_GROUPS})"
    family, number = stem.split("-")
    return f"Leaf(n={number})" if family == "leaf" else f"Mid(g={number}, per=3)"


def _replicas(url: str, count: int = 2) -> list[LockServer]:
    return [LockServer(url).start() for _ in range(count)]  # type: ignore[arg-type]


@pytest.fixture
def replicas(pg_url: str) -> Iterator[list[LockServer]]:
    servers = _replicas(pg_url)
    yield servers
    for server in servers:
        server.stop()


def _project(tmp_path: Path, servers: list[LockServer], ttl: float) -> LockProject:
    root = tmp_path / "project"
    root.mkdir()
    project = LockProject(root, servers[0])
    urls = ", ".join(f'"{server.url}"' for server in servers)
    (root / "config.toml").write_text(
        f'[batchdeps]\nmodules = ["pipelines"]\n\n[lock]\nurl = [{urls}]\nttl = {ttl}\n')
    return project


class Run:
    """A `batchdeps run` in the background, its output going to a file (a pipe nobody reads
    while another run is waited for would fill up and stop the run writing to it)."""

    def __init__(self, project: LockProject, args: list[str], env: dict[str, str]) -> None:
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([BATCHDEPS, "run", *args], cwd=project.root,
                                     env=project.env(**env), stdout=self.log,
                                     stderr=subprocess.STDOUT, text=True)

    def finish(self, timeout: float) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        self.log.seek(0)
        text = self.log.read()
        self.log.close()
        return code, text


def _start(project: LockProject, servers: list[LockServer], first: int, groups: int,
           **env: str) -> Run:
    """A run whose replica list starts at servers[first] (--lock-url, repeated)."""
    order = servers[first:] + servers[:first]
    urls = [arg for server in order for arg in ("--lock-url", server.url)]
    return Run(project, ["Top", "--groups", str(groups), "--workers", "2", *urls], env)


def _finish(runs: list[Run], timeout: float) -> list[tuple[int, str]]:
    return [run.finish(timeout) for run in runs]


def _exactly_once(project: LockProject, tasks: int) -> None:
    starts = project.starts()
    assert len(starts) == tasks
    assert set(starts.values()) == {1}, {t: n for t, n in starts.items() if n != 1}
    project.assert_no_overlap()
    assert (project.root / "out" / "top.txt").exists()


@pytest.mark.slow
def test_four_runners_over_two_replicas_build_2000_tasks_exactly_once(
        tmp_path: Path, replicas: list[LockServer]) -> None:
    project = _project(tmp_path, replicas, ttl=20)
    procs = [_start(project, replicas, n % 2, GROUPS) for n in range(4)]
    for code, text in _finish(procs, timeout=600):
        assert code == 0, text[-3000:]
    _exactly_once(project, BIG)
    for server in replicas:  # both served leases, and both see every grant
        status, audit = server.request("GET", "/v1/audit?limit=10000")
        assert status == 200
        assert len({line["key"] for line in audit["audit"] if line["event"] == "grant"}) \
            >= BIG
    seen = []
    for server in replicas:  # one history, whichever replica is asked
        status, history = server.request("GET", "/v1/history?limit=10000")
        assert status == 200
        seen.append(sorted((r["task_id"], r["status"]) for r in history["tasks"]))
    assert seen[0] == seen[1]
    assert len([1 for _, status in seen[0] if status == "built"]) == BIG


def test_kill_9_of_one_replica_mid_run_the_runs_finish_exactly_once(
        tmp_path: Path, pg_url: str, replicas: list[LockServer]) -> None:
    project = _project(tmp_path, replicas, ttl=4)
    procs = [_start(project, replicas, n % 2, SMALL_GROUPS, SLEEP_LEAF="0.2")
             for n in range(4)]
    wait_for(lambda: len(project.starts()) >= 6, what="some tasks to start")
    replicas[0].kill9()
    for code, text in _finish(procs, timeout=120):
        assert code == 0, text[-3000:]
    _exactly_once(project, SMALL)
    status, audit = replicas[1].request("GET", "/v1/audit?limit=10000")
    assert status == 200
    assert not [line for line in audit["audit"] if line["event"] == "takeover"], \
        "a holder lost its lease when its replica died"
    events = audit_counts(pg_url)
    # No lease ran out on the database's clock: each holder's renewals reached the other
    # replica within its TTL.
    assert "expire" not in events and "takeover" not in events, events
    assert events["grant"] >= SMALL


def test_a_postgresql_restart_within_a_ttl_goes_unnoticed(
        tmp_path: Path, own_pg_cluster: PgCluster) -> None:
    from batchdeps.locks.store.postgres import init_database

    url = own_pg_cluster.fresh_url()
    init_database(url)
    servers = _replicas(url)
    try:
        project = _project(tmp_path, servers, ttl=10)
        procs = [_start(project, servers, n % 2, SMALL_GROUPS, SLEEP_LEAF="0.2")
                 for n in range(2)]
        started = _postmaster_started(url)
        wait_for(lambda: len(project.starts()) >= 4, what="some tasks to start")
        own_pg_cluster.restart()
        assert _postmaster_started(url) > started
        for code, text in _finish(procs, timeout=120):
            assert code == 0, text[-3000:]
            assert "lost" not in text, text[-3000:]
        _exactly_once(project, SMALL)
        for server in servers:
            assert server.request("GET", "/v1/health", token="")[1]["answers"]
        events = audit_counts(url)
        assert "expire" not in events and "takeover" not in events, events
    finally:
        for server in servers:
            server.stop()


def test_a_postgresql_outage_past_the_ttl_stops_the_runs_without_committing(
        tmp_path: Path, own_pg_cluster: PgCluster) -> None:
    from batchdeps.locks.store.postgres import init_database

    url = own_pg_cluster.fresh_url()
    init_database(url)
    servers = _replicas(url)
    try:
        project = _project(tmp_path, servers, ttl=2)
        procs = [_start(project, servers, n % 2, SMALL_GROUPS, SLEEP_LEAF="0.5")
                 for n in range(2)]
        wait_for(lambda: len(project.starts()) >= 4, what="some tasks to start")
        own_pg_cluster.stop("immediate")
        time.sleep(1.0)  # a commit whose fence check answered just before has landed
        out = project.root / "out"
        committed = sorted(p.name for p in out.glob("*.txt"))
        status, health = servers[0].request("GET", "/v1/health", token="")
        assert status == 503 and health == {"ok": False, "database": "postgresql",
                                            "answers": False}
        lost_tasks: set[str] = set()
        for code, text in _finish(procs, timeout=120):
            assert code == 1 and "Traceback" not in text, text[-3000:]
            # Every run stops the same way: an acquire (the leases it needs next, or those
            # of tasks whose leases ran out) is retried for one TTL while both replicas
            # answer 503, saying their database is away, and then stops the run.
            stopped = re.search(r"batchdeps: error: the lock server's 2 replicas cannot be "
                                r"reached \((.*); each tried in turn for 2 s\); each runs, "
                                r"but cannot serve the request for the reason it gives$",
                                text, re.MULTILINE)
            assert stopped, text[-3000:]
            _both_answer_their_database_is_away(stopped.group(1), servers, text)
            # A run that held leases past the TTL meanwhile (its attempts running, or leases
            # taken ahead) also says each is lost, why, and that its outputs were not
            # committed; whether that comes first depends on timing, not on the outcome.
            for task, why in re.findall(r"WARNING lease on (.+?) lost: (.*)$", text,
                                        re.MULTILINE):
                assert why.startswith(("no renewal succeeded for 2 s (lock server "
                                       "unreachable: ", "the lock server could not confirm "
                                       "it in time (the lock server's 2 replicas cannot be "
                                       "reached (")), why
                _both_answer_their_database_is_away(why, servers, text)
                lost_tasks.add(task)
            for task in re.findall(r"WARNING (\S+): lease on \1 lost \(fencing token \d+\): "
                                   r".*; its outputs were not committed; waiting", text):
                assert task in lost_tasks, task
        assert sorted(p.name for p in out.glob("*.txt")) == committed
        for task in lost_tasks:  # no output of a task whose lease was lost
            assert not any(_task_of(name) == task for name in committed), task
        assert "top.txt" not in committed
        own_pg_cluster.start()  # nothing lost: a rerun builds what is missing, once
        code, text = _finish([_start(project, servers, 0, SMALL_GROUPS)], 120)[0]
        assert code == 0, text[-3000:]
        starts = project.starts()
        assert len(starts) == SMALL
        assert (out / "top.txt").exists()
        for name in committed:  # what was committed before the outage was kept, not redone
            assert starts[_task_of(name)] == 1, (name, starts[_task_of(name)])
        assert len(list(out.glob("*.txt"))) == SMALL
    finally:
        for server in servers:
            server.stop()


def _both_answer_their_database_is_away(problems: str, servers: list[LockServer],
                                        text: str) -> None:
    """Each replica is named in `problems` with its 503 and the reason it gave."""
    for server in servers:
        assert f"{server.url}: HTTP 503 (the lease database postgresql://" in problems, \
            text[-3000:]
    assert problems.count("did not answer: ") == len(servers), text[-3000:]


def test_a_holder_whose_replica_died_renews_through_the_other(
        pg_url: str, replicas: list[LockServer]) -> None:
    """A lease granted through A, whose process is then killed with -9, stays its holder's
    past three TTLs: the heartbeat renews it through B with the same fencing token, and
    the database never let it run out."""
    from batchdeps.locks.client import HttpLockProvider

    a, b = replicas
    provider = HttpLockProvider([a.url, b.url], token=TOKEN, ttl=2)
    provider.start()
    try:
        lease = provider.try_acquire("Held()")
        assert lease is not None and provider.url == a.url
        a.kill9()
        wait_for(lambda: provider.url == b.url, timeout=10, what="a renewal through B")
        killed = time.monotonic()
        wait_for(lambda: time.monotonic() - killed > 6, timeout=10)  # three TTLs
        assert not lease.lost, lease.lost_reason
        status, held = b.request("POST", "/v1/holder", {"key": "Held()"})
        assert status == 200 and held["held"] and held["token"] == lease.fencing_token, held
        provider.check(lease)
        status, other = b.request("POST", "/v1/acquire", {
            "key": "Held()", "holder": {"host": "elsewhere", "pid": 9, "run_id": "x"},
            "ttl": 2})
        assert status == 200 and not other["granted"]
    finally:
        provider.close()
    events = audit_counts(pg_url)
    assert "expire" not in events and "takeover" not in events, events
    assert events["release"] == 1  # close() gave it back through B


def test_every_replica_gone_past_the_ttl_stops_the_runs_with_exit_1(
        tmp_path: Path, pg_url: str, replicas: list[LockServer]) -> None:
    project = _project(tmp_path, replicas, ttl=2)
    procs = [_start(project, replicas, n % 2, SMALL_GROUPS, SLEEP_LEAF="0.5")
             for n in range(2)]
    wait_for(lambda: len(project.starts()) >= 4, what="some tasks to start")
    for server in replicas:
        server.kill9()
    time.sleep(1.0)  # a commit whose fence check answered just before has landed
    out = project.root / "out"
    committed = sorted(p.name for p in out.glob("*.txt"))
    for code, text in _finish(procs, timeout=120):
        assert code == 1, text[-3000:]
        # The run stops through whichever call meets the dead replicas first: a heartbeat
        # (its leases are then "lost") or an acquire whose retries ran out; either way the
        # message names every replica, and nothing is committed afterwards (below).
        assert "Traceback" not in text, text[-3000:]
        assert "replicas cannot be reached" in text, text[-3000:]
        assert all(server.url in text for server in replicas), text[-3000:]
    assert sorted(p.name for p in out.glob("*.txt")) == committed
    assert "top.txt" not in committed


def test_replicas_behind_a_load_balancer_one_url_survive_the_kill_9_of_one(
        tmp_path: Path, pg_url: str, replicas: list[LockServer]) -> None:
    """The clients are given one URL, a TCP balancer's that sends each connection to the
    first replica that accepts one. Replica A is killed with -9 mid-run: the broken
    connections are made again through the balancer, now to B; the runs finish, every task
    built once, and the database let no lease run out."""
    from support.balancer import Balancer

    a, b = replicas
    balancer = Balancer([a.port, b.port])
    try:
        root = tmp_path / "project"
        root.mkdir()
        project = LockProject(root, a)
        (root / "config.toml").write_text(
            f'[batchdeps]\nmodules = ["pipelines"]\n\n[lock]\nurl = "{balancer.url}"\n'
            'ttl = 4\n')
        procs = [Run(project, ["Top", "--groups", str(SMALL_GROUPS), "--workers", "2"],
                     {"SLEEP_LEAF": "0.2"}) for _ in range(2)]
        wait_for(lambda: len(project.starts()) >= 6, what="some tasks to start")
        assert balancer.sent[a.port] >= 2 and balancer.sent[b.port] == 0
        a.kill9()
        for code, text in _finish(procs, timeout=120):
            assert code == 0, text[-3000:]
            assert "lost" not in text, text[-3000:]
        _exactly_once(project, SMALL)
        assert balancer.sent[b.port] >= 2
    finally:
        balancer.stop()
    events = audit_counts(pg_url)
    assert "expire" not in events and "takeover" not in events, events
