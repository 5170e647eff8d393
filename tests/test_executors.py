"""Executors through the real command: what a task's run() raises, and stopping a run."""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import batchdeps as bd
from batchdeps.locks.local import LocalLockProvider
from batchdeps.report.result import Status
from support.project import ONE_FILE_TASK

QUITTING = '''
import os
import subprocess
import sys
import time

import batchdeps as bd


class Quits(bd.Task):
    """Writes its output, then leaves run() with SystemExit($CODE)."""

    def output(self):
        return bd.FileTarget("out/quits.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("half")
        sys.exit(int(os.environ["CODE"]))


class After(bd.Task):
    def requires(self):
        return Quits()

    def output(self):
        return bd.FileTarget("out/after.txt")

    def run(self):
        with open("after-ran", "w"):
            pass
        with self.output().open("w") as out:
            out.write("after")


class Spawns(bd.Task):
    """Starts children the way tasks do, records their pids, then waits for them."""

    def output(self):
        return bd.FileTarget("out/spawns.txt")

    def run(self):
        direct = subprocess.Popen(["sleep", "300"])
        # A shell running two commands: when subprocess.run() kills the shell on the
        # interrupt, its `sleep` is orphaned and must still be found.
        shell = subprocess.Popen(["sh", "-c", "sleep 299; echo done"])
        with open("children.pid", "w") as out:
            out.write(f"{direct.pid} {shell.pid}\\n")
        subprocess.run(["sleep", "298"])
'''


@pytest.fixture
def quitting(project: Any) -> Any:
    project.write("pipelines/quitting.py", QUITTING)
    return project


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("code", ["0", "3"])
def test_system_exit_in_run_fails_the_task(quitting: Any, workers: str, code: str) -> None:
    result = quitting.run("run", "After", "--workers", workers, CODE=code)
    assert result.returncode == 1, result.stderr
    assert f"Quits(): SystemExit: {code}" in result.stdout  # the summary names it
    assert "1 failed, 1 upstream failed" in result.stdout
    assert not (quitting.root / "after-ran").exists()
    assert quitting.files() == []  # no half-written output


class Escapes(BaseException):
    """Not an Exception: escapes `except Exception` in naive code."""


class RaisesBase(bd.Task):
    path = bd.Parameter()

    def output(self):
        return bd.FileTarget(self.path)

    def run(self):
        with self.output().open("w") as out:
            out.write("half")
        raise Escapes("deep trouble")


def test_build_records_a_base_exception_from_run_as_failed(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    result = bd.build(RaisesBase(path=str(path)), locks=LocalLockProvider(str(tmp_path / "l")))
    (only,) = result.tasks.values()
    assert only.status == Status.FAILED
    assert only.error == "Escapes: deep trouble"
    assert result.exit_code == 1
    assert not path.exists()


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False


def _sleepers() -> list[int]:
    """Pids of this machine's `sleep 29x` processes (the ones Spawns starts)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline[:1] == [b"sleep"] and cmdline[1:2] in ([b"300"], [b"299"], [b"298"]):
                found.append(int(name))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds the children in /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_an_inline_run_ends_the_processes_its_task_started(
        project: Any, signum: int) -> None:
    project.write("pipelines/quitting.py", QUITTING)
    before = set(_sleepers())
    runner = project.popen("run", "Spawns")
    pid_file = project.root / "children.pid"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(set(_sleepers()) - before) < 3:
        time.sleep(0.05)
    started = set(_sleepers()) - before
    assert len(started) == 3, runner.stderr.read() if runner.poll() is not None else ""
    assert pid_file.exists()
    runner.send_signal(signum)
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 130, err
    try:
        deadline = time.monotonic() + 10  # the runner has exited: nothing should be left
        while time.monotonic() < deadline and any(_alive(pid) for pid in started):
            time.sleep(0.05)
        assert [pid for pid in started if _alive(pid)] == []
    finally:
        for pid in started:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert project.files() == []


# -- workers started while the runner has other threads -----------------------------------
class WritesPid(bd.Task):
    """Writes the pid of the process its run() ran in."""

    path = bd.Parameter()

    def output(self):
        return bd.FileTarget(self.path)

    def run(self):
        with self.output().open("w") as out:
            out.write(str(os.getpid()))


@pytest.fixture
def another_thread() -> Any:
    """A thread that runs for the length of the test, as a lock heartbeat or fsspec's loop."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join()


def test_workers_start_without_forking_a_threaded_runner(tmp_path: Path,
                                                          another_thread: Any) -> None:
    paths = [tmp_path / f"{n}.txt" for n in range(4)]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = bd.build([WritesPid(path=str(p)) for p in paths], workers=2,
                          locks=LocalLockProvider(str(tmp_path / "locks")))
    assert [str(w.message) for w in seen if "fork" in str(w.message)] == []
    assert result.exit_code == 0, result.tasks
    pids = {int(p.read_text()) for p in paths}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # in the two workers


def test_a_task_a_worker_cannot_be_sent_fails_with_a_clear_error(tmp_path: Path,
                                                                  another_thread: Any) -> None:
    class Local(bd.Task):  # defined in a function: cannot be pickled by reference
        def output(self):
            return bd.FileTarget(str(tmp_path / "local.txt"))

        def run(self):
            with self.output().open("w") as out:
                out.write("x")

    result = bd.build([Local(), WritesPid(path=str(tmp_path / "fine.txt"))], workers=2,
                      locks=LocalLockProvider(str(tmp_path / "locks")))
    assert result.tasks["Local()"].status == Status.FAILED
    assert "task classes must be defined at the top level" in result.tasks["Local()"].error
    assert (tmp_path / "fine.txt").exists()


class Orphans(bd.Task):
    """Leaves a grandchild behind that ends before run() does (the shell exits at once)."""

    path = bd.Parameter()

    def output(self):
        return bd.FileTarget(self.path)

    def run(self):
        import subprocess

        subprocess.run(["sh", "-c", "sleep 0.05 &"], check=True)
        time.sleep(0.5)  # the orphan, adopted by the runner, has ended by now
        with self.output().open("w") as out:
            out.write("x")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_an_inline_run_leaves_no_zombie_of_the_orphans_it_adopted(tmp_path: Path) -> None:
    from batchdeps.run.executors import _descendants

    before = time.clock_gettime(time.CLOCK_BOOTTIME)
    result = bd.build(Orphans(path=str(tmp_path / "o.txt")),
                      locks=LocalLockProvider(str(tmp_path / "locks")))
    assert result.ok
    assert _descendants(os.getpid(), before, zombies=True) == []


PARENT_PID = '''
import os

import batchdeps as bd


class ParentPid(bd.Task):
    """Writes the pid of the process its worker was started by."""

    n = bd.IntParameter()

    def output(self):
        return bd.FileTarget(f"out/ppid-{self.n}.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write(str(os.getppid()))


class AllParents(bd.WrapperTask):
    def requires(self):
        return [ParentPid(n=n) for n in range(4)]
'''


def test_workers_are_forked_from_the_runner_when_history_is_recorded(project: Any) -> None:
    """History (on by default) starts a thread of its own (the once-a-second writer of
    quiet stretches); the workers are forked before it starts, so they come straight from
    the runner, not from a fork server (which would pickle every task and needs task
    classes at a module's top level)."""
    project.write("pipelines/parents.py", PARENT_PID)
    proc = project.popen("run", "AllParents", "--workers", "2")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert (project.root / "batchdeps-history.db").exists(), "no history: the test's premise"
    parents = {int((project.root / f"out/ppid-{n}.txt").read_text()) for n in range(4)}
    assert parents == {proc.pid}, (parents, proc.pid)


# -- the executor registry -------------------------------------------------------------
def test_an_unknown_executor_is_a_usage_error_naming_the_known_ones(project: Any) -> None:
    done = project.run("run", "D", "--executor", "warp")
    assert done.returncode == 2, done.stderr
    assert "unknown executor 'warp'" in done.stderr
    assert "dask, inline, local" in done.stderr and "Traceback" not in done.stderr
    assert project.runs() == []


@pytest.mark.parametrize(("args", "says"), [
    (["--executor", "inline", "--workers", "2"], "--executor inline runs one attempt at a time"),
    (["--executor", "local", "--scheduler", "tcp://127.0.0.1:1"], "needs --executor dask"),
])
def test_executor_options_that_contradict_each_other_are_refused(
        project: Any, args: list[str], says: str) -> None:
    done = project.run("run", "D", *args)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert project.runs() == []


def test_a_kind_registered_by_name_is_made_without_touching_the_runner(tmp_path: Path) -> None:
    from batchdeps.resolver import resolve
    from batchdeps.run.executors import ExecutorRegistry, ForkedExecutor, InlineExecutor
    from batchdeps.run.runner import RunOptions
    from batchdeps.run.session import make_executor

    class Out(bd.Task):
        def output(self) -> Any:
            return bd.FileTarget(str(tmp_path / "out.txt"))

    plan = resolve([Out()])
    registry = ExecutorRegistry(entry_points=False)
    registry.register("mine", "batchdeps.run.executors:ForkedExecutor")
    assert isinstance(make_executor(plan, 1, RunOptions(), kind="mine", registry=registry),
                      ForkedExecutor)
    assert isinstance(make_executor(plan, 1, RunOptions()), InlineExecutor)
    assert isinstance(make_executor(plan, 3, RunOptions()), ForkedExecutor)
    with pytest.raises(bd.errors.UsageError, match="known: dask, inline, local, mine"):
        registry.load("ray")


def test_a_kind_declared_by_an_installed_package_is_found_by_its_entry_point(
        tmp_path: Path) -> None:
    """`--executor mine` where an installed distribution declares `mine` in the
    `batchdeps.executors` entry point group: the real command line loads and runs it."""
    import subprocess
    import sys

    site = tmp_path / "site"
    info = site / "myexec-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myexec\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[batchdeps.executors]\nmine = myexec:Mine\n")
    (site / "myexec.py").write_text(
        "from batchdeps.run.executors import InlineExecutor\n"
        "class Mine(InlineExecutor):\n"
        "    @classmethod\n"
        "    def from_settings(cls, settings):\n"
        "        open('made-by-mine', 'w').write(str(len(settings.plan.steps)))\n"
        "        return super().from_settings(settings)\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "epipe.py").write_text(ONE_FILE_TASK)
    (project / "config.toml").write_text('[batchdeps]\nmodules = ["epipe"]\n'
                                         '[history]\nenabled = false\n')
    env = {**os.environ, "PYTHONPATH": f"{project}{os.pathsep}{site}",
           "BATCHDEPS_LOCK_DIR": str(tmp_path / "locks")}
    main = "import sys; sys.argv[0] = 'batchdeps'; from batchdeps.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", main, "run", "Out", "--executor", "mine"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert (project / "made-by-mine").read_text() == "1"
    assert (project / "out" / "out.txt").read_text() == "x"
    refused = subprocess.run([sys.executable, "-c", main, "run", "Out", "--executor", "ray",
                              "--force"], cwd=project, env=env, capture_output=True,
                             text=True, timeout=120, check=False)
    assert refused.returncode == 2, refused.stderr
    assert "known: dask, inline, local, mine" in refused.stderr


class _Rebuilt(Exception):
    """Pickles, but cannot be made again from its args (two are needed).

    Its own `__reduce__` (the same as BaseException's) keeps it so when tblib's pickling
    support is installed: that support, which importing `distributed` installs for every
    exception class then defined, rebuilds a class without one through `__new__`."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a} {b}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), self.args


def _tblib_or_not() -> list[str]:
    try:
        import tblib.pickling_support  # noqa: F401
    except ImportError:
        return ["plain"]
    return ["plain", "tblib"]


@pytest.mark.parametrize("pickling", _tblib_or_not())
def test_an_attempts_exception_travels_pickled_unless_it_cannot_or_is_too_big(
        pickling: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What run() raised goes back from a worker process for FAILURE handlers: pickled on
    the way, rebuilt in the runner; one that does not pickle, cannot be rebuilt or is
    over MAX_EXCEPTION_BYTES pickled goes as None (the handler gets the error's text).
    The same with tblib's pickling support installed for the classes used here (as a
    process that imported `distributed` has it), and whatever ran before in this process."""
    import copyreg
    import pickle

    from batchdeps.run.executors import MAX_EXCEPTION_BYTES, Outcome

    if pickling == "tblib":
        from tblib.pickling_support import pickle_exception

        for cls in (KeyError, ValueError, _Rebuilt):
            monkeypatch.setitem(copyreg.dispatch_table, cls, pickle_exception)
    else:
        for cls in (KeyError, ValueError, _Rebuilt):
            monkeypatch.delitem(copyreg.dispatch_table, cls, raising=False)

    sent = Outcome(0, 1, False, error="KeyError: 'k'", exception=KeyError("k")).portable()
    assert isinstance(sent.exception, bytes)
    back = sent.unpickled().exception
    assert isinstance(back, KeyError) and back.args == ("k",)
    pickle.dumps(_Rebuilt("a", "b"))  # it pickles: rebuilding it is what fails
    for exc in (ValueError("lock", threading.Lock()), _Rebuilt("a", "b"),
                ValueError("x" * (MAX_EXCEPTION_BYTES + 1))):
        assert Outcome(0, 1, False, exception=exc).portable().exception is None
    assert Outcome(0, 1, True).portable().unpickled().exception is None
