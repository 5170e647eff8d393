"""S3 targets against a real moto server: config, checks, batching, retries, uploads, imports."""

# ruff: noqa: F811  (pytest fixtures are imported from s3util by name)

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support.s3util import (  # noqa: F401 - fixtures
    FAKE_CREDENTIALS,
    FaultProxy,
    MotoServer,
    boto_client,
    bucket,
    free_port,
    keys_under,
    moto_endpoint,
    moto_server,
    multipart_uploads,
    s3_env,
    s3_storage,
)
from support.waiting import wait_for

import batchdeps as bd
from batchdeps.config import parse_config
from batchdeps.errors import TargetCheckError, TargetError
from batchdeps.targets import Storage, check_exists, s3

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _own_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    spool = tmp_path / "spool"
    monkeypatch.setenv("BATCHDEPS_SPOOL_DIR", str(spool))
    return spool


# -- config ----------------------------------------------------------------------------
def test_storage_options_come_from_config_with_env(bucket: str, moto_endpoint: str) -> None:
    config = parse_config(
        {"storage": {"s3": {"endpoint_url": "${MY_ENDPOINT}", "key": "${MY_KEY}",
                            "secret": "testing", "config_kwargs": {"read_timeout": 7}}}},
        environ={"MY_ENDPOINT": moto_endpoint, "MY_KEY": "testing"},
    )
    storage = Storage(config.storage)
    target = bd.FileTarget(f"s3://{bucket}/cfg/x.txt", storage=storage)
    with target.open("w") as out:
        out.write("configured")
    assert keys_under(moto_endpoint, bucket) == ["cfg/x.txt"]
    fs = target.filesystem  # type: ignore[attr-defined]
    assert fs.config_kwargs["read_timeout"] == 7  # the config's value wins
    assert fs.config_kwargs["connect_timeout"] == s3.DEFAULT_CONFIG_KWARGS["connect_timeout"]


def test_credentials_come_from_the_standard_chain_when_config_has_none(
    bucket: str, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = x\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    target = bd.FileTarget(f"s3://{bucket}/chain.txt",
                           storage=Storage({"s3": {"endpoint_url": moto_endpoint}}))
    with target.open("w") as out:
        out.write("from the shared credentials file")
    assert target.exists()


def test_no_credentials_is_a_check_error_naming_the_url(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    target = bd.FileTarget("s3://any/key.csv",
                           storage=Storage({"s3": {"endpoint_url": moto_endpoint}}))
    with pytest.raises(TargetCheckError, match=r"s3://any/key\.csv: no AWS credentials"):
        target.exists()


def test_config_kwargs_that_is_not_a_table_is_a_clear_check_error() -> None:
    storage = Storage({"s3": {"endpoint_url": "http://127.0.0.1:9", "config_kwargs": "x"}})
    with pytest.raises(TargetCheckError, match=r"s3://b/k\.csv: .*config_kwargs must be a table"):
        bd.FileTarget("s3://b/k.csv", storage=storage).exists()
    with pytest.raises(TargetCheckError, match="config_kwargs must be a table"):
        check_exists([bd.FileTarget(f"s3://b/{i}.csv", storage=storage) for i in range(5)])


def test_a_bucket_without_key_is_rejected() -> None:
    with pytest.raises(TargetError, match="s3://bucket/key"):
        bd.FileTarget("s3://only-bucket")


# -- checks ------------------------------------------------------------------------------
def test_object_made_a_moment_ago_by_another_client_is_seen(
    bucket: str, moto_endpoint: str, s3_storage: Storage
) -> None:
    targets = [bd.FileTarget(f"s3://{bucket}/fresh/{i}.csv", storage=s3_storage)
               for i in range(10)]
    assert check_exists(targets) == [False] * 10  # warms any cache there might be
    assert targets[3].exists() is False
    boto_client(moto_endpoint).put_object(Bucket=bucket, Key="fresh/3.csv", Body=b"new")
    assert check_exists(targets) == [i == 3 for i in range(10)]  # the listing path
    assert targets[3].exists() is True  # the HEAD path
    assert check_exists(targets[3:5]) == [True, False]  # small groups: HEADs


def _count_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the S3 API method of every request batchdeps makes (they still reach S3)."""
    methods: list[str] = []
    real_call = s3._call

    async def counting(fs: Any, method: str, url: str, **kwargs: Any) -> Any:
        methods.append(method)
        return await real_call(fs, method, url, **kwargs)

    monkeypatch.setattr(s3, "_call", counting)
    return methods


def test_batched_check_pages_through_listings_and_falls_back_to_heads(
    bucket: str, moto_endpoint: str, s3_storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto_client(moto_endpoint)
    for i in range(60):
        if i % 4:
            client.put_object(Bucket=bucket, Key=f"p/{i:03d}", Body=b"1")
        for noise in range(3):
            client.put_object(Bucket=bucket, Key=f"p/{i:03d}-noise{noise}", Body=b"1")
    client.put_object(Bucket=bucket, Key="p/sub/deep", Body=b"1")
    monkeypatch.setattr(s3, "LIST_PAGE_SIZE", 7)  # many pages
    methods = _count_requests(monkeypatch)
    # Dense: every wanted key is found by paging through the listing.
    wanted = list(range(0, 60, 2)) + [75, 99]
    targets = [bd.FileTarget(f"s3://{bucket}/p/{i:03d}", storage=s3_storage) for i in wanted]
    expected = [i < 60 and i % 4 != 0 for i in wanted]
    assert check_exists(targets) == expected
    assert methods.count("list_objects_v2") > 3 and "head_object" not in methods
    assert [t.exists() for t in targets] == expected
    # Sparse: a few keys far apart use up the page budget; the rest are checked by HEAD.
    methods.clear()
    wanted = [1, 20, 41, 59, 75]
    targets = [bd.FileTarget(f"s3://{bucket}/p/{i:03d}", storage=s3_storage) for i in wanted]
    assert check_exists(targets) == [True, False, True, True, False]
    assert "list_objects_v2" in methods and "head_object" in methods


def test_batched_check_keeps_keys_that_share_a_prefix_and_odd_characters_apart(
    bucket: str, moto_endpoint: str, s3_storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = boto_client(moto_endpoint)
    odd = ["a b", "a+b", "a%20b", "a&b", "<x>", "é", "日本.csv", "a#b", "a?b", "1.", "1-"]
    present = [f"w/{i}" for i in range(1100) if i % 7] + [f"w/{name}" for name in odd[::2]]
    present += ["w/1/deep", "w/10/deep"]  # "folders" named like wanted keys are not objects
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=b""), present))
    methods = _count_requests(monkeypatch)
    # 1,200 wanted keys under one prefix: more than one 1,000-key page, listed in slices;
    # "w/1", "w/10", "w/100" and "w/1000" sort next to each other and must not be confused.
    wanted = [f"w/{i}" for i in range(1200)] + [f"w/{name}" for name in odd]
    targets = [bd.FileTarget(f"s3://{bucket}/{key}", storage=s3_storage) for key in wanted]
    expected = [key in set(present) for key in wanted]
    assert check_exists(targets) == expected
    assert "head_object" not in methods and methods.count("list_objects_v2") >= 2
    assert [t.exists() for t in targets[:20] + targets[-len(odd):]] == \
        expected[:20] + expected[-len(odd):]


def test_unreachable_endpoint_is_an_error_not_missing(bucket: str) -> None:
    dead = Storage({"s3": {"endpoint_url": f"http://127.0.0.1:{free_port()}"}})
    targets = [bd.FileTarget(f"s3://{bucket}/x/{i}.csv", storage=dead) for i in range(6)]
    with pytest.raises(TargetCheckError, match="cannot reach the S3 endpoint") as caught:
        check_exists(targets)
    assert f"s3://{bucket}/x/" in str(caught.value)


@pytest.fixture(scope="module")
def auth_server() -> Any:
    server = MotoServer({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})  # every request is checked
    yield server
    server.stop()


def test_wrong_credentials_are_an_error_not_missing(s3_env: dict[str, str],
                                                    auth_server: MotoServer) -> None:
    storage = Storage({"s3": {"endpoint_url": auth_server.endpoint, "key": "AKIAWRONG",
                              "secret": "wrong"}})
    single = bd.FileTarget("s3://data/report.csv", storage=storage)
    with pytest.raises(TargetCheckError, match=r"s3://data/report\.csv: access denied"):
        single.exists()
    many = [bd.FileTarget(f"s3://data/day/{i}.csv", storage=storage) for i in range(5)]
    with pytest.raises(TargetCheckError, match="credentials are wrong"):
        check_exists(many)


# -- transient errors --------------------------------------------------------------------
def test_throttling_5xx_and_resets_are_retried_and_logged(
    bucket: str, moto_server: MotoServer, caplog: pytest.LogCaptureFixture
) -> None:
    boto_client(moto_server.endpoint).put_object(Bucket=bucket, Key="t/x", Body=b"1")
    proxy = FaultProxy(moto_server.port, ["503", "slowdown", "reset"])
    try:
        storage = Storage({"s3": {"endpoint_url": proxy.endpoint}})
        with caplog.at_level(logging.WARNING, logger="batchdeps.targets.s3"):
            assert bd.FileTarget(f"s3://{bucket}/t/x", storage=storage).exists() is True
    finally:
        proxy.stop()
    assert proxy.served == 3
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) >= 2  # a reset of a fresh connection may be retried once by aiohttp
    assert all("HTTP 503" in message for message in retries[:2])


def test_retries_are_bounded_then_an_error(bucket: str, moto_server: MotoServer) -> None:
    proxy = FaultProxy(moto_server.port, ["503"] * 50)
    try:
        storage = Storage({"s3": {"endpoint_url": proxy.endpoint}})
        with pytest.raises(TargetCheckError, match="HTTP 503"):
            bd.FileTarget(f"s3://{bucket}/t/y", storage=storage).exists()
    finally:
        proxy.stop()
    assert proxy.served == s3.MAX_ATTEMPTS


@pytest.mark.parametrize(("env", "config_kwargs", "attempts"), [
    ({"AWS_MAX_ATTEMPTS": "2"}, {}, 2),
    ({}, {"retries": {"total_max_attempts": 3}}, 3),
    ({}, {"retries": {"max_attempts": 1}}, 2),  # botocore's max_attempts counts retries
    ({"AWS_MAX_ATTEMPTS": "2"}, {"retries": {"total_max_attempts": 4}}, 4),  # config wins
    ({"AWS_RETRY_MODE": "legacy", "AWS_MAX_ATTEMPTS": "3"}, {}, 3),
])
def test_the_users_retry_settings_take_effect(
    bucket: str, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str], config_kwargs: dict[str, Any], attempts: int,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    proxy = FaultProxy(moto_server.port, ["503"] * 50)
    try:
        storage = Storage({"s3": {"endpoint_url": proxy.endpoint,
                                  "config_kwargs": config_kwargs}})
        with pytest.raises(TargetCheckError, match="HTTP 503"):
            bd.FileTarget(f"s3://{bucket}/t/z", storage=storage).exists()
    finally:
        proxy.stop()
    assert proxy.served == attempts  # each attempt is one connection through the proxy


def test_retry_settings_of_the_aws_profile_take_effect(
    bucket: str, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    (tmp_path / "aws-config").write_text("[default]\nmax_attempts = 3\nretry_mode = legacy\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    proxy = FaultProxy(moto_server.port, ["503"] * 50)
    try:
        storage = Storage({"s3": {"endpoint_url": proxy.endpoint}})
        with pytest.raises(TargetCheckError, match="HTTP 503"):
            bd.FileTarget(f"s3://{bucket}/t/p", storage=storage).exists()
    finally:
        proxy.stop()
    assert proxy.served == 3


@pytest.mark.parametrize(("env", "config_kwargs", "mode"), [
    ({}, {}, "standard"),
    ({"AWS_RETRY_MODE": "adaptive"}, {}, "adaptive"),
    ({"AWS_RETRY_MODE": "adaptive"}, {"retries": {"mode": "legacy"}}, "legacy"),
])
def test_the_users_retry_mode_is_the_one_botocore_uses(
    s3_env: dict[str, str], moto_endpoint: str, monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str], config_kwargs: dict[str, Any], mode: str,
) -> None:
    import asyncio

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    storage = Storage({"s3": {"endpoint_url": moto_endpoint, "config_kwargs": config_kwargs}})
    target = bd.FileTarget("s3://some-bucket/k", storage=storage)
    fs = target.filesystem  # type: ignore[attr-defined]
    client = asyncio.run_coroutine_threadsafe(s3._client(fs, None), fs.loop).result(30)
    assert client.meta.config.retries["mode"] == mode


def test_reads_retry_throttling_and_5xx_within_a_bound_and_log_it(
    bucket: str, moto_server: MotoServer, caplog: pytest.LogCaptureFixture
) -> None:
    boto_client(moto_server.endpoint).put_object(Bucket=bucket, Key="r/in.csv", Body=b"input")
    proxy = FaultProxy(moto_server.port, ["503", "slowdown", "503"])
    try:
        storage = Storage({"s3": {"endpoint_url": proxy.endpoint}})
        with caplog.at_level(logging.WARNING, logger="batchdeps.targets.s3"), \
                bd.FileTarget(f"s3://{bucket}/r/in.csv", storage=storage).open("rb") as src:
            assert src.read() == b"input"
    finally:
        proxy.stop()
    assert proxy.served == 3
    assert len([r for r in caplog.records if "retries it" in r.getMessage()]) == 3
    proxy = FaultProxy(moto_server.port, ["503"] * 50)
    try:
        storage = Storage({"s3": {"endpoint_url": proxy.endpoint}})
        with pytest.raises(TargetError, match="HTTP 503"):
            bd.FileTarget(f"s3://{bucket}/r/in.csv", storage=storage).open("rb")
    finally:
        proxy.stop()
    assert 1 < proxy.served <= 2 * s3.MAX_ATTEMPTS  # retried, then gave up


# -- uploads -----------------------------------------------------------------------------
def test_multipart_output_of_21_mb_round_trips(bucket: str, moto_endpoint: str,
                                               s3_storage: Storage, _own_spool: Path) -> None:
    payload = os.urandom(21 * 2**20)
    target = bd.FileTarget(f"s3://{bucket}/big/blob.bin", storage=s3_storage)
    with target.open("wb") as out:
        for start in range(0, len(payload), 2**20):
            out.write(payload[start:start + 2**20])
    head = boto_client(moto_endpoint).head_object(Bucket=bucket, Key="big/blob.bin")
    assert head["ContentLength"] == len(payload)
    assert head["ETag"].endswith('-3"')  # three parts: it really was a multipart upload
    with target.open("rb") as src:
        assert src.read() == payload
    assert multipart_uploads(moto_endpoint, bucket) == []
    assert os.listdir(_own_spool) == []


WRITER = """
import os, sys, time
import batchdeps as bd
from batchdeps.targets import Storage
storage = Storage({"s3": {"endpoint_url": os.environ["S3_ENDPOINT"]}})
target = bd.FileTarget(sys.argv[1], storage=storage)
with target.open("wb") as out:
    for _ in range(int(sys.argv[2])):
        out.write(os.urandom(2**20))
print("closed", flush=True)
"""


def _start_writer(url: str, megabytes: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, url, str(megabytes)],
                            env={**os.environ, **env}, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_interrupt_during_multipart_upload_aborts_it(bucket: str, moto_endpoint: str,
                                                     s3_env: dict[str, str]) -> None:
    writer = _start_writer(f"s3://{bucket}/big/interrupted.bin", 120, s3_env)
    try:
        # The writer imports s3fs and spools 120 MiB before its upload starts: at load 30
        # that took 45 s here. Wait for the upload as long as the writer is alive.
        wait_for(lambda: multipart_uploads(moto_endpoint, bucket) or writer.poll() is not None,
                 timeout=300, what="the writer's multipart upload to start")
        assert writer.poll() is None, "the writer ended before its upload was seen"
        writer.send_signal(signal.SIGINT)
        writer.wait(120)
    finally:
        writer.kill()
    assert writer.returncode != 0
    assert keys_under(moto_endpoint, bucket) == []
    assert multipart_uploads(moto_endpoint, bucket) == []


class _SlowToAnswerS3:
    """A fake S3 client whose create_multipart_upload makes the upload, then answers late."""

    _batchdeps_logs_retries = True  # nothing to hook

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.made: asyncio.Event = asyncio.Event()

    async def create_multipart_upload(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(("create", kwargs["Key"]))
        self.made.set()  # S3 has made it; the answer is still on its way
        await asyncio.sleep(0.05)
        return {"UploadId": "upload-1"}

    async def abort_multipart_upload(self, **kwargs: Any) -> None:
        self.calls.append(("abort", kwargs["UploadId"]))


class _FakeFs:
    def __init__(self, client: _SlowToAnswerS3) -> None:
        self.client = client

    async def set_session(self) -> None:
        pass

    async def get_s3(self, bucket: str | None = None) -> _SlowToAnswerS3:
        return self.client


def test_interrupt_while_a_multipart_upload_is_being_created_aborts_it(tmp_path: Path) -> None:
    spool = tmp_path / "big.bin"
    spool.write_bytes(b"x" * (s3.PART_SIZE + 1))

    async def interrupted_upload() -> list[tuple[str, str]]:
        client = _SlowToAnswerS3()
        upload = asyncio.ensure_future(
            s3._upload(_FakeFs(client), str(spool), "b", "big.bin", "s3://b/big.bin"))
        await client.made.wait()
        upload.cancel()  # what Ctrl-C does to the upload (see s3._run)
        with pytest.raises(asyncio.CancelledError):
            await upload
        return client.calls

    calls = asyncio.run(interrupted_upload())
    assert calls == [("create", "big.bin"), ("abort", "upload-1")]


def test_upload_left_by_a_killed_writer_is_aborted_by_the_next_attempt(
    bucket: str, moto_endpoint: str, s3_env: dict[str, str], s3_storage: Storage,
    _own_spool: Path,
) -> None:
    url = f"s3://{bucket}/big/killed.bin"
    writer = _start_writer(url, 120, s3_env)
    try:  # as long as the writer is alive (see the test above)
        wait_for(lambda: multipart_uploads(moto_endpoint, bucket) or writer.poll() is not None,
                 timeout=300, what="the writer's multipart upload to start")
        assert writer.poll() is None, "the writer ended before its upload was seen"
        writer.kill()  # SIGKILL: nothing in the writer can clean up
        writer.wait(10)
    finally:
        writer.kill()
    assert keys_under(moto_endpoint, bucket) == []  # no object: it was never completed
    assert len(multipart_uploads(moto_endpoint, bucket)) == 1
    bd.FileTarget(url, storage=s3_storage).cleanup_stale()  # what the runner does first
    assert multipart_uploads(moto_endpoint, bucket) == []
    assert os.listdir(_own_spool) == []


def test_failed_upload_leaves_no_object_and_removes_its_spool(
    bucket: str, moto_server: MotoServer, _own_spool: Path
) -> None:
    proxy = FaultProxy(moto_server.port, ["reset"] * 100)
    try:
        storage = Storage({"s3": {"endpoint_url": proxy.endpoint}})
        target = bd.FileTarget(f"s3://{bucket}/u/x.csv", storage=storage)
        with pytest.raises(TargetError, match=rf"cannot upload s3://{bucket}/u/x\.csv"), \
                target.open("w") as out:
            out.write("never arrives")
    finally:
        proxy.stop()
    assert proxy.served <= 2 * s3.MAX_ATTEMPTS  # bounded: it gave up
    assert keys_under(moto_server.endpoint, bucket) == []
    assert os.listdir(_own_spool) == []


# -- imports -----------------------------------------------------------------------------
def test_importing_batchdeps_and_its_cli_does_not_import_s3fs_or_botocore() -> None:
    code = textwrap.dedent("""
        import sys, batchdeps, batchdeps.cli, batchdeps.api, batchdeps.run.runner
        t = batchdeps.FileTarget("data/x.csv"); t.exists()
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in
                       ("s3fs", "botocore", "aiobotocore", "aiohttp", "fsspec", "boto3"))
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_local_only_run_does_not_import_s3fs_or_botocore(tmp_path: Path) -> None:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "__init__.py").write_text(textwrap.dedent("""
        import batchdeps as bd

        class Local(bd.Task):
            def output(self):
                return bd.FileTarget("out/local.txt")

            def run(self):
                with self.output().open("w") as out:
                    out.write("local")
    """))
    env = {**os.environ, "BATCHDEPS_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("BATCHDEPS_CONFIG", None)
    importing = [sys.executable, "-X", "importtime", "-c",
                 "import sys; from batchdeps.cli import main; sys.argv[0] = 'batchdeps'; main()"]
    for args in (["--help"], ["run", "Local"], ["run", "Local"]):
        done = subprocess.run(importing + args, cwd=tmp_path, env=env, capture_output=True, check=False,
                              text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        imported = {line.split("|")[-1].strip().split(".")[0]
                    for line in done.stderr.splitlines() if line.startswith("import time:")}
        assert "batchdeps" in imported
        assert not imported & {"s3fs", "botocore", "aiobotocore", "aiohttp", "fsspec"}, args
    assert (tmp_path / "out" / "local.txt").read_text() == "local"
