"""Fast paths of the per-task work and their slow twins give the same results."""

from __future__ import annotations

import io
import os
import sys
import logging
import time

import pytest

from batchdeps import logs
from batchdeps.cli.common import text_formatter

MOMENT = 1_765_000_000.25  # a fixed clock, so both ways write the same second


def _logger(name: str) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(text_formatter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream, handler


@pytest.fixture()
def fixed_clock(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: MOMENT)
    monkeypatch.setattr(time, "time_ns", lambda: int(MOMENT * 1e9))
    monkeypatch.setattr(logs, "_time", lambda: MOMENT)


def test_a_log_line_written_directly_is_the_line_logging_writes(fixed_clock):
    logger, stream, handler = _logger("batchdeps.test-fast-lines")
    assert logs._plain_text_handler(logger, logging.INFO) is handler  # the fast path
    logs.emit(logger, logging.INFO, "start %s%s: %s", "T(n=1)", "", "output x missing",
              extra={"event": "task_started"})
    logs.emit(logger, logging.WARNING, "built %s", "T(n=1)")
    logs.emit(logger, logging.INFO, "no arguments, 100% as given")
    logs.emit(logger, logging.DEBUG, "not shown %s", "x")
    fast = stream.getvalue()

    handler.addFilter(lambda record: True)  # a filter: logging's own path
    assert logs._plain_text_handler(logger, logging.INFO) is None
    stream.seek(0)
    stream.truncate()
    logs.emit(logger, logging.INFO, "start %s%s: %s", "T(n=1)", "", "output x missing",
              extra={"event": "task_started"})
    logs.emit(logger, logging.WARNING, "built %s", "T(n=1)")
    logs.emit(logger, logging.INFO, "no arguments, 100% as given")
    logs.emit(logger, logging.DEBUG, "not shown %s", "x")
    slow = stream.getvalue()
    assert fast == slow
    assert fast.count("\n") == 3 and " INFO start T(n=1): output x missing\n" in fast


def test_other_handlers_and_formats_take_loggings_path():
    logger, _, handler = _logger("batchdeps.test-slow-lines")
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    assert logs._plain_text_handler(logger, logging.INFO) is None
    handler.setFormatter(text_formatter())
    handler.setLevel(logging.WARNING)
    assert logs._plain_text_handler(logger, logging.INFO) is None
    handler.setLevel(logging.NOTSET)
    logger.addHandler(logging.NullHandler())
    assert logs._plain_text_handler(logger, logging.INFO) is None


# -- task logs: the scratch file kept from attempt to attempt, and "was a log written" ------
TALKING = '''
import os
import sys
import batchdeps as bd


class Talk(bd.Task):
    n = bd.IntParameter()
    root = bd.Parameter()

    def output(self):
        return bd.FileTarget(os.path.join(self.root, f"{self.n}.txt"))

    def run(self):
        if self.n % 3 == 0:
            print(f"said {self.n}")
            print(f"warned {self.n}", file=sys.stderr)
        if self.n == 7:
            print("x" * 1_100_000)  # the scratch file passes its size limit
        with self.output().open("w") as out:
            out.write("x")


class Talks(bd.WrapperTask):
    root = bd.Parameter()

    def requires(self):
        return [Talk(n=n, root=self.root) for n in range(12)]
'''


def _task_logs(folder):
    found = {}
    for path in sorted(folder.rglob("*.log")):
        if ".scratch" in path.parts:
            continue
        text = path.read_text()
        header, _, body = text.partition("\n")
        found[path.relative_to(folder).parts[1]] = (header.split(" of run ")[0], body)
    return found


def _check_talk_logs(found):
    assert sorted(found) == sorted(f"n={n},root=data" for n in (0, 3, 6, 7, 9))
    for n in (0, 3, 6, 9):
        header, body = found[f"n={n},root=data"]
        assert header == f"# Talk(n={n}, root=data) attempt 1"
        assert body == f"said {n}\nwarned {n}\n"  # its own words only, once
    assert found["n=7,root=data"][1] == "x" * 1_100_000 + "\n"


def test_task_logs_hold_each_attempts_words_alike_with_fds_kept_or_given_back(project):
    """The command line keeps fds 1 and 2 on one scratch file that grows from attempt to
    attempt (emptied past a size); bd.build gives them back and empties it every time.
    Both ways each attempt's log holds its own output, and only quiet attempts have none."""
    project.write("pipelines/talking.py", TALKING)
    project.write("config.toml", '[batchdeps]\nmodules = ["pipelines.talking"]\n')
    done = project.run("run", "Talks", "--root", "data")
    assert done.returncode == 0, done.stderr
    assert "said" not in done.stdout + done.stderr
    _check_talk_logs(_task_logs(project.root / "logs"))

    script = ("import sys; sys.path.insert(0, '.'); import batchdeps as bd; "
              "from pipelines.talking import Talks; "
              "r = bd.build([Talks(root='data2')], log_dir='logs2'); "
              "print(sorted(k for k, v in r.tasks.items() if v.log_path))")
    import subprocess

    built = subprocess.run([sys.executable, "-c", script], cwd=project.root, env=project.env,
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    found = {k.replace("root=data2", "root=data"): v
             for k, v in _task_logs(project.root / "logs2").items()}
    _check_talk_logs({k: (h.replace("root=data2", "root=data"), b) for k, (h, b) in found.items()})
    assert built.stdout.strip() == str(sorted(
        f"Talk(n={n}, root=data2)" for n in (0, 3, 6, 7, 9)))


def test_a_built_tasks_log_path_is_the_same_whether_the_capture_says_or_the_file_is_looked_at(
        tmp_path, monkeypatch):
    import importlib.util

    import batchdeps as bd
    from batchdeps.run import executors

    source = tmp_path / "talking_fast.py"
    source.write_text(TALKING)
    spec = importlib.util.spec_from_file_location("talking_fast", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def paths(root: str) -> dict[str, bool]:
        result = bd.build([module.Talks(root=str(tmp_path / root))],
                          log_dir=str(tmp_path / f"logs-{root}"))
        assert result.ok
        return {k.replace(root, "R"): bool(v.log_path and os.path.exists(v.log_path))
                for k, v in result.tasks.items()}

    said = paths("said")
    real_execute = executors.execute

    def unknown(*args, **kwargs):
        outcome = real_execute(*args, **kwargs)
        outcome.log_written = None  # as from a worker that could not say
        return outcome

    monkeypatch.setattr(executors, "execute", unknown)
    looked = paths("looked")
    assert said == looked
    assert [k for k, v in said.items() if v] == [
        f"Talk(n={n}, root={tmp_path}/R)" for n in (0, 3, 6, 7, 9)]
