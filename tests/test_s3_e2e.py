"""`batchdeps run` against a real S3 endpoint (moto's server): the example pipeline and faults."""

# ruff: noqa: F811  (pytest fixtures are imported from s3util by name)

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support.project import BATCHDEPS
from support.s3util import (  # noqa: F401 - fixtures
    FAKE_CREDENTIALS,
    MotoServer,
    boto_client,
    free_port,
    keys_under,
    moto_endpoint,
    moto_server,
    multipart_uploads,
    new_bucket,
)
from support.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent

# Extra tasks for fault tests, next to the example pipeline.
BLOBS = '''
"""Tasks that write S3 objects and fail, hang or grow on request (test helpers)."""
import os
import time

import batchdeps as bd


class Blob(bd.Task):
    """Writes a side output, then the main one (`mb` MiB); FAIL=name makes it raise."""
    name = bd.Parameter()
    mb = bd.IntParameter(default=0)
    root = bd.Parameter()

    def output(self):
        return {"side": bd.FileTarget(f"{self.root}/{self.name}.side"),
                "main": bd.FileTarget(f"{self.root}/{self.name}.bin")}

    def run(self):
        with self.output()["side"].open("w") as side:
            side.write("side")
        with self.output()["main"].open("wb") as out:
            out.write(b"head")
            for _ in range(self.mb):
                out.write(os.urandom(2**20))
            if os.environ.get("HANG") == self.name:
                with open(os.environ["PID_FILE"], "w") as pid:
                    pid.write(str(os.getpid()))
                time.sleep(120)
            if os.environ.get("FAIL") == self.name:
                raise RuntimeError("asked to fail")
'''


class S3Project:
    """A project folder with the example pipeline, configured to keep its data on S3."""

    def __init__(self, root: Path, endpoint: str, bucket: str) -> None:
        self.root = root
        self.bucket = bucket
        self.endpoint = endpoint
        shutil.copytree(REPO / "pipelines", root / "pipelines",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (root / "pipelines" / "blobs.py").write_text(BLOBS)
        (root / "config.toml").write_text(textwrap.dedent(f"""
            [batchdeps]
            modules = ["pipelines"]
            workers = 2

            [storage.s3]
            endpoint_url = "${{S3_ENDPOINT}}"

            [tasks.WeeklyReport]
            week_end = "2026-11-22"
            root = "s3://{bucket}/weblogs"
        """))
        self.spool = root / "spool"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **FAKE_CREDENTIALS,
            "S3_ENDPOINT": endpoint,
            "BATCHDEPS_LOCK_DIR": str(root / "locks"),
            "BATCHDEPS_SPOOL_DIR": str(self.spool),
            "PID_FILE": str(root / "pid"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BATCHDEPS, "run", *args], cwd=self.root, text=True, check=False,
                              capture_output=True, env={**self.env, **env}, timeout=120)

    def seed(self) -> None:
        subprocess.run([sys.executable, "-m", "pipelines.sample_data", "--lines", "300",
                        "--root", f"s3://{self.bucket}/weblogs"],
                       cwd=self.root, env=self.env, check=True, capture_output=True)

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(keys_under(self.endpoint, self.bucket, prefix))

    def stray(self) -> list[str]:
        """Anything that should not outlive a run: temp keys, multipart uploads, spools."""
        found = [k for k in self.keys() if ".batchdeps" in k]
        found += [u["Key"] for u in multipart_uploads(self.endpoint, self.bucket)]
        found += os.listdir(self.spool) if self.spool.exists() else []
        return found


@pytest.fixture
def project(tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Project:
    for name, value in FAKE_CREDENTIALS.items():  # for this test only: not left set
        if name not in os.environ:
            monkeypatch.setenv(name, value)
    return S3Project(tmp_path, moto_endpoint, new_bucket(moto_endpoint))


def test_example_pipeline_builds_on_s3_then_reruns_as_no_op(project: S3Project) -> None:
    project.seed()
    assert len(project.keys("weblogs/raw/")) == 7
    first = project.run("WeeklyReport")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "15 built" in first.stdout
    assert len(project.keys("weblogs/parsed/")) == 7
    assert len(project.keys("weblogs/daily/")) == 7
    report = boto_client(project.endpoint).get_object(
        Bucket=project.bucket, Key="weblogs/reports/weekly-2026-11-22.md")["Body"].read().decode()
    assert report.startswith("# Web traffic, 2026-11-16 to 2026-11-22")
    assert "Total requests: 2100" in report
    assert project.stray() == []

    second = project.run("WeeklyReport")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 complete" in second.stdout and "built" not in second.stdout


def test_failed_task_leaves_no_object(project: S3Project) -> None:
    root = f"s3://{project.bucket}/blobs"
    failed = project.run("Blob", "--name", "bad", "--root", root, FAIL="bad")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "asked to fail" in failed.stdout + failed.stderr
    assert project.keys() == []  # neither the side output nor the main one
    assert project.stray() == []
    again = project.run("Blob", "--name", "bad", "--root", root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert project.keys() == ["blobs/bad.bin", "blobs/bad.side"]


def test_multipart_output_is_built_and_a_failed_one_leaves_nothing(project: S3Project) -> None:
    root = f"s3://{project.bucket}/big"
    failed = project.run("Blob", "--name", "big", "--mb", "21", "--root", root, FAIL="big")
    assert failed.returncode == 1
    assert project.keys() == [] and project.stray() == []
    built = project.run("Blob", "--name", "big", "--mb", "21", "--root", root)
    assert built.returncode == 0, built.stdout + built.stderr
    head = boto_client(project.endpoint).head_object(Bucket=project.bucket, Key="big/big.bin")
    assert head["ContentLength"] == 21 * 2**20 + 4
    assert head["ETag"].endswith('-3"')  # uploaded in three parts
    assert project.stray() == []
    rerun = project.run("Blob", "--name", "big", "--mb", "21", "--root", root)
    assert rerun.returncode == 0 and "built" not in rerun.stdout


def test_kill_9_of_worker_mid_write_leaves_nothing_and_rerun_cleans_up(
    project: S3Project,
) -> None:
    root = f"s3://{project.bucket}/killed"
    args = ("Blob", "--name", "k", "--mb", "3", "--root", root, "--workers", "2")
    run = subprocess.Popen([BATCHDEPS, "run", *args], cwd=project.root, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env={**project.env, "HANG": "k"})
    pid_file = project.root / "pid"
    try:
        assert wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=60)
        worker = int(pid_file.read_text())
        assert worker != run.pid  # the task runs in a forked worker
        os.kill(worker, signal.SIGKILL)
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 1, out + err
    assert project.keys() == []
    assert multipart_uploads(project.endpoint, project.bucket) == []
    again = project.run(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert project.keys() == ["killed/k.bin", "killed/k.side"]
    assert project.stray() == []  # the dead worker's spool was cleaned up


def _assert_clean_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode != 0
    err = done.stderr
    assert "Traceback" not in err + done.stdout
    lines = [line for line in err.splitlines() if line.startswith("batchdeps: error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "start " not in err  # nothing was run


def test_endpoint_down_is_an_error_not_a_rebuild(project: S3Project) -> None:
    project.seed()
    assert project.run("WeeklyReport").returncode == 0
    before = boto_client(project.endpoint).head_object(
        Bucket=project.bucket, Key="weblogs/reports/weekly-2026-11-22.md")["LastModified"]
    down = project.run("WeeklyReport", S3_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    _assert_clean_error(down, f"s3://{project.bucket}/weblogs/reports/weekly-2026-11-22.md",
                        "cannot reach the S3 endpoint")
    after = boto_client(project.endpoint).head_object(
        Bucket=project.bucket, Key="weblogs/reports/weekly-2026-11-22.md")["LastModified"]
    assert after == before
    up = project.run("WeeklyReport")
    assert up.returncode == 0 and "built" not in up.stdout


@pytest.fixture(scope="module")
def auth_server() -> Any:
    server = MotoServer({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    yield server
    server.stop()


def test_wrong_credentials_are_an_error_not_a_rebuild(project: S3Project,
                                                      auth_server: MotoServer) -> None:
    done = project.run("WeeklyReport", S3_ENDPOINT=auth_server.endpoint,
                       AWS_ACCESS_KEY_ID="AKIAWRONGWRONG", AWS_SECRET_ACCESS_KEY="wrong")
    _assert_clean_error(done, f"s3://{project.bucket}/weblogs/reports/weekly-2026-11-22.md",
                        "access denied", "credentials")


def test_missing_credentials_are_an_error(project: S3Project) -> None:
    env = {**project.env, "AWS_SHARED_CREDENTIALS_FILE": str(project.root / "none"),
           "AWS_CONFIG_FILE": str(project.root / "none")}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(name)
    done = subprocess.run([BATCHDEPS, "run", "WeeklyReport"], cwd=project.root, text=True, check=False,
                          capture_output=True, env=env, timeout=120)
    _assert_clean_error(done, "s3://", "no AWS credentials")


def test_missing_bucket_is_an_error_naming_it_not_missing_input(project: S3Project) -> None:
    project.seed()
    typo = f"{project.bucket}-typo"
    done = project.run("WeeklyReport", "--root", f"s3://{typo}/weblogs")
    assert done.returncode == 1, done.stdout + done.stderr
    _assert_clean_error(done, f"bucket '{typo}' does not exist")
    assert "missing input" not in done.stdout + done.stderr


@pytest.fixture
def not_s3() -> Any:
    """An HTTP server that answers 404 with a web page to everything (not S3's error body)."""
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = b"<html><body>Not Found</body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_endpoint_that_is_not_s3_answering_404_is_an_error_naming_the_bucket(
        project: S3Project, not_s3: str) -> None:
    done = project.run("WeeklyReport", S3_ENDPOINT=not_s3)
    assert done.returncode == 1, done.stdout + done.stderr
    _assert_clean_error(done, f"bucket '{project.bucket}' does not exist")
    assert "missing input" not in done.stdout + done.stderr


def _run_with_default_spool(project: S3Project, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in project.env.items() if k != "BATCHDEPS_SPOOL_DIR"}
    return subprocess.run([BATCHDEPS, "run", "WeeklyReport"], cwd=project.root, text=True,
                          check=False, capture_output=True, env={**env, "TMPDIR": str(tmp)},
                          timeout=120)


def test_default_spool_folder_is_private(project: S3Project) -> None:
    project.seed()
    tmp = project.root / "tmp"
    tmp.mkdir(mode=0o777)
    done = _run_with_default_spool(project, tmp)
    assert done.returncode == 0, done.stderr[-2000:]
    spool = tmp / f"batchdeps-spool-{os.getuid()}"
    assert spool.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("squat", ["other-owner", "world-writable"])
def test_squatted_spool_folder_is_refused(project: S3Project, squat: str) -> None:
    if squat == "other-owner" and os.geteuid() != 0:
        pytest.skip("only root can make a folder owned by another user")
    project.seed()
    tmp = project.root / "tmp"
    tmp.mkdir(mode=0o777)
    spool = tmp / f"batchdeps-spool-{os.getuid()}"
    spool.mkdir()
    if squat == "other-owner":
        os.chown(spool, 4242, 4242)
        spool.chmod(0o700)
    else:
        spool.chmod(0o777)
    done = _run_with_default_spool(project, tmp)
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert f"refusing the spool folder {spool}" in output
    assert ("owned by another user" if squat == "other-owner" else "others can write") in output
    assert project.keys("weblogs/clean") == []  # nothing went through the squatted folder
    assert list(spool.iterdir()) == []
