"""Promises of docs/storage.md that no other test kept, through the real interface.

docs/promises.md (section "docs/storage.md") maps each promise of that page to the test
that fails if it breaks; the tests here fill the gaps: a real moto S3 server behind a
counting proxy, real `batchdeps run` processes killed with SIGKILL mid-commit.
"""
# ruff: noqa: F811  (pytest fixtures are imported from s3util by name)

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from support.httpcount import CountingProxy
from support.s3util import (  # noqa: F401 - fixtures
    MotoServer,
    moto_endpoint,
    moto_server,
    new_bucket,
    s3_env,
)
from test_commit import Project as CommitProject

import batchdeps as bd

BESIDE = '''
import batchdeps as bd


class Beside(bd.Task):
    """Commits one file into the folder another task's cut commit left its files in."""

    def output(self):
        return bd.FileTarget("out/beside.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("beside")
'''


def test_a_404_for_a_key_is_confirmed_with_one_head_of_its_bucket_once_per_bucket(
        moto_server: MotoServer, s3_env: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from batchdeps.targets import Storage, check_exists

    monkeypatch.setenv("BATCHDEPS_SPOOL_DIR", str(tmp_path / "spool"))
    proxy = CountingProxy(moto_server.port)
    try:
        first, second = new_bucket(moto_server.endpoint), new_bucket(moto_server.endpoint)
        storage = Storage({"s3": {"endpoint_url": proxy.endpoint}})
        targets = [bd.FileTarget(f"s3://{name}/missing/{i}.csv", storage=storage)
                   for name in (first, second) for i in range(3)]
        assert [t.exists() for t in targets] == [False] * 6  # one HEAD per key
        assert check_exists(targets) == [False] * 6
        assert [t.exists() for t in targets] == [False] * 6
        bucket_heads = [path for method, path in proxy.requests
                        if method == "HEAD" and path.strip("/").split("?")[0]
                        in (first, second)]
        assert sorted(bucket_heads) == sorted([f"/{first}", f"/{second}"]), proxy.requests
        key_heads = [path for method, path in proxy.requests
                     if method == "HEAD" and "/missing/" in path]
        assert len(key_heads) >= 12  # the keys themselves were asked each time
    finally:
        proxy.stop()


def test_writes_are_moved_in_the_order_they_were_closed_the_sentinel_last(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from batchdeps.targets import staging_scope
    from batchdeps.targets.commit import commit_order

    monkeypatch.chdir(tmp_path)
    declared = [bd.FileTarget(f"x/{name}.txt") for name in ("a", "b", "c", "d")]
    side = bd.FileTarget("x/side.txt")  # written, not declared
    with staging_scope() as staging:
        for target in (declared[2], side, declared[0], declared[3]):  # b is never written
            with target.open("w") as out:
                out.write("new")
    order, sentinel_last = commit_order(list(staging.pending.values()), declared)
    assert [w.target.url for w in order] == [t.url for t in (declared[2], side, declared[3],
                                                             declared[0])]
    assert sentinel_last
    # the first declared output that was written is the sentinel, even when b is not
    with staging_scope() as staging:
        for target in (declared[3], declared[1]):
            with target.open("w") as out:
                out.write("new")
    order, _ = commit_order(list(staging.pending.values()), declared)
    assert [w.target.url for w in order] == [declared[3].url, declared[1].url]


def test_the_end_of_run_sweep_keeps_what_an_unfinished_commit_record_needs(
        tmp_path: Path) -> None:
    """kill -9 mid-commit of a --force rebuild; then another task commits into the same
    folder (its end-of-run sweep removes dead writers' files); the next run of the cut
    task still restores every file it replaced."""
    project = CommitProject(tmp_path)
    (tmp_path / "pipelines" / "beside.py").write_text(BESIDE)
    assert project.run("ManyOutputs", TAG="old").returncode == 0
    killed = project.run("ManyOutputs", "--force", KILL_AT_COMMIT="1", TAG="new")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    seen = project.texts("out")
    assert "new" in seen.values() and "00000.txt" not in seen  # cut mid-commit
    # the files a reader sees mid-commit: every replaced one, old or new, never absent
    assert len(seen) == 2999
    beside = project.run("Beside")
    assert beside.returncode == 0, beside.stderr[-2000:]
    failed = project.run("ManyOutputs", FAIL_RUN="1")
    assert failed.returncode == 1
    assert "rolled back an interrupted commit" in failed.stderr
    texts = project.texts("out")
    assert texts.pop("beside.txt") == "beside"
    assert len(texts) == 3000 and set(texts.values()) == {"old"}
    assert project.tmp_dirs() == []


def test_a_batched_check_has_at_most_32_requests_in_flight(
        moto_server: MotoServer, s3_env: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from batchdeps.targets import Storage, check_exists

    monkeypatch.setenv("BATCHDEPS_SPOOL_DIR", str(tmp_path / "spool"))
    lock = threading.Lock()
    finished = [0]
    peak = [0]
    proxy: CountingProxy

    def slow_answer(method: str, path: str) -> None:
        time.sleep(0.2)  # each request answered late, so the client's requests pile up
        with lock:
            peak[0] = max(peak[0], len(proxy.requests) - finished[0])
            finished[0] += 1

    proxy = CountingProxy(moto_server.port, after=slow_answer)
    try:
        name = new_bucket(moto_server.endpoint)
        storage = Storage({"s3": {"endpoint_url": proxy.endpoint}})
        # keys with nothing in common: checked by HEAD, not by a listing
        targets = [bd.FileTarget(f"s3://{name}/{i:03d}{chr(97 + i % 26)}/x-{i}.csv",
                                 storage=storage) for i in range(300)]
        assert check_exists(targets) == [False] * 300
        assert len(proxy.requests) >= 100, proxy.requests[:5]
        # never more than the bound (the proxy counts a request answered before the client
        # has its answer, so it sees no more than the client has in flight)
        assert 4 < peak[0] <= 32, peak[0]
    finally:
        proxy.stop()
