"""Lock-server replicas on one PostgreSQL database, end to end with real processes: runs
spread over two replicas, kill -9 of a replica mid-run, a PostgreSQL restart within a TTL,
and an outage past it."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.lockutil import BATCHDEPS, LockProject, LockServer
from support.pg import PgCluster
from support.waiting import wait_for

GROUPS, SMALL_GROUPS = 500, 8
BIG = GROUPS * 4 + 1  # 2,001 tasks: three leaves and a mid per group, the top
SMALL = SMALL_GROUPS * 4 + 1


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
        tmp_path: Path, replicas: list[LockServer]) -> None:
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
        wait_for(lambda: len(project.starts()) >= 4, what="some tasks to start")
        own_pg_cluster.restart()
        for code, text in _finish(procs, timeout=120):
            assert code == 0, text[-3000:]
            assert "lost" not in text, text[-3000:]
        _exactly_once(project, SMALL)
        for server in servers:
            assert server.request("GET", "/v1/health", token="")[1]["answers"]
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
        for code, text in _finish(procs, timeout=120):
            assert code == 1, text[-3000:]
            assert "Traceback" not in text and "lost" in text, text[-3000:]
        assert sorted(p.name for p in out.glob("*.txt")) == committed
        assert "top.txt" not in committed
        own_pg_cluster.start()  # nothing lost: a rerun builds what is missing, once
        code, text = _finish([_start(project, servers, 0, SMALL_GROUPS)], 120)[0]
        assert code == 0, text[-3000:]
        built = {task for task, n in project.starts().items()}
        assert len(built) == SMALL
        assert (out / "top.txt").exists()
    finally:
        for server in servers:
            server.stop()
