"""`batchdeps watch`: rounds when inputs arrive or change, one watcher per target, signals.

Real `batchdeps watch` processes over local files (machine-local locks and a real lock
server); inputs are written while they watch.
"""

# ruff: noqa: F811  (pytest fixtures are imported from s3util by name)

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support.journal import JOURNAL_FUNCTION
from support.lockutil import LockServer
from support.project import BATCHDEPS, CONFIG, Project
from support.s3util import (  # noqa: F401 - fixtures
    MotoServer,
    boto_client,
    bucket,
    moto_endpoint,
    moto_server,
    s3_env,
)
from support.waiting import wait_for

from batchdeps.errors import ExitCode
from batchdeps.run.watch import InputWatch, watch_key

PIPELINE = '''
"""Two days cleaned from raw inputs that arrive late, and a wrapper over them."""
import os
import time

import batchdeps as bd

''' + JOURNAL_FUNCTION + '''


class Raw(bd.ExternalTask):
    day = bd.Parameter()

    def output(self):
        return bd.FileTarget(f"in/raw-{self.day}.txt")


class Growing(bd.ExternalTask):
    stable_for = 1

    def output(self):
        return bd.FileTarget("in/growing.txt")


class Clean(bd.Task):
    day = bd.Parameter()

    def requires(self):
        return Raw(day=self.day)

    def output(self):
        return bd.FileTarget(f"out/clean-{self.day}.txt")

    def run(self):
        journal("start", self)
        if os.path.exists(f"fail-{self.day}"):
            raise RuntimeError(f"marker says Clean({self.day}) fails")
        time.sleep(float(os.environ.get("SLEEP_CLEAN", "0")))
        with self.input().open() as src, self.output().open("w") as dst:
            dst.write(src.read().upper())
        journal("end", self)


class Days(bd.WrapperTask):
    def requires(self):
        return [Clean(day=day) for day in ("d1", "d2")]


class Broken(bd.Task):
    def requires(self):
        raise ValueError("broken on purpose")


class Gather(bd.Task):
    """Finds out what it needs only while it runs."""

    def output(self):
        return bd.FileTarget("out/gather.txt")

    def run(self):
        journal("start", self)
        raw = yield Raw(day="late")
        with raw.open() as src, self.output().open("w") as dst:
            dst.write(src.read())
'''


class Watch:
    """One `batchdeps watch` process, its output in a file."""

    def __init__(self, project: Project, name: str, *args: str, **env: str) -> None:
        self.log = project.root / f"{name}.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [BATCHDEPS, "watch", *args], cwd=project.root, env={**project.env, **env},
                stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text()

    def says(self, text: str, count: int = 1) -> bool:
        return self.text().count(text) >= count

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def watched(project: Project) -> Project:
    project.write("pipelines/watched.py", PIPELINE)
    return project


def _publish(project: Project, relative: str, text: str) -> None:
    """Write an input while the watcher looks, whole at once (a temporary file renamed
    into place), as an input without `stable_for` must arrive: `Project.write` truncates
    first, and a look between the truncation and the write (a loaded machine can pause the
    test there) takes an empty file, then a second rewrite."""
    final = project.root / relative
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(f".{final.name}.part")
    part.write_text(text)
    os.replace(part, final)


def _until(watch: Watch, text: str, count: int = 1, timeout: float = 30) -> None:
    wait_for(lambda: watch.says(text, count) or watch.proc.poll() is not None, timeout,
             f"{text!r} x{count} in the watcher's log")
    assert watch.says(text, count), watch.text()


def test_two_watchers_build_each_task_once_and_the_one_standing_by_takes_over(
        watched: Project) -> None:
    first = Watch(watched, "first", "Days", "--every", "0.5s")
    watchers = [first]
    try:
        _until(first, "round 1 done (exit 3)")
        second = Watch(watched, "second", "Days", "--every", "0.5s")
        watchers.append(second)
        _until(second, "another watcher of Days() holds its watch lease")
        assert "standing by (trying every 0.5s)" in second.text()
        watched.write("in/raw-d1.txt", "one\n")
        _until(first, "input in/raw-d1.txt")
        _until(first, "round 2 done (exit 3)")
        assert watched.runs() == ["Clean(day=d1)"]
        # The first stops; the second takes the lease and goes on from there.
        assert first.stop() == ExitCode.INTERRUPTED
        _until(second, "round 1 done (exit 3)")  # d1 is there: nothing to build
        watched.write("in/raw-d2.txt", "two\n")
        _until(second, "round 2 done (exit 0)")
        assert second.stop() == ExitCode.INTERRUPTED
    finally:
        for watch in watchers:
            watch.kill()
    assert sorted(watched.runs()) == ["Clean(day=d1)", "Clean(day=d2)"], watched.runs()
    assert (watched.root / "out" / "clean-d2.txt").read_text() == "TWO\n"
    assert "Clean(day=" not in second.text().split("another watcher")[0]  # built nothing first


def test_a_new_input_starts_a_round_and_a_rewritten_one_rebuilds_with_the_upstream_trigger(
        watched: Project) -> None:
    watched.write("in/raw-d1.txt", "one\n")
    watch = Watch(watched, "watch", "Days", "--every", "0.5s", "--rerun-triggers", "upstream")
    try:
        _until(watch, "round 1 done (exit 3)")
        assert watched.runs() == ["Clean(day=d1)"]
        _publish(watched, "in/raw-d2.txt", "two\n")
        _until(watch, "round 2 done (exit 0)")
        assert watched.runs() == ["Clean(day=d1)", "Clean(day=d2)"]
        time.sleep(0.02)  # a new mtime_ns even on a coarse clock
        _publish(watched, "in/raw-d1.txt", "one again\n")
        _until(watch, "input in/raw-d1.txt")
        _until(watch, "round 3 done (exit 0)")
        # Quiet inputs start no round.
        looks_later = time.monotonic() + 2
        wait_for(lambda: time.monotonic() > looks_later, 5)
        assert not watch.says("round 4")
        assert watch.stop() == ExitCode.INTERRUPTED
    finally:
        watch.kill()
    assert watched.runs() == ["Clean(day=d1)", "Clean(day=d2)", "Clean(day=d1)"]
    assert (watched.root / "out" / "clean-d1.txt").read_text() == "ONE AGAIN\n"
    assert "input in/raw-d1.txt" in watch.text() and "rewritten" in watch.text()


def test_a_rewritten_input_without_the_upstream_trigger_says_nothing_is_rebuilt(
        watched: Project) -> None:
    watched.write("in/raw-d1.txt", "one\n")
    watched.write("in/raw-d2.txt", "two\n")
    watch = Watch(watched, "watch", "Days", "--every", "0.5s")
    try:
        _until(watch, "round 1 done (exit 0)")
        time.sleep(0.02)
        _publish(watched, "in/raw-d1.txt", "changed\n")
        _until(watch, "round 2: nothing to do")
        assert watch.stop(signal.SIGINT) == ExitCode.INTERRUPTED
    finally:
        watch.kill()
    assert "--rerun-triggers upstream" in watch.text()
    assert watched.runs() == ["Clean(day=d1)", "Clean(day=d2)"]


def test_an_input_that_a_run_yields_is_watched_from_the_round_that_found_it(
        watched: Project) -> None:
    watch = Watch(watched, "watch", "Gather", "--every", "0.5s")
    try:
        _until(watch, "round 1 done (exit 3); watching 1 input(s)")
        _publish(watched, "in/raw-late.txt", "late\n")
        _until(watch, "input in/raw-late.txt")
        _until(watch, "round 2 done (exit 0)")
        assert watch.stop() == ExitCode.INTERRUPTED
    finally:
        watch.kill()
    assert (watched.root / "out" / "gather.txt").read_text() == "late\n"


def test_a_failed_task_is_tried_again_at_the_next_round(watched: Project) -> None:
    watched.write("in/raw-d1.txt", "one\n")
    watched.write("fail-d1", "")
    watch = Watch(watched, "watch", "Days")  # the default: a look every minute
    try:
        _until(watch, "round 1 done (exit 1)")
        assert "looking at its external inputs every 1m" in watch.text()
        assert watch.stop() == ExitCode.INTERRUPTED
    finally:
        watch.kill()
    (watched.root / "fail-d1").unlink()
    watch = Watch(watched, "again", "Days", "--every", "0.5s")
    try:
        _until(watch, "round 1 done (exit 3)")
        watched.write("in/raw-d2.txt", "two\n")
        _until(watch, "round 2 done (exit 0)")
        assert watch.stop() == ExitCode.INTERRUPTED
    finally:
        watch.kill()
    assert watched.runs() == ["Clean(day=d1)", "Clean(day=d1)", "Clean(day=d2)"]


def test_a_look_or_a_round_that_fails_is_logged_and_made_again_later(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The Watcher with a fake clock and session: a look that cannot be made starts no
    round and is made again one interval later; the next look that sees a change does;
    a round that cannot finish is made again at the next look, without a change."""
    from batchdeps.errors import TargetCheckError
    from batchdeps.locks.local import LocalLockProvider
    from batchdeps.run.watch import Look, Watcher

    class Session:
        rerun_triggers = frozenset()

        def resolve(self, tasks: list) -> Any:
            rounds.append(now[0])
            if len(rounds) == 2:
                raise TargetCheckError("storage unreachable in the round")
            return type("Plan", (), {"steps": []})()

    class Inputs(InputWatch):
        def look(self) -> Look:
            looks.append(now[0])
            if len(looks) == 2:
                raise TargetCheckError("storage unreachable")
            if len(looks) == 4:
                return Look(changes=["input x arrived"])
            return Look()

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if len(rounds) == 3:
            watcher.stop()

    import batchdeps as bd

    class Top(bd.WrapperTask):
        pass

    now = [0.0]
    rounds: list[float] = []
    looks: list[float] = []
    watcher = Watcher([Top()], Session, LocalLockProvider(str(tmp_path)), every=10,
                      clock=lambda: now[0], sleep=sleep, wall=lambda: now[0])
    watcher.inputs = Inputs()
    with caplog.at_level("WARNING", logger="batchdeps"):
        assert watcher.run() == ExitCode.OK
    assert looks == [0.0, 10.0, 20.0, 30.0, 40.0]  # the baseline, the failed one, ...
    assert rounds == [0.0, 30.0, 40.0]  # at the start, after the change, once more
    assert "could not look at the" in caplog.text and "storage unreachable" in caplog.text
    assert "round 2 could not finish: storage unreachable in the round" in caplog.text


def test_sigterm_during_a_round_stops_the_run_cleanly_and_frees_the_watch(
        watched: Project) -> None:
    watched.write("in/raw-d1.txt", "one\n")
    watch = Watch(watched, "watch", "Days", "--every", "0.5s", SLEEP_CLEAN="30")
    try:
        wait_for(lambda: watched.runs() == ["Clean(day=d1)"], 30, "Clean(d1) to start")
        assert watch.stop() == ExitCode.INTERRUPTED
    finally:
        watch.kill()
    assert watched.runs("end") == []
    assert watched.files() == []  # nothing half-made left behind
    assert "watch stopped (interrupted)" in watch.text()
    # The lease and the task's lock are free: a new watcher takes over at once and builds.
    again = Watch(watched, "again", "Days", "--every", "0.5s")
    try:
        _until(again, "round 1 done (exit 3)")
        assert again.stop() == ExitCode.INTERRUPTED
    finally:
        again.kill()
    assert "another watcher" not in again.text()
    assert watched.runs("end") == ["Clean(day=d1)"]


def test_two_watchers_on_a_lock_server_build_each_task_once(
        watched: Project, lock_server: LockServer) -> None:
    watched.write("config.toml", CONFIG + f'\n[lock]\nurl = "{lock_server.url}"\nttl = 2\n')
    env = {"BATCHDEPS_LOCK_TOKEN": lock_server.token}
    watchers = [Watch(watched, name, "Days", "--every", "0.5s", **env)
                for name in ("one", "two")]
    try:
        wait_for(lambda: any(w.says("round 1 done") for w in watchers), 30, "a first round")
        watched.write("in/raw-d1.txt", "one\n")
        watched.write("in/raw-d2.txt", "two\n")
        wait_for(lambda: any(w.says("done (exit 0)") for w in watchers), 30, "a build")
        standing = [w for w in watchers if w.says("another watcher of Days() holds")]
        assert len(standing) == 1, [w.text() for w in watchers]
        active = next(w for w in watchers if w is not standing[0])
        # kill -9: its lease runs out after the TTL, then the other takes over.
        active.kill()
        _until(standing[0], "the watch lease was taken", timeout=30)
        _until(standing[0], "round 1: nothing to do")
        assert standing[0].stop() == ExitCode.INTERRUPTED
    finally:
        for watch in watchers:
            watch.kill()
    assert sorted(watched.runs()) == ["Clean(day=d1)", "Clean(day=d2)"]


@pytest.mark.parametrize(("args", "message"), [
    (("Days", "--every", "0"), "--every"),
    (("Days", "--every", "soon"), "--every"),
    (("Days", "--every", "1m", "--every", "2m"), "given 2 times"),
    (("Days", "--rerun-triggers", "mtime"), "--rerun-triggers"),
    (("Days", "--workers", "0"), "--workers"),
    (("NoSuchTask",), "NoSuchTask"),
    (("Broken",), "broken on purpose"),  # the first round cannot be resolved
    ((), "missing TASK"),
])
def test_bad_arguments_are_a_usage_error(watched: Project, args: tuple[str, ...],
                                         message: str) -> None:
    result = watched.run("watch", *args, timeout=30)
    assert result.returncode == ExitCode.USAGE, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_input_watch_tells_arrived_rewritten_gone_and_waits_for_a_growing_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    spec = importlib.util.spec_from_loader("watched_pipeline", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setenv("JOURNAL", str(tmp_path / "journal"))
    exec(compile(PIPELINE, "watched_pipeline", "exec"), module.__dict__)
    def short(lines: list[str]) -> list[str]:  # "input in/x.txt (/abs/in/x.txt) arrived"
        return [f"{line.split(' ')[1]} {line.rsplit(' ', 1)[1]}" for line in lines]

    now = [time.time()]
    inputs = InputWatch([module.Raw(day="d1"), module.Growing(), module.Clean(day="d1")],
                        wall=lambda: now[0], clock=lambda: now[0])
    assert len(inputs.tasks) == 2  # external inputs only
    assert inputs.look().changes == []  # the first look notes what is there
    (tmp_path / "in" / "raw-d1.txt").write_text("x")
    (tmp_path / "in" / "growing.txt").write_text("part")
    look = inputs.look()
    assert short(look.changes) == ["in/raw-d1.txt arrived"]  # growing.txt changed just now
    assert look.not_before is not None and look.not_before > now[0]
    now[0] += 5  # the file has not changed for longer than stable_for
    assert short(inputs.look().changes) == ["in/growing.txt arrived"]
    stat = os.stat(tmp_path / "in" / "raw-d1.txt")
    os.utime(tmp_path / "in" / "raw-d1.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert short(inputs.look().changes) == ["in/raw-d1.txt rewritten"]
    (tmp_path / "in" / "raw-d1.txt").unlink()
    look = inputs.look()
    assert look.changes == [] and short(look.gone) == ["in/raw-d1.txt gone"]


def test_the_watch_key_is_short_for_a_range_of_tasks(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import batchdeps as bd

    class Day(bd.Task):
        day = bd.IntParameter()

    assert watch_key([Day(day=1)]) == "watch:Day(day=1)"
    many = watch_key([Day(day=n) for n in range(500)])
    assert many.startswith("watch:Day[500]:") and len(many) < 60
    assert many == watch_key([Day(day=n) for n in reversed(range(500))])


def test_a_look_at_a_thousand_inputs_on_s3_is_one_listing(
        s3_env: dict[str, str], bucket: str, moto_server: MotoServer) -> None:
    from support.httpcount import CountingProxy

    import batchdeps as bd
    from batchdeps.targets import default_storage

    class Drop(bd.ExternalTask):
        n = bd.IntParameter()

        def output(self) -> bd.FileTarget:
            return bd.FileTarget(f"s3://{bucket}/drops/{self.n:04d}.csv")

    proxy = CountingProxy(moto_server.port)
    default_storage.configure({"s3": {"endpoint_url": proxy.endpoint}})
    try:
        inputs = InputWatch([Drop(n=n) for n in range(1000)])
        for _ in range(3):
            before = len(proxy.requests)
            assert inputs.look().changes == []
            made = proxy.requests[before:]
            assert len(made) <= 2 and all(method == "GET" for method, _ in made), made
        boto_client(moto_server.endpoint).put_object(Bucket=bucket, Key="drops/0500.csv",
                                                     Body=b"x")
        before = len(proxy.requests)
        assert inputs.look().changes == [f"input s3://{bucket}/drops/0500.csv arrived"]
        assert proxy.lists() >= 1 and len(proxy.requests) - before <= 2
    finally:
        default_storage.configure({})
        proxy.stop()
