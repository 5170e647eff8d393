"""A task's writes are committed together, through the real command: failures part-way,
kill -9 mid-commit, read-only folders, S3, and staged writes that keep their options."""

# ruff: noqa: F811  (pytest fixtures are imported from s3util by name)

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.project import BATCHDEPS
from support.s3util import (  # noqa: F401 - fixtures
    FAKE_CREDENTIALS,
    boto_client,
    free_port,
    keys_under,
    moto_endpoint,
    moto_server,
    new_bucket,
)
from support.waiting import wait_for

PIPELINE = '''
"""Tasks with many outputs whose run() fails, or kills its own run during the commit."""
import os
import signal
import subprocess
import sys
import threading

import batchdeps as bd


def _kill_when(path, text):
    """SIGKILL this process as soon as `path` holds `text`: the commit is then under way."""
    sys.setswitchinterval(1e-5)  # look between the commit's renames, not after them

    def watch():
        while True:
            try:
                with open(path) as handle:
                    if handle.read() == text:
                        os.kill(os.getpid(), signal.SIGKILL)
            except OSError:
                pass

    threading.Thread(target=watch, daemon=True).start()


def make_read_only(folder):
    if os.geteuid() == 0:  # root ignores permissions, not the immutable flag
        subprocess.run(["chattr", "+i", folder], check=True)
    else:
        os.chmod(folder, 0o555)


class ManyOutputs(bd.Task):
    n = bd.IntParameter(default=3000)

    def output(self):
        return [bd.FileTarget(f"out/{i:05d}.txt") for i in range(self.n)]

    def run(self):
        if os.environ.get("FAIL_RUN"):
            raise RuntimeError("asked to fail")
        tag = os.environ.get("TAG", "new")
        for target in self.output():
            with target.open("w") as out:
                out.write(tag)
        if os.environ.get("KILL_AT_COMMIT"):
            # The first output is moved last; the second is the first one moved.
            _kill_when(self.output()[1].path, tag)


class ThreeFolders(bd.Task):
    def output(self):
        return [bd.FileTarget(f"{name}/{name}.txt") for name in ("a", "b", "c")]

    def run(self):
        for target in self.output():
            with target.open("w") as out:
                out.write(os.environ.get("TAG", "new"))
        if os.environ.get("READ_ONLY"):
            make_read_only(os.environ["READ_ONLY"])


class ThreeObjects(bd.Task):
    """Its first output is uploaded last, so `second` is uploaded first, then `third`."""
    first = bd.Parameter()
    second = bd.Parameter()
    third = bd.Parameter()

    def output(self):
        return [bd.FileTarget(self.first), bd.FileTarget(self.second),
                bd.FileTarget(self.third)]

    def run(self):
        for target in self.output():
            with target.open("w") as out:
                out.write(os.environ.get("TAG", "new"))
        if os.environ.get("DROP_BUCKET"):  # so that the upload of `third` fails at commit
            import boto3
            boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"]).delete_bucket(
                Bucket=os.environ["DROP_BUCKET"])


class Daily(bd.Task):
    """One file per day in one folder; HANG=day stages its output, says so, then waits."""
    day = bd.IntParameter()

    def output(self):
        return bd.FileTarget(f"daily/{self.day}.csv")

    def run(self):
        with self.output().open("w") as out:
            out.write("x" * 100000)
        if os.environ.get("HANG") == str(self.day):
            with open(os.environ["READY"], "w") as ready:
                ready.write(str(os.getpid()))
            signal.pause()


class Report(bd.Task):
    """One folder of many files, committed with one rename (all or nothing)."""

    def output(self):
        return bd.FileTarget("report.d")

    def run(self):
        tag = os.environ.get("TAG", "new")
        with self.output().temporary_path() as folder:
            os.mkdir(folder)
            for i in range(int(os.environ.get("FILES", "200"))):
                with open(os.path.join(folder, f"{tag}-{i:03d}.txt"), "w") as out:
                    out.write(tag)
        if os.environ.get("FAIL_RUN"):
            raise RuntimeError("asked to fail")


class SideWrite(bd.Task):
    """Writes an object that is not one of its outputs, on an endpoint of its own."""
    url = bd.Parameter()

    def output(self):
        return bd.FileTarget("side-done.txt")

    def run(self):
        with bd.FileTarget(self.url, endpoint_url=os.environ["SIDE_ENDPOINT"]).open("w") as out:
            out.write("side")
        with self.output().open("w") as out:
            out.write("done")
'''


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "pipelines").mkdir()
        (root / "pipelines" / "__init__.py").write_text("")
        (root / "pipelines" / "commits.py").write_text(PIPELINE)
        (root / "config.toml").write_text('[batchdeps]\nmodules = ["pipelines"]\n')
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "BATCHDEPS_LOCK_DIR": str(root / "locks"),
            "BATCHDEPS_SPOOL_DIR": str(root / "spool"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BATCHDEPS, "run", *args], cwd=self.root, text=True, check=False,
                              capture_output=True, env={**self.env, **env}, timeout=300)

    def texts(self, folder: str) -> dict[str, str]:
        """Visible files of `folder` and their content."""
        path = self.root / folder
        if not path.exists():
            return {}
        return {p.name: p.read_text() for p in sorted(path.iterdir()) if p.is_file()}

    def tmp_dirs(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob(".batchdeps-tmp"))


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    made = Project(tmp_path)
    yield made
    for name in ("a", "b", "c"):  # undo make_read_only
        folder = tmp_path / name
        if folder.exists():
            if os.geteuid() == 0:
                subprocess.run(["chattr", "-i", str(folder)], check=False)
            os.chmod(folder, 0o755)


# -- kill -9 during the commit ------------------------------------------------------------
def _killed_mid_commit(project: Project, *args: str, tag: str) -> dict[str, str]:
    killed = project.run("ManyOutputs", *args, KILL_AT_COMMIT="1", TAG=tag)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    seen = project.texts("out")
    assert "00000.txt" not in seen or seen["00000.txt"] != tag  # the sentinel is moved last
    assert any(text == tag for text in seen.values())  # it was killed mid-commit
    # inside batchdeps the task is not complete while its commit is unfinished
    dry = project.run("ManyOutputs", "--dry-run")
    assert "1 task(s) would run" in dry.stdout, dry.stdout + dry.stderr
    return seen


def test_kill_9_mid_commit_is_rolled_back_by_the_next_run(project: Project) -> None:
    seen = _killed_mid_commit(project, tag="new")
    assert 0 < len(seen) < 3000
    # the next run takes the task's lock, rolls the commit back, then runs (and fails)
    failed = project.run("ManyOutputs", FAIL_RUN="1")
    assert failed.returncode == 1
    assert "rolled back an interrupted commit" in failed.stderr
    assert project.texts("out") == {}
    assert project.tmp_dirs() == []
    built = project.run("ManyOutputs")
    assert built.returncode == 0, built.stderr[-2000:]
    assert set(project.texts("out").values()) == {"new"}
    assert len(project.texts("out")) == 3000
    assert project.tmp_dirs() == []


def test_kill_9_mid_commit_of_a_forced_rebuild_restores_what_it_replaced(
        project: Project) -> None:
    assert project.run("ManyOutputs", TAG="old").returncode == 0
    seen = _killed_mid_commit(project, "--force", tag="new")
    assert "00000.txt" not in seen  # hidden while the commit is under way
    assert set(seen.values()) == {"old", "new"}
    failed = project.run("ManyOutputs", FAIL_RUN="1")
    assert failed.returncode == 1
    texts = project.texts("out")
    assert len(texts) == 3000 and set(texts.values()) == {"old"}
    assert project.tmp_dirs() == []


# -- a folder output -----------------------------------------------------------------------
def test_folder_output_is_committed_all_or_nothing(project: Project) -> None:
    assert project.run("Report", TAG="old").returncode == 0
    assert sorted(set(project.texts("report.d").values())) == ["old"]
    failed = project.run("Report", "--force", TAG="new", FAIL_RUN="1")
    assert failed.returncode == 1
    old = project.texts("report.d")
    assert len(old) == 200 and set(old.values()) == {"old"}  # untouched
    rebuilt = project.run("Report", "--force", TAG="new", FILES="150")
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    new = project.texts("report.d")
    assert len(new) == 150 and set(new.values()) == {"new"}  # replaced as a whole
    assert project.tmp_dirs() == []


# -- a commit that fails part-way ---------------------------------------------------------
def test_read_only_folder_at_commit_undoes_the_other_outputs(project: Project) -> None:
    done = project.run("ThreeFolders", READ_ONLY="c")
    assert done.returncode == 1
    assert "cannot commit c/c.txt" in done.stdout + done.stderr
    assert [project.texts(f) for f in ("a", "b", "c")] == [{}, {}, {}]


def test_read_only_folder_at_commit_of_a_rebuild_restores_the_old_outputs(
        project: Project) -> None:
    assert project.run("ThreeFolders", TAG="old").returncode == 0
    done = project.run("ThreeFolders", "--force", READ_ONLY="c", TAG="new")
    assert done.returncode == 1
    assert [project.texts(f) for f in ("a", "b", "c")] == [
        {"a.txt": "old"}, {"b.txt": "old"}, {"c.txt": "old"}]
    assert [p for p in project.tmp_dirs() if not p.startswith("c/")] == []


# -- S3 -----------------------------------------------------------------------------------
def _s3_env(project: Project, endpoint: str) -> dict[str, str]:
    (project.root / "config.toml").write_text(textwrap.dedent("""
        [batchdeps]
        modules = ["pipelines"]
        [storage.s3]
        endpoint_url = "${S3_ENDPOINT}"
    """))
    return {**FAKE_CREDENTIALS, "S3_ENDPOINT": endpoint}


def test_s3_upload_failing_after_another_removes_it_and_restores_replaced_ones(
        project: Project, moto_endpoint: str) -> None:
    env = _s3_env(project, moto_endpoint)
    bucket, doomed = new_bucket(moto_endpoint), new_bucket(moto_endpoint)
    client = boto_client(moto_endpoint)
    urls = [f"s3://{bucket}/three/first.txt", f"s3://{bucket}/three/second.txt",
            f"s3://{doomed}/three/third.txt"]
    args = ["--first", urls[0], "--second", urls[1], "--third", urls[2]]
    # run() drops the third object's bucket: its PUT, after the second's, fails at commit
    done = project.run("ThreeObjects", *args, DROP_BUCKET=doomed, **env)
    assert done.returncode == 1
    assert urls[2] in done.stdout + done.stderr
    assert keys_under(moto_endpoint, bucket) == []  # the second object was taken back
    # a rebuild that replaces objects restores them when a later upload fails
    client.create_bucket(Bucket=doomed)
    for key in ("three/first.txt", "three/second.txt"):
        client.put_object(Bucket=bucket, Key=key, Body=b"old")
    done = project.run("ThreeObjects", *args, "--force", DROP_BUCKET=doomed, **env)
    assert done.returncode == 1
    for key in ("three/first.txt", "three/second.txt"):
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"old"
    assert sorted(keys_under(moto_endpoint, bucket)) == [  # no kept copy left behind
        "three/first.txt", "three/second.txt"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_staged_write_keeps_its_own_endpoint(project: Project, moto_endpoint: str,
                                             workers: str) -> None:
    # The configured endpoint is unreachable; the task's own target names the real one.
    env = _s3_env(project, f"http://127.0.0.1:{free_port()}")
    bucket = new_bucket(moto_endpoint)
    done = project.run("SideWrite", "--url", f"s3://{bucket}/side.txt", "--workers", workers,
                       SIDE_ENDPOINT=moto_endpoint, **env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert keys_under(moto_endpoint, bucket) == ["side.txt"]


# -- staged files of dead writers -----------------------------------------------------------
def _start_hanging(project: Project, day: int) -> subprocess.Popen[str]:
    ready = project.root / f"ready-{day}"
    run = subprocess.Popen([BATCHDEPS, "run", "Daily", "--day", str(day)], cwd=project.root,
                           text=True, env={**project.env, "HANG": str(day), "READY": str(ready)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    wait_for(ready.exists, timeout=120, what="the run to stage its output")
    return run


def _staged(project: Project) -> list[str]:
    tmp = project.root / "daily" / ".batchdeps-tmp"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


def test_staged_files_of_a_killed_run_are_removed_by_the_run_that_rebuilds_it(
        project: Project) -> None:
    run_a = _start_hanging(project, 1)
    assert len(_staged(project)) == 1
    os.killpg(run_a.pid, signal.SIGKILL)
    run_a.wait(30)
    run_b = project.run("Daily", "--day", "1")
    assert run_b.returncode == 0, run_b.stderr[-2000:]
    assert (project.root / "daily" / "1.csv").exists()
    assert _staged(project) == []
    assert project.tmp_dirs() == []  # no empty temporary folder either


def test_any_run_committing_into_the_folder_removes_dead_writers_files_only(
        project: Project) -> None:
    run_a = _start_hanging(project, 1)  # a date-partitioned task that never runs again
    try:
        alive = _staged(project)
        # A run of another day while A lives leaves A's staged file alone
        assert project.run("Daily", "--day", "2").returncode == 0
        assert _staged(project) == alive
    finally:
        os.killpg(run_a.pid, signal.SIGKILL)
        run_a.wait(30)
    assert project.run("Daily", "--day", "3").returncode == 0
    assert _staged(project) == []
    assert project.tmp_dirs() == []
    assert sorted(os.listdir(project.root / "daily")) == ["2.csv", "3.csv"]


def test_sweep_waits_for_a_bound_before_removing_another_hosts_files(tmp_path: Path) -> None:
    from batchdeps.targets import staging
    from batchdeps.targets.leftovers import sweep

    tmp = tmp_path / ".batchdeps-tmp"
    tmp.mkdir()
    old, recent = tmp / "a.csv.0000beef-123.abcdef.0", tmp / "b.csv.0000beef-123.abcdef.1"
    for path in (old, recent):
        path.write_text("staged elsewhere")
    stamp = time.time() - staging.STALE_AFTER - 60
    os.utime(old, (stamp, stamp))
    assert sweep(str(tmp)) == 1
    assert sorted(os.listdir(tmp)) == [recent.name]


def test_recovery_of_a_cut_commit_does_not_depend_on_which_output_is_cleaned_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The state kill -9 leaves mid-commit, made step by step, then the next run's clean-up
    starting with an output other than the sentinel."""
    import batchdeps as bd
    from batchdeps.targets import Leftovers, staging_scope
    from batchdeps.targets.commit import commit_order
    from batchdeps.targets.journal import write_record

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    targets = [bd.FileTarget(p) for p in ("x/a.txt", "x/b.txt", "sub/../x/c.txt")]
    for target in targets:
        with target.open("w") as out:
            out.write("old")
    with staging_scope() as staging:
        for target in targets:
            with target.open("w") as out:
                out.write("new")
    order, hide_last = commit_order(list(staging.pending.values()), targets)
    assert order[-1].target is targets[0] and hide_last
    write_record(order, hide_last)  # then the commit starts...
    order[-1].target.keep_previous(order[-1].tmp_path, hide=True)
    first = order[0]
    first.target.keep_previous(first.tmp_path, hide=False)
    first.commit()  # ...and is killed here
    assert not (tmp_path / "x" / "a.txt").exists()  # so the task is not complete
    Leftovers().clean([targets[2], targets[1], targets[0]])  # not the sentinel first
    assert [(tmp_path / "x" / n).read_text() for n in ("a.txt", "b.txt", "c.txt")] == ["old"] * 3
    assert os.listdir(tmp_path / "x" / ".batchdeps-tmp") == []
