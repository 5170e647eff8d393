"""Staleness on S3 (moto's server): a rewritten object, two working copies that share the
bucket, and the extra checks batched like existence (one listing per prefix)."""

# ruff: noqa: F811  (pytest fixtures are imported from s3util by name)

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.project import Project
from support.s3util import (  # noqa: F401 - fixtures
    FAKE_CREDENTIALS,
    MotoServer,
    boto_client,
    bucket,
    count_requests,
    moto_endpoint,
    moto_server,
    new_bucket,
    s3_env,
)

import batchdeps as bd
from batchdeps.config import Config
from batchdeps.survey.states import survey
from batchdeps.targets import default_storage

PIPELINE = '''
"""Four days cleaned from raw objects on S3, and a report over them."""
import os

import batchdeps as bd

from .demo import journal

ROOT = os.environ["DATA_ROOT"]


class Raw(bd.ExternalTask):
    day = bd.Parameter()

    def output(self):
        return bd.FileTarget(f"{ROOT}/raw/{self.day}.txt")


class Clean(bd.Task):
    version = os.environ.get("CLEAN_VERSION", "1")
    day = bd.Parameter()

    def requires(self):
        return Raw(day=self.day)

    def output(self):
        return bd.FileTarget(f"{ROOT}/clean/{self.day}.txt")

    def run(self):
        journal("start", self)
        with self.input().open() as src, self.output().open("w") as dst:
            dst.write(src.read().upper())


class Wide(bd.Task):
    """Ten outputs; the first (the sentinel) is uploaded last, after the build record."""
    version = os.environ.get("WIDE_VERSION", "1")

    def output(self):
        return [bd.FileTarget(f"{ROOT}/wide/{i:02d}.txt") for i in range(10)]

    def run(self):
        journal("start", self)
        for target in self.output():
            with target.open("w") as out:
                out.write(f"version {self.version}")


class Report(bd.Task):
    def requires(self):
        return [Clean(day=f"d{i}") for i in range(1, 5)]

    def output(self):
        return bd.FileTarget(f"{ROOT}/report.txt")

    def run(self):
        journal("start", self)
        with self.output().open("w") as dst:
            dst.write("report")
'''

TRIGGERS = ("--rerun-triggers", "version,params,upstream")


def working_copy(root: Path, endpoint: str, bucket_name: str) -> Project:
    """A fresh checkout: config, the pipeline, its own journal and locks; data on S3."""
    from support.project import DEMO_PIPELINE

    copy = Project(root)
    copy.write("config.toml", f"""
        [batchdeps]
        modules = ["pipelines"]

        [storage.s3]
        endpoint_url = "{endpoint}"
    """)
    copy.write("pipelines/__init__.py", "")
    (root / "pipelines" / "demo.py").write_text(DEMO_PIPELINE)
    copy.write("pipelines/stale.py", PIPELINE)
    copy.env.update(FAKE_CREDENTIALS)
    copy.env["DATA_ROOT"] = f"s3://{bucket_name}/data"
    copy.env["BATCHDEPS_SPOOL_DIR"] = str(root / "spool")
    return copy


def stale_of(copy: Project, **env: str) -> dict[str, list[str]]:
    result = copy.run("status", "Report", *TRIGGERS, "--format", "json", **env)
    assert result.returncode in (0, 1), result.stderr
    return {n["task_id"]: n["stale"] for n in json.loads(result.stdout)["nodes"] if n["stale"]}


def test_two_working_copies_sharing_s3_agree_on_what_is_stale(
        tmp_path: Path, moto_endpoint: str, bucket: str) -> None:
    client = boto_client(moto_endpoint)
    for i in range(1, 5):
        client.put_object(Bucket=bucket, Key=f"data/raw/d{i}.txt", Body=f"day {i}".encode())
    first = working_copy(tmp_path / "first", moto_endpoint, bucket)
    second = working_copy(tmp_path / "second", moto_endpoint, bucket)
    assert first.run("run", "Report", *TRIGGERS).returncode == 0
    assert len(first.runs()) == 5
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert "data/clean/.d1.txt.batchdeps.json" in keys and "data/.report.txt.batchdeps.json" in keys
    # the second copy has never run anything: the records on S3 say it is all up to date
    assert second.run("status", "Report", *TRIGGERS, "--stale").returncode == 0

    client.put_object(Bucket=bucket, Key="data/raw/d3.txt", Body=b"day 3, corrected")
    seen = stale_of(second)
    assert seen == stale_of(first)
    assert set(seen) == {"Clean(day=d3)", "Report()"}
    assert seen["Clean(day=d3)"][0].startswith(f"input s3://{bucket}/data/raw/d3.txt ")
    assert seen["Report()"] == ["upstream Clean(day=d3) rebuilt"]

    assert second.run("run", "Report", *TRIGGERS).returncode == 0
    assert second.runs() == ["Clean(day=d3)", "Report()"]
    assert stale_of(first) == {}  # the first copy sees the second one's records
    assert first.run("run", "Report", *TRIGGERS).returncode == 0 and len(first.runs()) == 5
    body = client.get_object(Bucket=bucket, Key="data/clean/d3.txt")["Body"].read()
    assert body == b"DAY 3, CORRECTED"

    bumped = stale_of(first, CLEAN_VERSION="2")
    assert bumped == stale_of(second, CLEAN_VERSION="2")
    assert bumped["Clean(day=d1)"] == ["version 1 → 2"] and len(bumped) == 5


# -- batched like existence ------------------------------------------------------------------
class Day(bd.ExternalTask):
    day = bd.IntParameter()
    root = bd.Parameter()

    def output(self) -> Any:
        return bd.FileTarget(f"{self.root}/raw/{self.day:03d}.txt")


class Daily(bd.Task):
    day = bd.IntParameter()
    root = bd.Parameter()

    def requires(self) -> Any:
        return Day(day=self.day, root=self.root)

    def output(self) -> Any:
        return bd.FileTarget(f"{self.root}/daily/{self.day:03d}.txt")

    def run(self) -> None:
        with self.output().open("w") as out:
            out.write("x")


class AllDays(bd.WrapperTask):
    root = bd.Parameter()

    def requires(self) -> Any:
        return [Daily(day=i, root=self.root) for i in range(120)]


@pytest.fixture
def storage_on_moto(s3_env: dict[str, str], moto_endpoint: str) -> Iterator[Config]:
    config = Config(storage={"s3": {"endpoint_url": moto_endpoint}})
    default_storage.configure(config.storage)
    yield config
    default_storage.configure({})


def test_status_with_triggers_lists_each_prefix_and_reads_only_the_records(
        storage_on_moto: Config, bucket: str, moto_endpoint: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    client = boto_client(moto_endpoint)
    for i in range(120):
        client.put_object(Bucket=bucket, Key=f"d/raw/{i:03d}.txt", Body=b"raw")
    root = f"s3://{bucket}/d"
    result = bd.build(AllDays(root=root), config=storage_on_moto, rerun_triggers="upstream")
    assert result.ok, result
    methods = count_requests(monkeypatch)
    found = survey([AllDays(root=root)], rerun_triggers={"upstream"})
    assert not found.stale and found.exit_code == 0
    # outputs, records and inputs of 120 tasks: one listing per prefix (raw/, daily/),
    # no HEAD per object, and one GET per record
    assert "head_object" not in methods
    assert methods.count("list_objects_v2") <= 4
    assert methods.count("get_object") == 120
    client.put_object(Bucket=bucket, Key="d/raw/007.txt", Body=b"rewritten")
    methods.clear()
    found = survey([AllDays(root=root)], rerun_triggers={"upstream"})
    assert [node.task_id for node in found.stale] == [f"Daily(day=7, root={root})",
                                                       f"AllDays(root={root})"]
    assert "head_object" not in methods


def test_plain_status_finds_upstream_newer_from_the_listing_without_a_head_per_object(
        s3_env: dict[str, str], bucket: str, moto_server: MotoServer) -> None:
    from support.httpcount import CountingProxy

    client = boto_client(moto_server.endpoint)
    for i in range(120):
        client.put_object(Bucket=bucket, Key=f"n/raw/{i:03d}.txt", Body=b"raw")
    root = f"s3://{bucket}/n"
    proxy = CountingProxy(moto_server.port)  # counts real HTTP requests, HEADs included
    config = Config(storage={"s3": {"endpoint_url": proxy.endpoint}})
    default_storage.configure(config.storage)
    try:
        assert bd.build(AllDays(root=root), config=config).ok
        time.sleep(1.1)  # S3 stamps whole seconds: the rewrite must land in a later second
        client.put_object(Bucket=bucket, Key="n/raw/007.txt", Body=b"rewritten")
        before = len(proxy.requests)
        found = survey([AllDays(root=root)])  # plain `status`: modification times compared
        made = proxy.requests[before:]
    finally:
        default_storage.configure({})
        proxy.stop()
    newer = {node.task_id: node.upstream_newer.task_id
             for node in found.nodes if node.upstream_newer is not None}
    assert newer[f"Daily(day=7, root={root})"] == f"Day(day=7, root={root})"
    assert f"Daily(day=8, root={root})" not in newer
    # 240 outputs, each with its time: one listing per prefix, not a HEAD per object
    assert [method for method, _ in made if method == "HEAD"] == []
    assert len(made) <= 4, made


class Pair(bd.Task):
    version = "1"
    root = bd.Parameter()

    def output(self) -> Any:
        return [bd.FileTarget(f"{self.root}/first.txt"), bd.FileTarget(f"{self.root}/second.txt")]

    def run(self) -> None:
        for target in self.output():
            with target.open("w") as out:
                out.write("x")


def test_on_s3_the_record_is_uploaded_before_the_sentinel_output(
        storage_on_moto: Config, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    puts = count_requests(monkeypatch, lambda method, request: (
        request["Key"] if method == "put_object" else None))
    result = bd.build(Pair(root=f"s3://{bucket}/pair"), config=storage_on_moto,
                      rerun_triggers=["version"])
    assert result.ok, result
    # the first output is the sentinel: while it is absent the task is not complete, so a
    # kill -9 before it leaves a task that the next run rebuilds, record and all
    assert puts == ["pair/second.txt", "pair/.first.txt.batchdeps.json", "pair/first.txt"]


# -- kill -9 mid-commit ----------------------------------------------------------------------
def test_kill_9_mid_commit_on_s3_leaves_outputs_and_record_consistent(
        tmp_path: Path, moto_server: MotoServer) -> None:
    import os
    import signal

    from support.httpcount import CountingProxy

    from batchdeps.errors import ExitCode

    victim: list[int] = []

    def kill_at_the_record(method: str, path: str) -> None:
        # the record is on S3; the sentinel (hidden at the commit's start) is not back yet
        if method == "PUT" and path.split("?")[0].endswith("/wide/.00.txt.batchdeps.json") \
                and victim:
            os.killpg(victim.pop(), signal.SIGKILL)

    proxy = CountingProxy(moto_server.port, after=kill_at_the_record)
    bucket_name = new_bucket(moto_server.endpoint)
    try:
        copy = working_copy(tmp_path / "copy", proxy.endpoint, bucket_name)
        assert copy.run("run", "Wide", "--rerun-triggers", "version").returncode == 0
        client = boto_client(moto_server.endpoint)

        def objects() -> dict[str, bytes]:
            listed = client.list_objects_v2(Bucket=bucket_name, Prefix="data/wide/")
            return {o["Key"].removeprefix("data/wide/"): client.get_object(
                Bucket=bucket_name, Key=o["Key"])["Body"].read()
                for o in listed.get("Contents", [])
                if not o["Key"].startswith("data/wide/.batchdeps-tmp/")}

        def record() -> dict:
            return json.loads(objects()[".00.txt.batchdeps.json"])

        assert record()["version"] == "1"
        proc = copy.popen("run", "Wide", "--rerun-triggers", "version", WIDE_VERSION="2")
        victim.append(proc.pid)
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL
        # Cut short after the record: the new record and new outputs are there, the
        # sentinel is not, so no one takes the task as complete, with either version.
        seen = objects()
        assert "00.txt" not in seen and seen["01.txt"] == b"version 2"
        assert record()["version"] == "2"
        for version in ("1", "2"):
            status = copy.run("status", "Wide", "--rerun-triggers", "version", "--format",
                              "json", WIDE_VERSION=version)
            assert status.returncode == ExitCode.FAILED, status.stderr  # work to do
            node = json.loads(status.stdout)["nodes"][0]
            assert node["state"] == "missing" and node["missing_outputs"] == [
                f"s3://{bucket_name}/data/wide/00.txt"]
        # The next run builds it again, record and all; then nothing is stale.
        assert copy.run("run", "Wide", "--rerun-triggers", "version",
                        WIDE_VERSION="2").returncode == 0
        seen = objects()
        assert {name: body for name, body in seen.items() if name.endswith(".txt")
                and not name.startswith(".")} == {
                    f"{i:02d}.txt": b"version 2" for i in range(10)}
        assert record()["version"] == "2"
        assert copy.run("status", "Wide", "--rerun-triggers", "version", "--stale",
                        WIDE_VERSION="2").returncode == 0
        assert copy.runs() == ["Wide()", "Wide()", "Wide()"]
    finally:
        proxy.stop()


# -- local copies of the records (targets/copies.py) -------------------------------------------
def test_a_second_status_with_triggers_takes_unchanged_records_from_their_local_copies(
        s3_env: dict[str, str], bucket: str, moto_server: MotoServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted on the HTTP side: the first `status --rerun-triggers` GETs every record, the
    second none (the listing's ETags are the copies'), one rewritten record is fetched
    again and read as rewritten, and every answer is the one a look without copies gives.
    A look that cannot list is an error, whatever the copies hold."""
    from support.httpcount import CountingProxy

    from batchdeps.errors import TargetCheckError

    monkeypatch.setenv("BATCHDEPS_CACHE_DIR", str(tmp_path / "cache"))
    client = boto_client(moto_server.endpoint)
    for i in range(120):
        client.put_object(Bucket=bucket, Key=f"c/raw/{i:03d}.txt", Body=b"raw")
    root = f"s3://{bucket}/c"
    proxy = CountingProxy(moto_server.port)
    config = Config(storage={"s3": {"endpoint_url": proxy.endpoint,
                                    "config_kwargs": {"retries": {"total_max_attempts": 1}}}})
    default_storage.configure(config.storage)
    triggers = {"upstream", "version"}

    def look() -> tuple[dict[str, list[str]], dict[str, str], int]:
        """Stale tasks with reasons, every task's state, and the GETs of records made."""
        before = len(proxy.requests)
        found = survey([AllDays(root=root)], rerun_triggers=triggers)
        gets = [path for method, path in proxy.requests[before:]
                if method == "GET" and ".batchdeps.json" in path]
        return ({node.task_id: node.stale for node in found.nodes if node.stale},
                {node.task_id: node.state for node in found.nodes}, len(gets))

    def look_without_copies() -> tuple[dict[str, list[str]], dict[str, str], int]:
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)
        return look()

    try:
        assert bd.build(AllDays(root=root), config=config, rerun_triggers="upstream").ok
        stale, states, gets = look()
        assert (stale, gets) == ({}, 120) and len(states) == 241
        assert list((tmp_path / "cache").glob("records-*.json"))
        assert look() == (stale, states, 0)

        # One record rewritten (another version recorded): a new ETag, fetched again.
        key = "c/daily/.007.txt.batchdeps.json"
        record = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        client.put_object(Bucket=bucket, Key=key,
                          Body=json.dumps({**record, "version": "9"}).encode())
        stale, states, gets = look()
        assert gets == 1
        assert stale == {f"Daily(day=7, root={root})": ["version 9 → (none)"],
                         f"AllDays(root={root})": [f"upstream Daily(day=7, root={root}) rebuilt"]}
        assert look() == (stale, states, 0)
        assert look_without_copies() == (stale, states, 120)

        # A damaged file of copies is passed over (and replaced): answers stay the same.
        for path in (tmp_path / "cache").glob("records-*.json"):
            path.write_text('{"batchdeps_record_copies": 1, "copies": {"c/daily/.00')
        assert look() == (stale, states, 120)
        assert look() == (stale, states, 0)
    finally:
        default_storage.configure({})
        proxy.stop()
    # The store cannot be listed: an error, not "up to date" from the copies.
    default_storage.configure(config.storage)
    try:
        with pytest.raises(TargetCheckError, match="cannot"):
            survey([AllDays(root=root)], rerun_triggers=triggers)
    finally:
        default_storage.configure({})
