"""`--wait-for-inputs`: late external inputs waited for while the rest is built (run/waiting.py).

Real `batchdeps run` processes over local files and the moto S3 server; inputs appear,
grow or never come while the run waits.
"""

# ruff: noqa: F811  (pytest fixtures are imported from s3util by name)

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.httpcount import CountingProxy
from support.project import CONFIG, Project
from support.s3util import (  # noqa: F401 - fixtures
    FAKE_CREDENTIALS,
    MotoServer,
    boto_client,
    moto_endpoint,
    moto_server,
    new_bucket,
)
from support.statuspage import page_showing
from support.waiting import wait_for

from batchdeps.errors import ExitCode
from batchdeps.report.result import Status
from batchdeps.run.attempt import RunOptions
from batchdeps.run.waiting import InputWaiter

PIPELINE = '''
"""Late inputs: a nightly report over a vendor file, and branches that need none."""
import os

import batchdeps as bd


class Late(bd.ExternalTask):
    name = bd.Parameter(default="late")

    def output(self):
        return bd.FileTarget(f"in/{self.name}.txt")


class Growing(bd.ExternalTask):
    """A vendor file that is taken only once it has stopped changing."""
    stable_for = float(os.environ.get("STABLE_FOR", "2"))

    def output(self):
        return bd.FileTarget("in/growing.txt")


class Copy(bd.Task):
    name = bd.Parameter(default="late")

    def requires(self):
        return Late(name=self.name)

    def output(self):
        return bd.FileTarget(f"out/{self.name}.txt")

    def run(self):
        with self.input().open("r") as src, self.output().open("w") as dst:
            dst.write(src.read())


class CopyGrowing(Copy):
    def requires(self):
        return Growing()

    def output(self):
        return bd.FileTarget("out/growing.txt")


class Report(bd.Task):
    """Downstream of the late input's branch."""
    def requires(self):
        return Copy()

    def output(self):
        return bd.FileTarget("out/report.txt")

    def run(self):
        with self.input().open("r") as src, self.output().open("w") as dst:
            dst.write("report of " + src.read())


class Early(bd.Task):
    """Needs no input: built while the run waits."""
    i = bd.IntParameter()

    def output(self):
        return bd.FileTarget(f"out/early-{self.i}.txt")

    def run(self):
        with self.output().open("w") as dst:
            dst.write(str(self.i))


class Nightly(bd.WrapperTask):
    def requires(self):
        return [Report(), Early(i=0), Early(i=1)]
'''


@pytest.fixture
def late(tmp_path: Path) -> Iterator[Project]:
    proj = Project(tmp_path)
    proj.write("config.toml", CONFIG)
    proj.write("pipelines/__init__.py", "")
    (tmp_path / "pipelines" / "late.py").write_text(PIPELINE)
    (tmp_path / "in").mkdir()
    yield proj


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the run did not end:\n{out}\n{err}") from None


def test_input_arriving_during_the_wait_is_built_in_the_same_run(late: Project) -> None:
    started = time.monotonic()
    proc = late.popen("run", "Nightly", "--wait-for-inputs", "30s", "--poll", "1s")
    out_dir = late.root / "out"
    wait_for(lambda: (out_dir / "early-0.txt").exists() and (out_dir / "early-1.txt").exists()
             or proc.poll() is not None, 30, "the independent branches to be built")
    assert proc.poll() is None, _finish(proc)  # still waiting for in/late.txt
    time.sleep(max(0.0, started + 3 - time.monotonic()))  # the vendor is 3 s late
    (late.root / "in" / "late.txt").write_text("the vendor's data\n")
    out, err = _finish(proc)
    assert proc.returncode == ExitCode.OK, out + err
    assert (out_dir / "report.txt").read_text() == "report of the vendor's data\n"
    # The independent branches were built before the input arrived; its branch after.
    arrived = _mtime(late.root / "in" / "late.txt")
    assert _mtime(out_dir / "early-0.txt") < arrived and _mtime(out_dir / "early-1.txt") < arrived
    assert arrived <= _mtime(out_dir / "late.txt") <= _mtime(out_dir / "report.txt")
    assert "waiting for input Late(name=late)" in err and "arrived after" in err
    assert "1 complete" in out and "exit 0" in out
    history = late.run("history", "--task", "Late(name=late)", "--json")
    assert history.returncode == 0, history.stderr
    [record] = json.loads(history.stdout)
    assert record["status"] == "complete", record
    assert record["reason"].startswith("waited for: external input in/late.txt")
    assert record["started"] <= record["finished"]


def test_wait_that_runs_out_exits_3_naming_the_inputs_still_missing(late: Project) -> None:
    """Set in config this time: `[run] wait_for_inputs` and `[run] poll`."""
    late.write("config.toml", CONFIG + '\n[run]\nwait_for_inputs = "2s"\npoll = "0.5s"\n')
    done = late.run("run", "Nightly")
    assert done.returncode == ExitCode.MISSING_INPUT, done.stdout + done.stderr
    assert "missing external inputs:" in done.stdout
    assert "in/late.txt" in done.stdout and "still so after waiting 2s" in done.stdout
    assert "1 missing input, 3 blocked by missing input" in done.stdout
    assert late.files() == ["early-0.txt", "early-1.txt"]  # the rest was built meanwhile
    # --wait-for-inputs 0 on the command line: no wait, the plain exit 3 at once.
    again = late.run("run", "Nightly", "--wait-for-inputs", "0", "--log-level", "DEBUG")
    assert again.returncode == ExitCode.MISSING_INPUT
    assert "waiting for input" not in again.stderr and "look 1" not in again.stderr


def test_sigterm_during_the_wait_stops_cleanly_and_the_rerun_builds_the_rest(
        late: Project) -> None:
    proc = late.popen("run", "Nightly", "--wait-for-inputs", "5m", "--poll", "1s")
    out_dir = late.root / "out"
    wait_for(lambda: len(late.files()) == 2 or proc.poll() is not None, 30,
             "the independent branches to be built")
    assert proc.poll() is None, _finish(proc)
    # The status page over this machine's history shows what is waited for, and since when.
    page = wait_for(lambda: page_showing(
        late.root, 'class="waiting-for-input">waiting for input<'), 30, "the wait in the history")
    assert "external input in/late.txt" in page and "waiting until" in page
    proc.send_signal(signal.SIGTERM)
    out, err = _finish(proc)
    assert proc.returncode == ExitCode.INTERRUPTED, out + err
    assert "interrupted" in out
    assert late.files() == ["early-0.txt", "early-1.txt"]  # nothing half-made, no temp file
    early = _mtime(out_dir / "early-0.txt")
    (late.root / "in" / "late.txt").write_text("data\n")
    rerun = late.run("run", "Nightly")
    assert rerun.returncode == ExitCode.OK, rerun.stdout + rerun.stderr
    assert (out_dir / "report.txt").read_text() == "report of data\n"
    assert _mtime(out_dir / "early-0.txt") == early  # not rebuilt


WRITER = """
import sys, time
path, lines, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with open(path, "a") as out:
    for n in range(lines):
        out.write(f"line {n}\\n")
        out.flush()
        time.sleep(gap)
    out.write("END\\n")
"""


def test_file_still_growing_is_not_taken_until_it_has_stopped(late: Project) -> None:
    growing = late.root / "in" / "growing.txt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(growing), "40", "0.1"])
    try:
        wait_for(growing.exists, 10, "the writer to start")
        # Without a wait: there but still changing, so "missing" with the reason.
        once = late.run("run", "CopyGrowing", STABLE_FOR="2")
        assert once.returncode == ExitCode.MISSING_INPUT, once.stdout + once.stderr
        assert "still growing" in once.stdout and "stable_for = 2 s" in once.stdout
        assert late.files() == []
        # `status` says why it is not taken, for the input and for what it blocks.
        status = late.run("status", "CopyGrowing", STABLE_FOR="2")
        assert status.returncode == ExitCode.MISSING_INPUT, status.stdout + status.stderr
        lines = {line.split("  [")[0].lstrip("└─├│ "): line
                 for line in status.stdout.splitlines() if "  [" in line}
        assert "still growing" in lines["Growing()"] and "stable_for = 2 s" in lines["Growing()"]
        blocked = lines["CopyGrowing(name=late)"]
        assert "blocked: external input" in blocked and "still growing" in blocked
        waited = late.run("run", "CopyGrowing", "--wait-for-inputs", "60s", "--poll", "0.5s",
                          STABLE_FOR="2")
        assert writer.wait(30) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
    assert waited.returncode == ExitCode.OK, waited.stdout + waited.stderr
    copied = (late.root / "out" / "growing.txt").read_text()
    assert copied == growing.read_text() and copied.endswith("line 39\nEND\n")
    assert _mtime(late.root / "out" / "growing.txt") > _mtime(growing)


# -- S3 ------------------------------------------------------------------------------------
S3_PIPELINE = '''
import os

import batchdeps as bd

BUCKET = os.environ["BUCKET"]


class Drop(bd.ExternalTask):
    i = bd.IntParameter()

    def output(self):
        return bd.FileTarget(f"s3://{BUCKET}/drops/{self.i:04d}.csv")


class SettledDrop(Drop):
    stable_for = 2


class Load(bd.Task):
    def requires(self):
        return SettledDrop(i=7)

    def output(self):
        return bd.FileTarget(f"s3://{BUCKET}/loaded/7.csv")

    def run(self):
        with self.input().open("r") as src, self.output().open("w") as dst:
            dst.write(src.read())


class AllDrops(bd.WrapperTask):
    n = bd.IntParameter(default=1000)

    def requires(self):
        return [Drop(i=i) for i in range(self.n)]
'''


@pytest.fixture
def counted(tmp_path: Path, moto_server: MotoServer) -> Iterator[tuple[Project, CountingProxy, str]]:
    proxy = CountingProxy(moto_server.port)
    bucket = new_bucket(moto_server.endpoint)
    proj = Project(tmp_path)
    proj.write("config.toml", CONFIG + '\n[storage.s3]\nendpoint_url = "${S3_ENDPOINT}"\n')
    proj.write("pipelines/__init__.py", "")
    (tmp_path / "pipelines" / "drops.py").write_text(S3_PIPELINE)
    proj.env.update(FAKE_CREDENTIALS, S3_ENDPOINT=proxy.endpoint, BUCKET=bucket)
    yield proj, proxy, bucket
    proxy.stop()


def test_a_thousand_missing_inputs_on_s3_cost_a_few_requests_per_look(
        counted: tuple[Project, CountingProxy, str]) -> None:
    proj, proxy, _ = counted
    done = proj.run("run", "AllDrops", "--wait-for-inputs", "3s", "--poll", "0.5s",
                    "--log-level", "DEBUG")
    assert done.returncode == ExitCode.MISSING_INPUT, done.stdout + done.stderr
    assert "missing external inputs:" in done.stdout and "drops/0999.csv" in done.stdout
    looks = done.stderr.count("at the inputs waited for: 0 arrived, 1000 still missing")
    assert looks >= 3  # the first look after ~1 s, then 0.25-0.5 s apart, the last at 3 s
    methods = proxy.methods()
    assert "HEAD" not in methods  # no request per key
    # One listing of the key range for the plan, and one per look: never one per input.
    assert proxy.lists() <= 1 + looks, proxy.requests
    assert len(proxy.requests) <= 2 * (1 + looks) + 2, proxy.requests


def test_object_uploaded_during_the_wait_is_taken_once_settled(
        counted: tuple[Project, CountingProxy, str], moto_server: MotoServer) -> None:
    proj, _, bucket = counted
    proc = proj.popen("run", "Load", "--wait-for-inputs", "60s", "--poll", "0.5s")
    assert proc.stderr is not None
    wait_for(lambda: "waiting for input SettledDrop(i=7)" in proc.stderr.readline()
             or proc.poll() is not None, 30, "the run to wait for the drop")
    client = boto_client(moto_server.endpoint)
    # The vendor's tool rewrites the object a second later (a first, partial upload):
    # the run polls every 0.5 s, sees the first one, and does not take it.
    client.put_object(Bucket=bucket, Key="drops/0007.csv", Body=b"first part")
    time.sleep(1.0)
    client.put_object(Bucket=bucket, Key="drops/0007.csv", Body=b"the whole file\n")
    out, err = _finish(proc)
    assert proc.returncode == ExitCode.OK, out + err
    loaded = client.get_object(Bucket=bucket, Key="loaded/7.csv")["Body"].read()
    assert loaded == b"the whole file\n"


# -- the waiter's schedule, with a fake clock ---------------------------------------------
class _Host:
    def __init__(self) -> None:
        self.stopping = False
        self.events: list[Any] = []
        self.closed: list[tuple[str, Status, str]] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)

    def later(self, step: Any, due: float) -> None:  # pragma: no cover - not used here
        raise AssertionError

    def close(self, step: Any, status: Status, *, attempts: int = 0, error: str = "",
              reason: str = "", missing_paths: list[str] | None = None,
              holder: str = "") -> None:
        self.closed.append((step.task_id, status, error or reason))


def _missing_plan(tmp_path: Path, names: list[str]) -> Any:
    import batchdeps as bd
    from batchdeps.resolver import resolve

    class Vendor(bd.ExternalTask):
        name = bd.Parameter()

        def output(self) -> Any:
            return bd.FileTarget(str(tmp_path / f"{self.name}.csv"))

    return resolve([Vendor(name=name) for name in names])


def test_looks_back_off_from_one_second_to_the_poll_cap_with_jitter(tmp_path: Path) -> None:
    plan = _missing_plan(tmp_path, ["a", "b"])
    now = [100.0]
    host = _Host()
    waiter = InputWaiter(host, RunOptions(wait_for_inputs=60, poll=4), clock=lambda: now[0],
                         rand=lambda: 1.0)
    waiter.start(plan.steps)
    assert [e.task_id for e in host.events] == ["Vendor(name=a)", "Vendor(name=b)"]
    assert host.events[0].until - host.events[0].since == 60
    gaps = []
    for _ in range(5):
        gaps.append(waiter.due - now[0])
        now[0] = waiter.due
        waiter.poll()
    assert gaps == [1.0, 2.0, 4.0, 4.0, 4.0]  # doubling, capped at --poll
    (tmp_path / "a.csv").write_text("x")
    now[0] = waiter.due
    waiter.poll()
    assert host.closed == [("Vendor(name=a)", Status.COMPLETE, host.closed[0][2])]
    assert "arrived after" in host.closed[0][2]
    jittered = InputWaiter(_Host(), RunOptions(wait_for_inputs=60, poll=4),
                           clock=lambda: 0.0, rand=lambda: 0.0)
    jittered.start(plan.steps[1:])
    assert jittered.due == 0.5  # equal jitter: never less than half the delay


def test_last_look_is_at_the_deadline_then_what_is_missing_closes(tmp_path: Path) -> None:
    plan = _missing_plan(tmp_path, ["a"])
    now = [0.0]
    host = _Host()
    waiter = InputWaiter(host, RunOptions(wait_for_inputs=5, poll=4), clock=lambda: now[0],
                         rand=lambda: 1.0)
    waiter.start(plan.steps)
    dues = []
    while waiter.waiting:
        now[0] = waiter.due
        dues.append(now[0])
        waiter.poll()
    assert dues == [1.0, 3.0, 5.0]  # 1 s, then 2 s, then cut to the deadline
    [(task_id, status, error)] = host.closed
    assert status == Status.MISSING_INPUT and "still so after waiting 5s" in error
    assert str(tmp_path / "a.csv") in error


def test_input_not_due_yet_is_not_looked_at_before_its_ready_after(tmp_path: Path) -> None:
    import datetime as dt

    import batchdeps as bd
    from batchdeps.resolver import resolve

    wall = [time.time()]
    ready = dt.datetime.fromtimestamp(wall[0] + 3600)

    class Nightly(bd.ExternalTask):
        ready_after = ready

        def output(self) -> Any:
            return bd.FileTarget(str(tmp_path / "there.csv"))

    (tmp_path / "there.csv").write_text("yesterday's")
    plan = resolve([Nightly()])
    [step] = plan.steps
    assert "not expected before" in step.reason
    now = [0.0]
    host = _Host()
    waiter = InputWaiter(host, RunOptions(wait_for_inputs=7200, poll=60),
                         clock=lambda: now[0], wall=lambda: wall[0], rand=lambda: 1.0)
    waiter.start(plan.steps)
    now[0] = waiter.due
    waiter.poll()
    assert waiter.due == pytest.approx(now[0] + 3600)  # asleep until it is due
    wall[0] += 3601
    now[0] = waiter.due
    waiter.poll()
    assert host.closed and host.closed[0][1] == Status.COMPLETE


def test_bad_durations_and_a_poll_without_a_wait_are_usage_errors(late: Project) -> None:
    for args, needle in [(["--wait-for-inputs", "5x"], "--wait-for-inputs"),
                         (["--wait-for-inputs", "1m", "--poll", "0"], "--poll"),
                         (["--poll", "5m"], "give --wait-for-inputs")]:
        done = late.run("run", "Nightly", *args)
        assert done.returncode == ExitCode.USAGE, (args, done.stderr)
        assert needle in done.stderr and "Traceback" not in done.stderr
    assert late.files() == []  # nothing ran
