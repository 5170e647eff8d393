"""The Dask executor through the real command, on real clusters.

Two kinds of cluster: the `distributed.LocalCluster` that `batchdeps run --executor dask`
starts itself (two worker processes), and, shared by the tests of this module, a
`dask scheduler` with two `dask worker` processes on 127.0.0.1, each worker in a working
folder of its own, reached with `--scheduler`. Outputs go to the moto S3 server the suite
starts, or to a local folder declared in `[executor] shared_paths`.

Every run() appends a line to a journal file (a local file every process here reaches), so
a test can count how often each task really ran, and where.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.forward import Forwarder
from support.lockutil import LockServer
from support.project import BATCHDEPS
from support.s3util import (  # noqa: F401 - moto_server, moto_endpoint: fixtures
    FAKE_CREDENTIALS,
    boto_client,
    free_port,
    keys_under,
    moto_endpoint,
    moto_server,
    new_bucket,
)
from support.waiting import wait_for

pytest.importorskip("distributed")

PIPELINE = '''
"""Dask test pipeline: Total(n) <- Part(i); Slow, Stamped and Hang for the fault cases."""
import os
import subprocess
import time

import batchdeps as bd


def note(journal, what, task):
    line = f"{what} {task.task_id} pid={os.getpid()} parent={os.getppid()}\\n"
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class Part(bd.Task):
    """Part i of a total; prints a line (it goes to the task log)."""
    i = bd.IntParameter()
    root = bd.Parameter()
    journal = bd.Parameter()
    pause = bd.FloatParameter(default=0.0)

    def output(self):
        return bd.FileTarget(f"{self.root}/part-{self.i}.txt")

    def run(self):
        note(self.journal, "start", self)
        print(f"making part {self.i}")
        time.sleep(self.pause)
        with self.output().open("w") as out:
            out.write(f"{self.i * self.i}\\n")
        note(self.journal, "end", self)


class Total(bd.Task):
    """The sum of n parts."""
    n = bd.IntParameter(default=4)
    root = bd.Parameter()
    journal = bd.Parameter()
    pause = bd.FloatParameter(default=0.0)

    def requires(self):
        return [Part(i=i, root=self.root, journal=self.journal, pause=self.pause)
                for i in range(self.n)]

    def output(self):
        return bd.FileTarget(f"{self.root}/total.txt")

    def run(self):
        note(self.journal, "start", self)
        total = 0
        for target in self.input():
            with target.open("r") as src:
                total += int(src.read())
        with self.output().open("w") as out:
            out.write(f"{total}\\n")
        note(self.journal, "end", self)


class Slow(bd.Task):
    """Writes `text()` to its output, then sleeps `seconds` inside run() (the write is
    staged)."""
    root = bd.Parameter()
    journal = bd.Parameter()
    seconds = bd.FloatParameter(default=3.0)
    retries = 1
    retry_delay = 0.1
    name = "slow"

    def text(self):
        return "slow\\n"

    def output(self):
        return bd.FileTarget(f"{self.root}/{self.name}.txt")

    def run(self):
        note(self.journal, "start", self)
        with self.output().open("w") as out:
            out.write(self.text())
        time.sleep(self.seconds)
        note(self.journal, "end", self)


class Stamped(Slow):
    """Slow that writes the pid of its attempt's process."""
    name = "stamped"

    def text(self):
        return f"{os.getpid()}\\n"


class Hang(bd.Task):
    """Starts a child process that sleeps, then waits; stopped only by a kill."""
    root = bd.Parameter()
    journal = bd.Parameter()
    timeout = 1.5

    def output(self):
        return bd.FileTarget(f"{self.root}/hang.txt")

    def run(self):
        child = subprocess.Popen(["sleep", "600"])
        note(self.journal, f"child={child.pid}", self)
        time.sleep(600)


class Waits(Hang):
    """As Hang, with no timeout: a stop of the runner must reach it."""
    timeout = None


class Gather(bd.Task):
    """Finds out in run() that it needs parts (dynamic dependencies), then sums them."""
    n = bd.IntParameter(default=2)
    root = bd.Parameter()
    journal = bd.Parameter()

    def output(self):
        return bd.FileTarget(f"{self.root}/gather.txt")

    def run(self):
        note(self.journal, "start", self)
        targets = yield [Part(i=i, root=self.root, journal=self.journal)
                         for i in range(self.n)]
        total = 0
        for target in targets:
            with target.open("r") as src:
                total += int(src.read())
        with self.output().open("w") as out:
            out.write(f"{total}\\n")
        note(self.journal, "end", self)


class Late(bd.WrapperTask):
    """Two quick parts and a Slow one: the run goes on after the parts are built."""
    root = bd.Parameter()
    journal = bd.Parameter()
    seconds = bd.FloatParameter(default=3.0)

    def requires(self):
        return [Part(i=0, root=self.root, journal=self.journal),
                Part(i=1, root=self.root, journal=self.journal),
                Slow(root=self.root, journal=self.journal, seconds=self.seconds)]
'''

LOCAL_ONLY = '''
"""A module only the runner's folder has: the workers cannot import it."""
import batchdeps as bd


class Hidden(bd.Task):
    root = bd.Parameter()
    journal = bd.Parameter()

    def output(self):
        return bd.FileTarget(f"{self.root}/hidden.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("hidden\\n")
'''


def _env(code: Path, endpoint: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FAKE_CREDENTIALS)
    env["S3_ENDPOINT"] = endpoint
    env["PYTHONPATH"] = str(code)
    env["DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT"] = "3s"
    env.pop("BATCHDEPS_LOCK_URL", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pipeline module, on the import path of the runners and of every worker."""
    folder = tmp_path_factory.mktemp("code")
    (folder / "dpipe.py").write_text(PIPELINE)
    return folder


class Cluster:
    """A `dask scheduler` and `dask worker` processes (two unless told), each worker in its
    own folder; the scheduler without a dashboard unless `dashboard_port` is given."""

    def __init__(self, base: Path, env: dict[str, str], workers: int = 2,
                 dashboard_port: int | None = None) -> None:
        self.base, self.env = base, env
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.dask = os.path.join(os.path.dirname(sys.executable), "dask")
        dashboard = (["--dashboard-address", f"127.0.0.1:{dashboard_port}"]
                     if dashboard_port else ["--no-dashboard"])
        self.processes = [subprocess.Popen(
            [self.dask, "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
             *dashboard], cwd=base, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)]
        for _ in range(workers):
            self.add_worker()
        if workers:
            self.wait_for_workers(workers)

    def add_worker(self, address: str | None = None) -> subprocess.Popen[bytes]:
        """One more `dask worker` process, reaching the scheduler at `address` (default:
        the scheduler's own)."""
        folder = self.base / f"worker-{len(self.processes) - 1}"
        folder.mkdir()
        process = subprocess.Popen(
            [self.dask, "worker", address or self.address, "--nthreads", "1",
             "--no-dashboard", "--no-nanny", "--local-directory", str(folder), "--host",
             "127.0.0.1"], cwd=folder, env=self.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(count, timeout=60)

    def worker_ports(self) -> list[int]:
        """The listening ports of the worker processes (their addresses' ports)."""
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            return [int(address.rsplit(":", 1)[1])
                    for address in client.scheduler_info()["workers"]]

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, code: Path,
            moto_endpoint: str) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("cluster"), _env(code, moto_endpoint))
    yield running
    running.stop()


class Runner:
    """A project folder (config.toml) whose `batchdeps run` uses the test pipeline."""

    def __init__(self, folder: Path, code: Path, endpoint: str, executor: str = "") -> None:
        self.folder = folder
        self.code = code
        self.endpoint = endpoint
        self.journal = folder / "journal.txt"
        self.env = _env(code, endpoint)
        self.write_config(executor)

    def write_config(self, executor: str = "", modules: str = '["dpipe"]') -> None:
        (self.folder / "config.toml").write_text(textwrap.dedent(f"""
            [batchdeps]
            modules = {modules}
            task_logs = "auto"

            [storage.s3]
            endpoint_url = "{self.endpoint}"
            {executor}
            """))

    def command(self, *args: str) -> list[str]:
        return [BATCHDEPS, "run", *args, "--journal", str(self.journal)]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), cwd=self.folder, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(*args), cwd=self.folder, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def lines(self) -> list[str]:
        return self.journal.read_text().splitlines() if self.journal.exists() else []

    def starts(self) -> Counter[str]:
        return Counter(line.split(" pid=")[0].removeprefix("start ")
                       for line in self.lines() if line.startswith("start "))


def _object(endpoint: str, bucket: str, key: str) -> str | None:
    try:
        body = boto_client(endpoint).get_object(Bucket=bucket, Key=key)["Body"]
    except Exception:  # noqa: BLE001 - NoSuchKey
        return None
    return body.read().decode()  # type: ignore[no-any-return]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:  # a zombie is gone too
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:  # gone between the two looks
        return True


# -- a LocalCluster that batchdeps starts ----------------------------------------------
def test_local_cluster_builds_the_same_outputs_as_local_workers_then_has_nothing_to_do(
        tmp_path: Path, code: Path, moto_endpoint: str) -> None:
    bucket = new_bucket(moto_endpoint)
    runner = Runner(tmp_path, code, moto_endpoint)
    local = runner.run("Total", "--root", f"s3://{bucket}/local", "--executor", "local",
                       "--workers", "2")
    assert local.returncode == 0, local.stderr
    done = runner.run("Total", "--root", f"s3://{bucket}/dask", "--executor", "dask",
                      "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert "Dask dashboard: http://127.0.0.1:" in done.stderr
    for name in ["total.txt", *(f"part-{i}.txt" for i in range(4))]:
        assert _object(moto_endpoint, bucket, f"dask/{name}") == \
            _object(moto_endpoint, bucket, f"local/{name}") is not None
    assert _object(moto_endpoint, bucket, "dask/total.txt") == "14\n"
    assert [k for k in keys_under(moto_endpoint, bucket) if ".batchdeps-tmp" in k] == []
    # Each attempt ran on one of the two worker processes: their pids, not the runner's.
    dask_parents = {line.split("parent=")[1] for line in runner.lines()[-10:]}
    assert len(dask_parents) == 2
    # Where each attempt ran, in the log lines and in the history.
    assert "built Part(i=0" in done.stderr and " on tcp://127.0.0.1:" in done.stderr
    history = subprocess.run([BATCHDEPS, "history", "--json", "--limit", "5"], cwd=tmp_path,
                             env=runner.env, capture_output=True, text=True, check=True)
    hosts = {record["host"] for record in json.loads(history.stdout)}
    assert all(host.startswith("tcp://127.0.0.1:") for host in hosts), hosts
    # The task's printed line came back to the runner's log folder.
    logs = list((tmp_path / "logs" / "Part").rglob("*.log"))
    assert logs and any("making part" in log.read_text() for log in logs)

    runs = len(runner.lines())
    again = runner.run("Total", "--root", f"s3://{bucket}/dask", "--executor", "dask",
                       "--workers", "2")
    assert again.returncode == 0, again.stderr
    assert len(runner.lines()) == runs  # no run() at all
    assert "Dask dashboard" not in again.stderr  # nothing to do: no cluster started


def test_kill_9_of_a_dask_worker_mid_task_is_a_failed_attempt_then_retried(
        tmp_path: Path, code: Path, moto_endpoint: str) -> None:
    bucket = new_bucket(moto_endpoint)
    runner = Runner(tmp_path, code, moto_endpoint)
    process = runner.start("Slow", "--root", f"s3://{bucket}/w", "--seconds", "4",
                           "--executor", "dask", "--workers", "2")
    wait_for(lambda: runner.lines() or process.poll() is not None, timeout=60)
    first = runner.lines()[0]
    worker_pid = int(first.split("parent=")[1])
    os.kill(worker_pid, signal.SIGKILL)
    out, err = process.communicate(timeout=90)
    assert process.returncode == 0, err
    assert "was lost while running the attempt" in err
    assert sum(runner.starts().values()) == 2  # the retry, and no quiet re-run by Dask
    assert sum(1 for line in runner.lines() if line.startswith("end ")) == 1
    assert _object(moto_endpoint, bucket, "w/slow.txt") == "slow\n"
    assert [k for k in keys_under(moto_endpoint, bucket) if ".batchdeps-tmp" in k] == []


def test_a_timeout_kills_the_attempt_and_its_children_on_the_worker(
        tmp_path: Path, code: Path, moto_endpoint: str) -> None:
    runner = Runner(tmp_path, code, moto_endpoint)
    done = runner.run("Hang", "--root", str(tmp_path / "out"), "--executor", "dask",
                      "--workers", "2")
    assert done.returncode == 1, done.stderr
    assert "timed out after 1.5 s" in done.stderr
    child = int(runner.lines()[0].split("child=")[1].split()[0])
    assert wait_for(lambda: _gone(child), timeout=5)
    assert not (tmp_path / "out" / "hang.txt").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_of_the_runner_stops_the_attempt_on_the_worker(
        tmp_path: Path, code: Path, moto_endpoint: str, signum: int) -> None:
    runner = Runner(tmp_path, code, moto_endpoint)
    process = runner.start("Waits", "--root", str(tmp_path / "out"), "--executor", "dask",
                           "--workers", "2")
    wait_for(lambda: runner.lines() or process.poll() is not None, timeout=60)
    child = int(runner.lines()[0].split("child=")[1].split()[0])
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert wait_for(lambda: _gone(child), timeout=5)
    assert "Traceback" not in err


def test_without_dask_installed_the_error_names_the_extra(tmp_path: Path, code: Path,
                                                          moto_endpoint: str) -> None:
    runner = Runner(tmp_path, code, moto_endpoint)
    blocked = ("import sys; sys.modules['distributed'] = None; sys.argv = ['batchdeps'] + "
               "sys.argv[1:]; from batchdeps.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", blocked, "run", "Total", "--root",
                           str(tmp_path / "out"), "--journal", str(runner.journal),
                           "--executor", "dask"], cwd=tmp_path, env=runner.env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "batchdeps[dask]" in done.stderr and "Traceback" not in done.stderr
    assert not runner.journal.exists()


# -- an existing cluster: --scheduler ----------------------------------------------------
def test_scheduler_builds_on_a_declared_shared_folder(tmp_path: Path, code: Path,
                                                      moto_endpoint: str,
                                                      cluster: Cluster) -> None:
    runner = Runner(tmp_path, code, moto_endpoint,
                    f'[executor]\nkind = "dask"\naddress = "{cluster.address}"\n'
                    f'shared_paths = ["{tmp_path}"]')
    done = runner.run("Total", "--root", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "total.txt").read_text() == "14\n"
    # `dask scheduler --no-dashboard`: its HTTP server has no dashboard, so no link.
    assert "Dask dashboard" not in done.stderr
    assert f"Dask scheduler {cluster.address} (2 worker thread(s); no dashboard)" in done.stderr
    assert not list((tmp_path / "out").glob(".batchdeps-tmp/*"))
    # The attempts ran in the two `dask worker` processes.
    parents = {line.split("parent=")[1] for line in runner.lines()}
    assert parents <= {str(p.pid) for p in cluster.processes[1:]} and len(parents) == 2
    # Each worker thread keeps one attempt process: 5 attempts ran in 2 processes.
    assert len({line.split("pid=")[1].split()[0] for line in runner.lines()}) == 2
    again = runner.run("Total", "--root", str(tmp_path / "out"))
    assert again.returncode == 0 and len(runner.lines()) == 10


def test_scheduler_refuses_an_undeclared_local_path_before_anything_runs(
        tmp_path: Path, code: Path, moto_endpoint: str, cluster: Cluster) -> None:
    runner = Runner(tmp_path, code, moto_endpoint)
    done = runner.run("Total", "--root", str(tmp_path / "out"), "--scheduler",
                      cluster.address)
    assert done.returncode == 2, done.stderr
    assert "Part(i=0" in done.stderr or "Total(" in done.stderr
    assert str(tmp_path / "out") in done.stderr and "shared_paths" in done.stderr
    assert "Traceback" not in done.stderr
    assert not runner.journal.exists()


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path: Path, code: Path,
                                                   moto_endpoint: str) -> None:
    bucket = new_bucket(moto_endpoint)
    runner = Runner(tmp_path, code, moto_endpoint)
    address = f"tcp://127.0.0.1:{free_port()}"
    done = runner.run("Total", "--root", f"s3://{bucket}/x", "--scheduler", address)
    assert done.returncode in (1, 2), done.stderr
    assert f"cannot reach the Dask scheduler at {address}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not runner.journal.exists()


def test_a_worker_that_cannot_import_the_module_fails_the_task_naming_both(
        tmp_path: Path, code: Path, moto_endpoint: str, cluster: Cluster) -> None:
    bucket = new_bucket(moto_endpoint)
    runner = Runner(tmp_path, code, moto_endpoint)
    runner.write_config(modules='["dpipe", "dpipe_local"]')
    (tmp_path / "dpipe_local.py").write_text(LOCAL_ONLY)
    done = runner.run("Hidden", "--root", f"s3://{bucket}/h", "--scheduler",
                      cluster.address)
    assert done.returncode == 1, done.stderr
    assert "cannot import module 'dpipe_local'" in done.stderr
    assert f"Dask worker tcp://127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr
    assert _object(moto_endpoint, bucket, "h/hidden.txt") is None


def test_runner_kill_9_leaves_no_output_and_the_rerun_cleans_staging(
        tmp_path: Path, code: Path, moto_endpoint: str, cluster: Cluster) -> None:
    bucket = new_bucket(moto_endpoint)
    runner = Runner(tmp_path, code, moto_endpoint)
    root = f"s3://{bucket}/k"
    process = runner.start("Slow", "--root", root, "--seconds", "3", "--scheduler",
                           cluster.address)
    wait_for(lambda: runner.lines() or process.poll() is not None, timeout=60,
             what="the attempt to start")
    assert process.poll() is None, process.communicate()[1]
    started = time.monotonic()
    attempt_pid = int(runner.lines()[0].split("pid=")[1].split()[0])
    process.kill()
    process.communicate(timeout=30)
    # The attempt is stopped once the scheduler sees the runner's client go away (the
    # worker then ends the attempt's process group), and nothing ever commits its write.
    wait_for(lambda: _gone(attempt_pid), timeout=30, what="the attempt's process to end")
    # Past the time the attempt would have taken: no other worker ran it meanwhile.
    time.sleep(max(0.0, started + 4.0 - time.monotonic()))
    assert _object(moto_endpoint, bucket, "k/slow.txt") is None
    assert len(runner.lines()) == 1, runner.lines()  # its start, no end, no re-run
    # What an attempt that died after handing its write over would leave: a staging object.
    boto_client(moto_endpoint).put_object(
        Bucket=bucket, Key="k/.batchdeps-tmp/slow.txt.0badc0de-4242.abcdef.0", Body=b"x")
    again = runner.run("Slow", "--root", root, "--seconds", "0", "--scheduler",
                       cluster.address)
    assert again.returncode == 0, again.stderr
    assert _object(moto_endpoint, bucket, "k/slow.txt") == "slow\n"
    assert [k for k in keys_under(moto_endpoint, bucket) if ".batchdeps-tmp" in k] == []


def test_two_runs_on_one_cluster_with_the_lock_server_build_each_task_once(
        tmp_path: Path, code: Path, moto_endpoint: str, cluster: Cluster) -> None:
    server = LockServer(tmp_path / "locks.db").start()
    try:
        bucket = new_bucket(moto_endpoint)
        runner = Runner(tmp_path, code, moto_endpoint)
        runner.env.update(BATCHDEPS_LOCK_TOKEN=server.token)
        args = ("Total", "--n", "6", "--root", f"s3://{bucket}/t", "--pause", "0.3",
                "--scheduler", cluster.address, "--lock-url", server.url)
        first, second = runner.start(*args), runner.start(*args)
        results = [p.communicate(timeout=120) for p in (first, second)]
        assert first.returncode == 0, results[0][1]
        assert second.returncode == 0, results[1][1]
        starts = runner.starts()
        assert len(starts) == 7 and set(starts.values()) == {1}, starts
        assert _object(moto_endpoint, bucket, "t/total.txt") == "55\n"
    finally:
        server.stop()


def test_the_example_pipeline_builds_on_a_local_cluster_as_with_local_workers(
        tmp_path: Path) -> None:
    """The README's `batchdeps run WeeklyReport --executor dask`, beside `--executor local`."""
    repo = Path(__file__).resolve().parent.parent
    outputs = {}
    for kind in ("local", "dask"):
        folder = tmp_path / kind
        shutil.copytree(repo / "pipelines", folder / "pipelines",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(repo / "config.toml", folder / "config.toml")
        env = {"BATCHDEPS_LOCK_DIR": str(folder / "locks"), "PATH": "/usr/bin:/bin"}
        subprocess.run([sys.executable, "-m", "pipelines.sample_data", "--lines", "200"],
                       cwd=folder, env=env, check=True, capture_output=True)
        done = subprocess.run([BATCHDEPS, "run", "WeeklyReport", "--executor", kind],
                              cwd=folder, env=env, text=True, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "15 built" in done.stdout
        outputs[kind] = {str(p.relative_to(folder)): p.read_bytes()
                         for p in sorted((folder / "data").rglob("*"))
                         if p.is_file() and ".batchdeps-tmp" not in p.parts}
    assert outputs["dask"] == outputs["local"] and len(outputs["dask"]) > 15


def test_upload_pipelines_lets_workers_without_the_module_run_it(
        tmp_path: Path, code: Path, moto_endpoint: str, cluster: Cluster) -> None:
    bucket = new_bucket(moto_endpoint)
    runner = Runner(tmp_path, code, moto_endpoint)
    runner.write_config(modules='["dpipe", "dpipe_sent"]')
    (tmp_path / "dpipe_sent.py").write_text(LOCAL_ONLY)
    done = runner.run("Hidden", "--root", f"s3://{bucket}/u", "--scheduler",
                      cluster.address, "--upload-pipelines")
    assert done.returncode == 0, done.stderr
    assert _object(moto_endpoint, bucket, "u/hidden.txt") == "hidden\n"


def test_a_yielding_run_reruns_from_the_top_once_its_yielded_tasks_are_built(
        tmp_path: Path, code: Path, moto_endpoint: str, cluster: Cluster) -> None:
    bucket = new_bucket(moto_endpoint)
    runner = Runner(tmp_path, code, moto_endpoint)
    done = runner.run("Gather", "--n", "3", "--root", f"s3://{bucket}/g", "--scheduler",
                      cluster.address)
    assert done.returncode == 0, done.stderr
    assert _object(moto_endpoint, bucket, "g/gather.txt") == "5\n"  # 0 + 1 + 4
    starts = runner.starts()
    gather = next(key for key in starts if key.startswith("Gather("))
    # Stopped at the yield on a worker, then run again from the top; each part built once.
    assert starts[gather] == 2, starts
    assert sorted(v for k, v in starts.items() if k.startswith("Part(")) == [1, 1, 1]
    assert sum(1 for line in runner.lines() if line.startswith("end Gather(")) == 1
    assert [k for k in keys_under(moto_endpoint, bucket) if ".batchdeps-tmp" in k] == []
    again = runner.run("Gather", "--n", "3", "--root", f"s3://{bucket}/g", "--scheduler",
                       cluster.address)
    assert again.returncode == 0 and sum(runner.starts().values()) == 5


def test_the_operator_view_names_the_worker_of_each_attempt(
        tmp_path: Path, code: Path, moto_endpoint: str, cluster: Cluster) -> None:
    """Log lines, `status`, `history`, the status page and the task logs say where each
    attempt ran; the page shows it while the run is still going."""
    from batchdeps.config import load_config
    from batchdeps.history.listener import history_path
    from batchdeps.history.store import HistoryStore
    from batchdeps.web.page import render
    from batchdeps.web.status import page_data

    bucket = new_bucket(moto_endpoint)
    runner = Runner(tmp_path, code, moto_endpoint)
    root = f"s3://{bucket}/o"
    workers = {f"tcp://127.0.0.1:{port}" for port in cluster.worker_ports()}
    process = runner.start("Late", "--root", root, "--seconds", "4", "--scheduler",
                           cluster.address)
    try:
        config = load_config(str(tmp_path / "config.toml"), environ={})
        path = history_path(config)

        def page_names_a_worker() -> str:
            if process.poll() is not None or not os.path.exists(path):
                return ""
            store = HistoryStore(path)
            try:
                html = render(page_data(store, {}, title="t", source="s"))
            finally:
                store.close()
            return html if any(f"<td>{w}</td>" in html for w in workers) else ""

        # Parts built, Slow still running: the run's table names their workers.
        html = wait_for(page_names_a_worker, timeout=60, what="the page naming a worker")
        assert "<th>worker</th>" in html and "Part(i=0" in html
        _, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    # The log lines.
    built_on = [line for line in err.splitlines() if "built Part(i=0" in line]
    assert built_on and any(f" on {w}" in built_on[0] for w in workers), err
    # batchdeps status: the worker of each task's last attempt.
    status = subprocess.run([BATCHDEPS, "status", "Late", "--root", root, "--seconds", "4",
                             "--journal", str(runner.journal), "--format", "json"], cwd=tmp_path,
                            env=runner.env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    nodes = {n["task_id"].split("(")[0]: n for n in json.loads(status.stdout)["nodes"]}
    assert nodes["Part"]["worker"] in workers and nodes["Slow"]["worker"] in workers
    assert nodes["Late"]["worker"] is None  # a wrapper: no attempt ran anywhere
    text = subprocess.run([BATCHDEPS, "status", "Late", "--root", root, "--seconds", "4",
                           "--journal", str(runner.journal)], cwd=tmp_path, env=runner.env,
                          capture_output=True, text=True, timeout=60).stdout
    assert "last attempt ran on tcp://127.0.0.1:" in text
    # batchdeps history, text and JSON.
    listing = subprocess.run([BATCHDEPS, "history", "--limit", "10"], cwd=tmp_path,
                             env=runner.env, capture_output=True, text=True, check=True)
    assert any(f"on {w}" in listing.stdout for w in workers), listing.stdout
    records = json.loads(subprocess.run(
        [BATCHDEPS, "history", "--json", "--limit", "10"], cwd=tmp_path, env=runner.env,
        capture_output=True, text=True, check=True).stdout)
    assert {r["host"] for r in records if r["task_id"].startswith(("Part", "Slow"))} <= workers
    # Each attempt's output came back to the runner's log folder.
    logs = list((tmp_path / "logs" / "Part").rglob("*.log"))
    assert len(logs) == 2 and all("making part" in log.read_text() for log in logs)


def test_a_worker_lost_on_an_external_scheduler_fails_the_attempt_then_the_retry_builds(
        tmp_path: Path, code: Path, moto_endpoint: str) -> None:
    """kill -9 of a `dask worker` process mid-task: the scheduler drops it, the runner
    hears of it, fails the attempt (Slow retries once) and commits one result."""
    bucket = new_bucket(moto_endpoint)
    (tmp_path / "cluster").mkdir()
    own = Cluster(tmp_path / "cluster", _env(code, moto_endpoint))
    try:
        runner = Runner(tmp_path, code, moto_endpoint)
        process = runner.start("Slow", "--root", f"s3://{bucket}/x", "--seconds", "4",
                               "--scheduler", own.address)
        wait_for(lambda: runner.lines() or process.poll() is not None, timeout=60)
        first = runner.lines()[0]
        attempt_pid = int(first.split("pid=")[1].split()[0])
        worker_pid = int(first.split("parent=")[1])
        assert worker_pid in {p.pid for p in own.processes[1:]}
        os.kill(worker_pid, signal.SIGKILL)
        _, err = process.communicate(timeout=90)
        assert process.returncode == 0, err
        assert "was lost while running the attempt" in err and "retry Slow(" in err
        assert wait_for(lambda: _gone(attempt_pid), timeout=10)  # it died with its worker
        # Built by the retry on the other worker, and committed once.
        ends = [line for line in runner.lines() if line.startswith("end ")]
        assert len(ends) == 1 and f"parent={worker_pid}" not in ends[0]
        assert _object(moto_endpoint, bucket, "x/slow.txt") == "slow\n"
        assert [k for k in keys_under(moto_endpoint, bucket) if ".batchdeps-tmp" in k] == []
        records = json.loads(subprocess.run(
            [BATCHDEPS, "history", "--json", "--limit", "1"], cwd=tmp_path, env=runner.env,
            capture_output=True, text=True, check=True).stdout)
        assert records[0]["status"] == "built" and records[0]["attempts"] == 2
    finally:
        own.stop()


def test_build_api_takes_the_executor_and_the_scheduler(
        tmp_path: Path, code: Path, moto_endpoint: str, cluster: Cluster) -> None:
    bucket = new_bucket(moto_endpoint)
    runner = Runner(tmp_path, code, moto_endpoint)
    script = textwrap.dedent(f"""
        import sys
        import batchdeps as bd
        import dpipe

        config = bd.load_config("config.toml")
        task = dpipe.Total(n=2, root="s3://{bucket}/b", journal={str(runner.journal)!r})
        result = bd.build(task, config=config, executor="dask", scheduler={cluster.address!r})
        print(result.counts())
        try:
            bd.build(task, config=config, executor="nope", force=True)
        except bd.BatchdepsError as exc:
            print("refused:", exc)
        sys.exit(result.exit_code)
        """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=runner.env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert _object(moto_endpoint, bucket, "b/total.txt") == "1\n"
    parents = {line.split("parent=")[1] for line in runner.lines()}
    assert parents <= {str(p.pid) for p in cluster.processes[1:]}, parents
    assert "refused: unknown executor 'nope' (known: dask, inline, local" in done.stdout
    assert len(runner.lines()) == 6  # the refused build ran nothing


def test_a_network_drop_between_a_worker_and_the_scheduler_fails_the_attempt_once(
        tmp_path: Path, code: Path, moto_endpoint: str) -> None:
    """The connections of a `dask worker` to the scheduler go through a forwarder, cut
    mid-attempt: the scheduler loses the worker while its process (and the attempt) live
    on. The runner fails the attempt, the retry builds on the other worker, and the
    cut-off attempt, which finishes later, commits nothing."""
    bucket = new_bucket(moto_endpoint)
    (tmp_path / "cluster").mkdir()
    own = Cluster(tmp_path / "cluster", _env(code, moto_endpoint), workers=0)
    forwarder = Forwarder(own.port).start()
    try:
        cut_off = own.add_worker(f"tcp://127.0.0.1:{forwarder.port}")
        own.wait_for_workers(1)
        runner = Runner(tmp_path, code, moto_endpoint)
        process = runner.start("Stamped", "--root", f"s3://{bucket}/n", "--seconds", "8",
                               "--scheduler", own.address)
        wait_for(lambda: runner.lines() or process.poll() is not None, timeout=60,
                 what="the attempt to start")
        first = runner.lines()[0]
        assert f"parent={cut_off.pid}" in first, first  # the only worker yet
        first_pid = int(first.split("pid=")[1].split()[0])
        other = own.add_worker()  # where the retry can go
        own.wait_for_workers(2)
        assert forwarder.accepted  # the worker's connections go through it
        assert not any(line.startswith("end ") for line in runner.lines())
        forwarder.cut()
        assert cut_off.poll() is None and not _gone(first_pid)  # lost, not dead
        _, err = process.communicate(timeout=90)
        assert process.returncode == 0, err
        assert "was lost while running the attempt" in err and "retry Stamped(" in err
        assert err.count("built Stamped(") == 1, err
        ends = [line for line in runner.lines() if line.startswith("end ")]
        # The cut-off attempt ran to its end after the loss (its worker had it still), and
        # the retry on the other worker ended too; the output is the retry's write.
        assert [f"parent={cut_off.pid}" in line for line in ends] == [True, False], ends
        assert f"parent={other.pid}" in ends[1]
        retry_pid = ends[1].split("pid=")[1].split()[0]
        assert _object(moto_endpoint, bucket, "n/stamped.txt") == f"{retry_pid}\n"
        records = json.loads(subprocess.run(
            [BATCHDEPS, "history", "--json", "--limit", "1"], cwd=tmp_path, env=runner.env,
            capture_output=True, text=True, check=True).stdout)
        assert records[0]["status"] == "built" and records[0]["attempts"] == 2
        assert [k for k in keys_under(moto_endpoint, bucket) if ".batchdeps-tmp" in k] == []
    finally:
        forwarder.cut()
        own.stop()


def test_the_dashboard_link_of_an_external_scheduler_is_its_own(
        tmp_path: Path, code: Path, moto_endpoint: str) -> None:
    """`--scheduler` on a `dask scheduler` with a dashboard: the link printed is the one
    its scheduler serves, on the port it was given."""
    import urllib.request

    bucket = new_bucket(moto_endpoint)
    (tmp_path / "cluster").mkdir()
    port = free_port()
    own = Cluster(tmp_path / "cluster", _env(code, moto_endpoint), workers=1,
                  dashboard_port=port)
    try:
        runner = Runner(tmp_path, code, moto_endpoint)
        done = runner.run("Total", "--n", "1", "--root", f"s3://{bucket}/d", "--scheduler",
                          own.address)
        assert done.returncode == 0, done.stderr
        link = f"http://127.0.0.1:{port}/status"
        assert f"Dask dashboard: {link}" in done.stderr, done.stderr
        with urllib.request.urlopen(link, timeout=10) as page:
            assert page.status == 200
    finally:
        own.stop()


def test_runner_kill_9_with_its_local_cluster_stops_the_attempt(
        tmp_path: Path, code: Path, moto_endpoint: str) -> None:
    """The LocalCluster's workers exit with the runner that started it (kill -9), and each
    attempt's process group with its worker: the task's child is gone, nothing committed."""
    runner = Runner(tmp_path, code, moto_endpoint)
    process = runner.start("Waits", "--root", str(tmp_path / "out"), "--executor", "dask",
                           "--workers", "1")
    wait_for(lambda: runner.lines() or process.poll() is not None, timeout=60,
             what="the attempt to start")
    assert process.poll() is None, process.communicate()[1]
    line = runner.lines()[0]
    child = int(line.split("child=")[1].split()[0])
    attempt_pid = int(line.split("pid=")[1].split()[0])
    process.kill()
    process.communicate(timeout=30)
    assert wait_for(lambda: _gone(attempt_pid) and _gone(child), timeout=60,
                    what="the attempt and its child to end")
    assert not (tmp_path / "out" / "hang.txt").exists()


def test_a_relative_output_path_means_the_runner_s_folder_on_every_worker(
        tmp_path: Path, code: Path, moto_endpoint: str, cluster: Cluster) -> None:
    """`--root out` with `--scheduler`: the workers run in folders of their own, and the
    attempt runs in the runner's folder (declared shared), so the output lands there."""
    runner = Runner(tmp_path, code, moto_endpoint,
                    f'[executor]\nshared_paths = ["{tmp_path}"]')
    done = runner.run("Total", "--n", "2", "--root", "out", "--scheduler", cluster.address)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "total.txt").read_text() == "1\n"
    assert not list(cluster.base.rglob("out/part-*.txt"))


def test_storage_options_from_config_travel_to_scheduler_workers(
        tmp_path: Path, code: Path, moto_endpoint: str) -> None:
    """Workers whose environment has no credentials and whose folders have no config:
    the endpoint and keys of `[storage.s3]` reach them only with each attempt."""
    env = {k: v for k, v in _env(code, moto_endpoint).items()
           if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT")}
    (tmp_path / "cluster").mkdir()
    bare = Cluster(tmp_path / "cluster", env, workers=1)
    try:
        bucket = new_bucket(moto_endpoint)
        project = tmp_path / "project"
        project.mkdir()
        runner = Runner(project, code, moto_endpoint)
        runner.env = env
        (project / "config.toml").write_text(
            '[batchdeps]\nmodules = ["dpipe"]\n\n[storage.s3]\n'
            f'endpoint_url = "{moto_endpoint}"\nkey = "testing"\nsecret = "testing"\n')
        done = runner.run("Total", "--n", "2", "--root", f"s3://{bucket}/o",
                          "--scheduler", bare.address)
        assert done.returncode == 0, done.stderr
        assert _object(moto_endpoint, bucket, "o/total.txt") == "1\n"
    finally:
        bare.stop()
