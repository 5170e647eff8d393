"""Promises of README.md and docs/operations.md that no module's own tests cover.

docs/promises.md maps every promise of those two files to the test that would fail if it
broke; the tests here fill the gaps. The first one runs the README's tutorial exactly as
written: its files and commands are taken from the fenced blocks of the tutorial section,
so the README cannot drift from what the command does.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.journal import JOURNAL_FUNCTION
from support.produtil import WebhookServer
from support.project import BATCHDEPS, Project
from support.waiting import wait_for

import batchdeps as bd

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
TUTORIAL_HEADING = "## Five-minute tutorial"


def section(text: str, heading: str) -> str:
    """The lines under `heading` up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == heading]
    assert starts, f"README.md has no section {heading!r}"
    body: list[str] = []
    in_fence = False
    for line in lines[starts[0] + 1:]:
        if line.startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else re.match(r"(#+) ", line)
        if match and len(match.group(1)) <= level:
            break
        body.append(line)
    return "\n".join(body)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every ``` block in `text`, in order."""
    return [(m.group(1), m.group(2)) for m in
            re.finditer(r"^```(\w*)\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)]


class Tutorial:
    """The README tutorial's pipeline files, shell commands and Python snippet."""

    def __init__(self, text: str) -> None:
        self.text = section(text, TUTORIAL_HEADING)
        blocks = fenced_blocks(self.text)
        self.files: dict[str, str] = {}
        self.commands: list[str] = []
        for language, body in blocks:
            first = body.splitlines()[0] if body else ""
            if language == "python" and re.match(r"# [\w./-]+\.py$", first):
                self.files[first[2:]] = body
            elif language == "sh":
                self.commands += [line for line in body.splitlines() if line.strip()]
        snippets = re.findall(r"`(bd\.build\(.*?\))`", self.text)
        self.build_snippet = snippets[0] if snippets else ""

    def parameters(self) -> dict[str, str]:
        """Parameter name -> description (or "") of every task in the tutorial's files."""
        found: dict[str, str] = {}
        for body in self.files.values():
            for name, args in re.findall(r"^\s+(\w+) = bd\.\w*Parameter\((.*)\)", body,
                                          re.MULTILINE):
                description = re.search(r'description="([^"]*)"', args)
                found[name] = description.group(1) if description else ""
        return found


def tutorial_env(root: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("BATCHDEPS_")}
    env["PATH"] = os.path.dirname(BATCHDEPS) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env["BATCHDEPS_LOCK_DIR"] = str(root / ".locks")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def write_files(root: Path, tutorial: Tutorial) -> None:
    for relative, body in tutorial.files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under data/ with its inode and content (hidden temporary files too)."""
    data = root / "data"
    if not data.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_ino, p.read_bytes())
            for p in sorted(data.rglob("*")) if p.is_file()}


def test_readme_tutorial_files_and_commands_are_found() -> None:
    tutorial = Tutorial(README.read_text())
    assert tutorial.files, "the tutorial has no ```python block starting with '# path.py'"
    assert any(re.match(r"(\S*/)?batchdeps run ", cmd) for cmd in tutorial.commands)
    assert tutorial.build_snippet, "the tutorial no longer shows bd.build(...)"
    assert tutorial.parameters()


def test_readme_tutorial_runs_as_written(tmp_path: Path) -> None:
    """Every command of the tutorial, in order, does what its comment says."""
    tutorial = Tutorial(README.read_text())
    write_files(tmp_path, tutorial)
    # the tutorial may call `batchdeps` on PATH (an activated venv) or as .venv/bin/batchdeps
    (tmp_path / ".venv").symlink_to(Path(BATCHDEPS).resolve().parent.parent)
    env = tutorial_env(tmp_path)
    parameters = tutorial.parameters()
    for line in tutorial.commands:
        command, _, comment = line.partition("#")
        argv = shlex.split(command)
        if argv and argv[0].endswith("/batchdeps"):
            argv[0] = "batchdeps"
        before = snapshot(tmp_path)
        done = subprocess.run(["bash", "-c", line], check=False, cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=120)
        after = snapshot(tmp_path)
        said = f"$ {line}\n{done.stdout}{done.stderr}"
        if argv[:2] != ["batchdeps", "run"]:
            assert done.returncode == 0, said
            continue
        assert "Traceback" not in done.stderr, said
        if "--help" in argv:
            assert done.returncode == 0, said
            for name, description in parameters.items():
                assert f"--{name.replace('_', '-')}" in done.stdout, said
                if description:
                    assert description in " ".join(done.stdout.split()), said
            assert "default: world" in done.stdout, said
        elif "--dry-run" in argv:
            # "It exits as status does: ... 1 something would be built" -- and changes nothing.
            assert done.returncode == 1, said
            assert "missing" in done.stdout and argv[2] in done.stdout, said
            assert after == before, said
        elif "--force" in argv:
            assert done.returncode == 0, said
            assert "1 built" in done.stdout and "forced" in done.stderr + done.stdout, said
            changed = [p for p in after if p in before and after[p][0] != before[p][0]]
            assert changed, f"--force replaced no output\n{said}"
        else:
            assert done.returncode == 0, said
            built = re.search(r"builds (\S+)", comment)
            if built:
                path = built.group(1)
                assert path not in before and path in after, said
                source = (tmp_path / "data/in/world.txt").read_text()
                assert (tmp_path / path).read_text() == source.upper(), said
            if "nothing to do" in comment:
                assert after == before, said
                assert "built" not in done.stdout and "start" not in done.stderr, said
    leftovers = [p for p in snapshot(tmp_path) if ".batchdeps-tmp" in p]
    assert not leftovers, leftovers


def test_readme_tutorial_build_from_python(tmp_path: Path) -> None:
    """The tutorial's `bd.build(...)` returns a BuildResult with `tasks` and `exit_code`."""
    tutorial = Tutorial(README.read_text())
    write_files(tmp_path, tutorial)
    (tmp_path / "data/in").mkdir(parents=True)
    (tmp_path / "data/in/world.txt").write_text("hello\n")
    modules = [str(Path(f).with_suffix("")).replace("/", ".") for f in tutorial.files]
    task_name = re.match(r"bd\.build\(\[(\w+)\(", tutorial.build_snippet)
    assert task_name, tutorial.build_snippet
    script = "\n".join([
        "import batchdeps as bd",
        *(f"from {module} import *" for module in modules),
        "for _ in range(2):",
        f"    result = {tutorial.build_snippet}",
        "    assert type(result).__name__ == 'BuildResult', type(result)",
        "    print(int(result.exit_code), sorted((t, r.status) for t, r in result.tasks.items()))",
    ])
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=tmp_path,
                          env=tutorial_env(tmp_path), text=True, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    first, second = done.stdout.strip().splitlines()[-2:]
    task = task_name.group(1)
    assert first.startswith("0 ") and f"{task}(" in first and "'built'" in first, first
    assert second.startswith("0 ") and "'complete'" in second and "'built'" not in second, second


def test_readme_quick_start_builds_the_example_then_has_nothing_to_do(tmp_path: Path) -> None:
    """The README's first command, minus the install: seed the sample data, build, rebuild."""
    first_block = fenced_blocks(README.read_text())[0][1]
    quick_start = first_block.splitlines()[0]
    steps = [part.strip() for part in quick_start.split("&&")]
    steps = [step for step in steps  # the venv's tools, except the install itself
             if step.startswith(".venv/bin/") and not step.startswith(".venv/bin/pip")]
    assert any("batchdeps run" in step for step in steps), quick_start
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    env = tutorial_env(tmp_path)
    bin_dir = os.path.dirname(BATCHDEPS)
    for attempt in ("first", "second"):
        for step in steps:
            if attempt == "second" and "batchdeps run" not in step:
                continue  # "Run it twice": the run, not the seeding
            argv = shlex.split(step)
            argv[0] = os.path.join(bin_dir, argv[0].removeprefix(".venv/bin/"))
            if os.path.basename(argv[0]) == "python":
                argv[0] = sys.executable
            done = subprocess.run(argv, check=False, cwd=tmp_path, env=env, text=True,
                                  capture_output=True, timeout=300)
            assert done.returncode == 0, f"$ {step}\n{done.stdout}{done.stderr}"
        if attempt == "first":
            assert " built" in done.stdout, done.stdout
        else:  # "the second run has nothing to do"
            assert "built" not in done.stdout and "complete" in done.stdout, done.stdout


def test_every_relative_link_in_readme_and_operations_points_to_a_file() -> None:
    for doc in (README, REPO / "docs/operations.md"):
        links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text())
        assert links or doc.name == "operations.md"
        for link in links:
            if re.match(r"[a-z]+://", link):
                continue
            assert (doc.parent / link).exists(), f"{doc.name} links to missing {link}"


# -- a pipeline for the promises about where and how attempts run ----------------------------
PROMISE_PIPELINE = '''
"""Tasks that report where they ran, meet each other, retry slowly and raise in hooks."""
import json
import logging
import os
import time

import batchdeps as bd


''' + JOURNAL_FUNCTION + '''


def journal_has(event, task_id):
    try:
        with open(os.environ["JOURNAL"]) as handle:
            return any(line.startswith(f"{event}\\t{task_id}\\t") for line in handle)
    except FileNotFoundError:
        return False


def wait_in_journal(event, task_id, timeout=60.0):
    deadline = time.time() + timeout
    while not journal_has(event, task_id):
        if time.time() > deadline:
            raise RuntimeError(f"no {event} of {task_id} within {timeout} s")
        time.sleep(0.05)


class Where(bd.Task):
    """Writes the process id and process group its run() ran in."""
    tag = bd.Parameter(default="plain")

    def output(self):
        return bd.FileTarget(f"out/where-{self.tag}.json")

    def run(self):
        with self.output().open("w") as out:
            json.dump({"pid": os.getpid(), "pgid": os.getpgid(0)}, out)


class WhereTimed(Where):
    """Where, with a timeout."""
    timeout = 120


class NoOutput(bd.Task):
    """Makes nothing, so it is never complete."""

    def run(self):
        journal("start", self)


class FileUrl(bd.Task):
    """Its output is a file:// URL."""

    def output(self):
        return bd.FileTarget("file://" + os.path.abspath("out/file-url.txt"))

    def run(self):
        journal("start", self)
        with self.output().open("w") as out:
            out.write("via file://\\n")


class Meet(bd.Task):
    """Finishes only if its partner starts while it runs (a resource with no cap)."""
    name = bd.Parameter()
    partner = bd.Parameter()
    resources = {"uncapped": 1}

    def output(self):
        return bd.FileTarget(f"out/meet-{self.name}.txt")

    def run(self):
        journal("start", self)
        wait_in_journal("start", f"Meet(name={self.partner}, partner={self.name})")
        with self.output().open("w") as out:
            out.write("met\\n")


class Together(bd.WrapperTask):
    def requires(self):
        return [Meet(name="a", partner="b"), Meet(name="b", partner="a")]


class Retrier(bd.Task):
    """Always fails, then waits long for its one retry; holds a slot of `pool` while it runs."""
    resources = {"pool": 1}
    retries = 1
    retry_delay = 240.0
    max_retry_delay = 240.0

    def output(self):
        return bd.FileTarget("out/retrier.txt")

    def run(self):
        journal("start", self)
        journal("fail", self)
        raise RuntimeError("always fails")


class Gate(bd.Task):
    """Done once Retrier's first attempt has failed."""

    def output(self):
        return bd.FileTarget("out/gate.txt")

    def run(self):
        wait_in_journal("fail", "Retrier()")
        with self.output().open("w") as out:
            out.write("open\\n")


class PoolUser(bd.Task):
    """Needs the slot of `pool` that Retrier had, after Retrier's first failure."""
    resources = {"pool": 1}

    def requires(self):
        return Gate()

    def output(self):
        return bd.FileTarget("out/pool-user.txt")

    def run(self):
        journal("start", self)
        with self.output().open("w") as out:
            out.write("got the slot\\n")
        journal("end", self)


class RetryPair(bd.WrapperTask):
    def requires(self):
        return [Retrier(), PoolUser()]


class Hooked(bd.Task):
    """Its hooks write to the journal, then raise."""
    fail = bd.BoolParameter(default=False)
    sleep = bd.FloatParameter(default=0.0)
    timeout = float(os.environ.get("HOOKED_TIMEOUT", "0")) or None

    def output(self):
        return bd.FileTarget(f"out/hooked-{self.fail}-{self.sleep}.txt")

    def run(self):
        journal("start", self)
        time.sleep(self.sleep)
        if self.fail:
            raise ValueError("task says no")
        with self.output().open("w") as out:
            out.write("ok\\n")

    def on_success(self):
        journal("on_success", self)
        raise RuntimeError("bug in on_success")

    def on_failure(self, error):
        journal(f"on_failure {error}", self)
        raise RuntimeError("bug in on_failure")


class Leveled(bd.Task):
    """Logs at INFO and WARNING, then fails (so its log is kept)."""

    def output(self):
        return bd.FileTarget("out/leveled.txt")

    def run(self):
        logging.getLogger("promise.level").info("an info record")
        logging.getLogger("promise.level").warning("a warning record")
        raise ValueError("fails so that its log is kept")


class Twice(bd.Task):
    """Fails both of its attempts."""
    retries = 1
    retry_delay = 0.01

    def output(self):
        return bd.FileTarget("out/twice.txt")

    def run(self):
        journal("start", self)
        raise RuntimeError("fails every time")


class FailsOnce(bd.Task):
    """Fails its first attempt only (a marker file remembers)."""
    retries = 1
    retry_delay = 0.01

    def output(self):
        return bd.FileTarget("out/fails-once.txt")

    def run(self):
        if not os.path.exists("failed-once"):
            open("failed-once", "w").close()
            raise RuntimeError("first attempt fails")
        with self.output().open("w") as out:
            out.write("ok\\n")


class OneOfEach(bd.WrapperTask):
    """A task that needs a retry and one that fails for good."""

    def requires(self):
        return [FailsOnce(), Twice()]


class Peek(bd.Task):
    """Notes the name of its temporary file (and its pid) while the file is open."""

    def output(self):
        return bd.FileTarget("out/peek.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("peeked\\n")
            out.flush()
            names = os.listdir("out/.batchdeps-tmp")
        with open("peek.json", "w") as note:
            json.dump({"pid": os.getpid(), "names": names}, note)


class Talker(bd.Task):
    """Prints, then writes its output."""

    def output(self):
        return bd.FileTarget("out/talker.txt")

    def run(self):
        print("talker says hello", flush=True)
        with self.output().open("w") as out:
            out.write("said\\n")
'''


def add_promise_pipeline(project: Project, config_extra: str = "") -> None:
    project.write("pipelines/promises.py", PROMISE_PIPELINE)
    project.write("config.toml", '[batchdeps]\nmodules = ["pipelines"]\n' + config_extra)


def journal_lines(project: Project, event: str) -> list[list[str]]:
    """Journal lines (event, task id, pid, time) whose event starts with `event`."""
    if not project.journal.exists():
        return []
    return [line.split("\t") for line in project.journal.read_text().splitlines()
            if line.startswith(event)]


def test_task_without_outputs_runs_every_time(project: Project) -> None:
    add_promise_pipeline(project)
    for _ in range(2):
        done = project.run("run", "NoOutput")
        assert done.returncode == 0, done.stdout + done.stderr
    assert project.runs() == ["NoOutput()", "NoOutput()"]


def test_file_url_target_builds_atomically_then_reruns_as_no_op(project: Project) -> None:
    add_promise_pipeline(project)
    first = project.run("run", "FileUrl")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (project.root / "out/file-url.txt").read_text() == "via file://\n"
    assert [f for f in project.files() if ".batchdeps-tmp" not in f] == ["file-url.txt"]
    assert [f for f in project.files() if ".batchdeps-tmp" in f] == []
    again = project.run("run", "FileUrl")
    assert again.returncode == 0 and project.runs() == ["FileUrl()"], again.stdout


@pytest.mark.parametrize(("task", "workers", "where"), [
    ("Where", "1", "inline"),        # one worker, no timeout: the runner's own process
    ("WhereTimed", "1", "forked"),   # a timeout: always a forked worker, even with one
    ("Where", "2", "forked"),        # workers > 1: forked worker processes
])
def test_where_an_attempt_runs_and_workers_lead_their_own_process_group(
        project: Project, task: str, workers: str, where: str) -> None:
    add_promise_pipeline(project)
    runner = project.popen("run", task, "--workers", workers, "--tag", where + workers)
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, out + err
    ran = json.loads((project.root / f"out/where-{where}{workers}.json").read_text())
    runner_group = runner.pid  # popen starts the runner as the leader of a new session
    if where == "inline":
        assert ran["pid"] == runner.pid
    else:
        assert ran["pid"] != runner.pid
        # a worker leads a process group of its own: a Ctrl-C on the terminal (sent to the
        # runner's group) does not reach it; the runner stops it
        assert ran["pgid"] == ran["pid"] != runner_group


def test_a_resource_with_no_cap_is_unlimited(project: Project) -> None:
    add_promise_pipeline(project)  # no [resources] section: "uncapped" has no cap
    done = project.run("run", "Together", "--workers", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(project.runs()) == ["Meet(name=a, partner=b)", "Meet(name=b, partner=a)"]


def test_retry_wait_keeps_the_lock_frees_resource_slots_and_a_signal_ends_it(
        project: Project) -> None:
    add_promise_pipeline(project, "[resources]\npool = 1\n")
    runner = project.popen("run", "RetryPair", "--workers", "2")
    try:
        wait_for(lambda: journal_lines(project, "fail\tRetrier()"), 60, "Retrier to fail")
        # its slot of `pool` is given back during the (at least 120 s) wait for the retry
        wait_for(lambda: "PoolUser()" in project.runs("end"), 90, "PoolUser to get the slot")
        # ... but its lock is kept: another run cannot take Retrier meanwhile
        other = project.run("run", "Retrier", "--wait-timeout", "0.5")
        assert other.returncode == 4, other.stdout + other.stderr
        assert str(runner.pid) in other.stdout
        # a signal during the wait starts no retry and ends the run with 130
        runner.send_signal(signal.SIGTERM)
        out, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
    assert runner.returncode == 130, out + err
    assert project.runs() == ["Retrier()", "PoolUser()"]  # one attempt of Retrier, no retry
    assert (project.root / "out/pool-user.txt").exists()
    assert not (project.root / "out/retrier.txt").exists()


@pytest.mark.parametrize("where", ["config", "environment", "default"])
def test_machine_local_locks_live_in_one_file_where_the_readme_says(
        project: Project, tmp_path: Path, where: str) -> None:
    config_dir = tmp_path / "from-config"
    env_dir = tmp_path / "from-env"
    temp = tmp_path / "temp"
    temp.mkdir()
    add_promise_pipeline(project, f'lock_dir = "{config_dir}"\n' if where == "config" else "")
    env = {"BATCHDEPS_LOCK_DIR": str(env_dir), "TMPDIR": str(temp)}
    project.env.pop("BATCHDEPS_LOCK_DIR")
    if where == "default":
        del env["BATCHDEPS_LOCK_DIR"]
    project.env.update(env)
    done = project.run("run", "NoOutput")
    assert done.returncode == 0, done.stdout + done.stderr
    expected = {"config": config_dir, "environment": env_dir,
                "default": temp / f"batchdeps-locks-{os.getuid()}"}[where]
    assert sorted(p.name for p in expected.iterdir()) == ["locks"]
    for other in {config_dir, env_dir, temp / f"batchdeps-locks-{os.getuid()}"} - {expected}:
        assert not other.exists(), other


def test_default_log_folder_that_cannot_be_written_warns_and_the_run_goes_on(
        project: Project) -> None:
    add_promise_pipeline(project)
    (project.root / "logs").write_text("a file where the log folder would go\n")
    done = project.run("run", "Leveled")
    assert done.returncode == 1, done.stdout + done.stderr  # the task's own failure
    assert "WARNING" in done.stderr and "logs" in done.stderr.split("WARNING", 1)[1]
    assert "ValueError: fails so that its log is kept" in done.stdout  # the summary
    assert "Traceback" not in done.stderr


def test_build_without_log_dir_does_not_capture(project: Project) -> None:
    add_promise_pipeline(project)
    script = ("import batchdeps as bd\nfrom pipelines.promises import Talker\n"
              "print('exit', int(bd.build([Talker()]).exit_code))\n")
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=project.root,
                          env=project.env, text=True, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "talker says hello" in done.stdout and "exit 0" in done.stdout
    assert not (project.root / "logs").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_hooks_run_in_the_runner_once_and_their_errors_change_nothing(
        project: Project, workers: str) -> None:
    add_promise_pipeline(project)
    runner = project.popen("run", "Hooked", "--workers", workers)
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, out + err  # on_success raised: the task is still built
    assert (project.root / "out/hooked-False-0.0.txt").exists()
    hooks = journal_lines(project, "on_")
    assert [line[0] for line in hooks] == ["on_success"]
    assert int(hooks[0][2]) == runner.pid  # in the runner's process, not the worker
    assert "bug in on_success" in err and "Traceback" not in err
    assert "1 built" in out

    runner = project.popen("run", "Hooked", "--fail", "--workers", workers)
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == 1, out + err  # the task's failure, not the hook's
    hooks = journal_lines(project, "on_failure")
    assert [line[0] for line in hooks] == ["on_failure ValueError: task says no"]
    assert int(hooks[0][2]) == runner.pid
    assert "bug in on_failure" in err and "Traceback" not in err


def test_on_failure_of_a_timed_out_task_gets_the_timeout_error(project: Project) -> None:
    add_promise_pipeline(project)
    done = project.run("run", "Hooked", "--sleep", "60", HOOKED_TIMEOUT="1")
    assert done.returncode == 1, done.stdout + done.stderr
    hooks = journal_lines(project, "on_failure")
    assert [line[0] for line in hooks] == ["on_failure timed out after 1 s"]


def test_task_log_keeps_records_at_the_run_log_level_and_above(project: Project) -> None:
    add_promise_pipeline(project)
    done = project.run("run", "Leveled", "--log-level", "warning")
    assert done.returncode == 1, done.stdout + done.stderr
    logs = list((project.root / "logs/Leveled").rglob("1.log"))
    assert len(logs) == 1, logs
    text = logs[0].read_text()
    assert re.search(r"\d\d:\d\d:\d\d.* WARNING promise\.level: a warning record", text), text
    assert "an info record" not in text


def test_dry_run_exits_3_when_something_is_blocked_and_gives_each_reason(
        project: Project) -> None:
    done = project.run("run", "Both", "--dry-run")
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("blocked") and "NeedsMissing()" in line for line in lines)
    assert any(f"external input in/absent.txt ({project.root / 'in/absent.txt'}) missing" in line
               for line in lines)
    assert any("Both()" in line and "upstream NeedsMissing()" in line for line in lines)
    other = project.root / "out/other.txt"  # "output data/x.csv (/srv/etl/data/x.csv) missing"
    assert any(f"output out/other.txt ({other}) missing" in line for line in lines), lines
    assert project.runs() == [] and project.files() == []


# -- docs/operations.md: JSON log lines, listener events and alerts, checked against the text --
OPERATIONS = REPO / "docs/operations.md"


def notify_section(url: str = "", command: str = "", retries: int = 1) -> str:
    lines = ["\n[notify]"]
    if url:
        lines.append(f'on_failure = "{url}"')
    if command:
        lines.append(f"command = {json.dumps(command)}")
    lines += [f"retries = {retries}", "retry_delay = 0.01", "timeout = 5"]
    return "\n".join(lines) + "\n"


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def start_holder(project: Project) -> subprocess.Popen[str]:
    """A run that holds Hooked(sleep=60) until killed."""
    holder = project.popen("run", "Hooked", "--sleep", "60")
    wait_for(lambda: "Hooked(fail=false, sleep=60.0)" in project.runs(), 60, "the holder")
    return holder


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def test_json_log_lines_have_every_documented_event_and_field(project: Project) -> None:
    text = " ".join(section(OPERATIONS.read_text(), "## JSON log lines").split())
    base = re.findall(r"`(\w+)`", text.split("Every line has", 1)[1].split(".", 1)[0])
    listed = text.split("Events:", 1)[1].split("; other lines have", 1)[0]
    documented = {name: re.findall(r"`(\w+)`", fields or "")
                  for name, fields in re.findall(r"`(\w+)`(?: \(([^)]*)\))?", listed)}
    assert {"run_started", "task_finished", "alert_failed"} <= set(documented), documented
    assert base == ["time", "level", "event", "run_id", "host", "message"], base

    lines: list[dict[str, Any]] = []
    with WebhookServer(statuses=[500, 500]) as failing_hook:
        add_promise_pipeline(project, notify_section(failing_hook.url))
        failed = project.run("run", "Twice", "--log-format", "json")  # retries, fails, alerts
    assert failed.returncode == 1 and "batchdeps: 1 task(s)" in failed.stdout, failed.stdout
    lines += json_lines(failed.stderr)
    hooked = project.run("run", "Hooked", "--log-format", "json")  # on_success logs an error
    assert hooked.returncode == 0, hooked.stdout + hooked.stderr
    lines += json_lines(hooked.stderr)
    holder = start_holder(project)
    try:
        with WebhookServer() as hook:
            add_promise_pipeline(project, notify_section(hook.url))
            waited = project.run("run", "Hooked", "--sleep", "60", "--wait-timeout", "0.5",
                                 "--log-format", "json")
    finally:
        stop(holder)
    assert waited.returncode == 4, waited.stdout + waited.stderr
    lines += json_lines(waited.stderr)
    # a lock wait that ran out is alerted like any other exit code but 0
    assert [r["json"]["exit_code"] for r in hook.received] == [4]

    for line in lines:
        assert set(base) <= set(line), line
    events = {line["event"] for line in lines}
    assert "log" in events, events
    for name, fields in documented.items():
        having = [line for line in lines if line["event"] == name]
        assert having, f"no {name} line in {sorted(events)}"
        assert any(set(fields) <= set(line) for line in having), (name, fields, having)


def test_listener_events_have_the_documented_fields() -> None:
    from dataclasses import fields, is_dataclass

    from batchdeps.report import events

    text = " ".join(section(OPERATIONS.read_text(), "## Listeners for `bd.build`").split())
    listed = text.split("all carrying `run_id`:", 1)[1].split(". They are delivered", 1)[0]
    documented = re.findall(r"`([A-Z]\w+)` \(([^)]*)\)", listed)
    assert len(documented) >= 7, listed
    for name, field_text in documented:
        cls = getattr(events, name)
        assert is_dataclass(cls) and vars(cls)["__dataclass_params__"].frozen, name
        names = {f.name for f in fields(cls)}
        assert "run_id" in names, name
        assert set(re.findall(r"`(\w+)`", field_text)) <= names, (name, field_text, names)


def test_alert_payload_has_the_documented_keys(project: Project) -> None:
    doc = section(OPERATIONS.read_text(), "## Alerts")
    example = json.loads(next(body for lang, body in fenced_blocks(doc) if lang == "json"))
    with WebhookServer() as hook:
        add_promise_pipeline(project, notify_section(hook.url))
        done = project.run("run", "Twice")
    assert done.returncode == 1
    payload = hook.received[0]["json"]
    assert set(payload) == set(example)
    assert set(payload["failed"][0]) == set(example["failed"][0])
    assert payload["status"] == example["status"] == "failed"


def test_alerts_for_an_interrupted_run_and_none_for_bad_usage(project: Project) -> None:
    with WebhookServer() as hook:
        add_promise_pipeline(project, notify_section(hook.url))
        bad = project.run("run", "Hooked", "--sleep", "soon")
        assert bad.returncode == 2, bad.stdout + bad.stderr
        runner = project.popen("run", "Hooked", "--sleep", "60")
        try:
            wait_for(lambda: project.runs(), 60, "the task to start")
            runner.send_signal(signal.SIGTERM)
            out, err = runner.communicate(timeout=60)
        finally:
            stop(runner)
    assert runner.returncode == 130, out + err
    assert [(r["json"]["status"], r["json"]["exit_code"]) for r in hook.received] == [
        ("interrupted", 130)]  # nothing for the exit 2 before it


def test_alert_command_runs_in_the_config_folder_with_its_variables(
        project: Project, tmp_path: Path) -> None:
    command = ("cat > alert.json; env | grep '^BATCHDEPS_' | sort > alert.env; "
               "echo printed-by-$((6 * 7))")  # prints printed-by-42
    add_promise_pipeline(project, notify_section(command=command))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(project.command("run", "Twice", "--config",
                                          str(project.root / "config.toml")),
                          check=False, cwd=elsewhere, env=project.env, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert not (elsewhere / "alert.json").exists()
    alert = json.loads((project.root / "alert.json").read_text())
    variables = dict(line.split("=", 1) for line in
                     (project.root / "alert.env").read_text().splitlines())
    assert variables["BATCHDEPS_RUN_ID"] == alert["run_id"]
    assert variables["BATCHDEPS_EXIT_CODE"] == "1"
    assert variables["BATCHDEPS_STATUS"] == alert["status"] == "failed"
    assert variables["BATCHDEPS_PIPELINE"] == alert["pipeline"] == "Twice()"
    assert variables["BATCHDEPS_FAILED"] == "Twice()"
    assert variables["BATCHDEPS_TEXT"] == alert["text"]
    assert "printed-by-42" not in done.stdout + done.stderr  # discarded


def test_webhook_answers_408_and_429_are_retried(project: Project) -> None:
    with WebhookServer(statuses=[408, 429]) as hook:
        add_promise_pipeline(project, notify_section(hook.url, retries=3))
        done = project.run("run", "Twice")
    assert done.returncode == 1
    assert len(hook.received) == 3, done.stderr
    assert "alert sent via webhook" in done.stderr


def test_config_sets_task_timeout_log_format_and_log_level(project: Project) -> None:
    add_promise_pipeline(project, 'timeout = 1\nlog_format = "json"\nlog_level = "WARNING"\n')
    done = project.run("run", "Hooked", "--sleep", "60")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "timed out after 1 s" in done.stdout  # [batchdeps] timeout, for a class with none
    lines = json_lines(done.stderr)  # [batchdeps] log_format = "json": every line is JSON
    assert lines and {line["level"] for line in lines} <= {"WARNING", "ERROR"}, lines
    assert not any(line["event"] == "task_started" for line in lines)  # INFO is below WARNING


def test_lease_time_defaults_to_30_seconds() -> None:
    from batchdeps.config import Config
    from batchdeps.run.session import make_lock_provider

    provider = make_lock_provider(Config(lock={"url": "http://127.0.0.1:9"}))
    assert getattr(provider, "ttl", None) == 30
    provider = make_lock_provider(Config(lock={"url": "http://127.0.0.1:9", "ttl": 7}))
    assert getattr(provider, "ttl", None) == 7


def test_documented_built_in_defaults_are_the_code_s() -> None:
    """The defaults operations.md names for task options and alert deliveries."""
    from batchdeps.config import Config
    from batchdeps.report.notify import notifier_from
    from batchdeps.run.runner import OPTION_DEFAULTS

    text = " ".join(OPERATIONS.read_text().split())
    listed = text.split("then from the built-in defaults (", 1)[1].split(")", 1)[0]
    task_defaults = {k: float(v) for k, v in re.findall(r"`(\w+) = ([\d.]+)`", listed)}
    assert set(task_defaults) == {"retries", "retry_delay", "retry_backoff", "max_retry_delay"}
    assert {k: OPTION_DEFAULTS[k] for k in task_defaults} == task_defaults

    alerts = " ".join(section(OPERATIONS.read_text(), "## Alerts").split())
    documented = {name: float(value) for name, value in
                  re.findall(r"`(retries|retry_delay|timeout)`[^(]*\(default ([\d.]+)\)", alerts)}
    assert set(documented) == {"retries", "retry_delay", "timeout"}, documented
    notifier = notifier_from(Config(notify={"command": "true"}))
    assert notifier is not None
    assert {name: float(getattr(notifier, name)) for name in documented} == documented


def test_default_retry_delay_is_one_second_with_equal_jitter(project: Project) -> None:
    project.write("pipelines/once.py", '''
import os

import batchdeps as bd


class FailsOnce(bd.Task):
    retries = 1

    def output(self):
        return bd.FileTarget("out/fails-once.txt")

    def run(self):
        if not os.path.exists("failed-once"):
            open("failed-once", "w").close()
            raise RuntimeError("first attempt fails")
        with self.output().open("w") as out:
            out.write("ok\\n")
''')
    done = project.run("run", "FailsOnce")
    assert done.returncode == 0, done.stdout + done.stderr
    retry = re.search(r"retry FailsOnce\(\) in ([\d.]+) s", done.stderr)
    assert retry, done.stderr
    assert 0.5 <= float(retry.group(1)) <= 1.0, retry.group(0)


def test_promises_md_names_only_tests_that_exist() -> None:
    """docs/promises.md: every test it names exists, and every row says what backs it."""
    text = (REPO / "docs/promises.md").read_text()
    named = re.findall(r"(tests/[\w/]+\.py)::(test_\w+)", text)
    assert len(named) > 100, len(named)
    for path, name in named:
        source = REPO / path
        assert source.exists(), path
        assert re.search(rf"^(async )?def {name}\(", source.read_text(), re.MULTILINE), \
            f"docs/promises.md names {path}::{name}, which does not exist"
    rows = [line for line in text.splitlines()
            if line.startswith("| ") and not line.startswith(("| Promise", "| ---"))]
    assert len(rows) > 100, len(rows)
    for row in rows:
        backed = row.rstrip(" |").rsplit(" | ", 1)[-1]
        assert re.search(r"tests/|changed|open: issue \d+|figure|see docs/", backed), row


@pytest.mark.parametrize("workers", ["1", "2"])
def test_after_a_second_signal_the_local_locks_are_free(project: Project, workers: str) -> None:
    from support.produtil import add_prod_pipeline, journal_events

    add_prod_pipeline(project, "kill_grace = 60\n")
    runner = project.popen("run", "Stubborn", "--workers", workers)
    rerun = None
    try:
        wait_for(lambda: journal_events(project, "sleeping"), 60, "the task to start")
        runner.send_signal(signal.SIGINT)
        wait_for(lambda: journal_events(project, "ignored"), 30, "the task to shrug it off")
        runner.send_signal(signal.SIGINT)
        out, err = runner.communicate(timeout=60)
        assert runner.returncode == 130, out + err
        # "Local locks are freed by the exit": a new run takes the task at once
        rerun = project.popen("run", "Stubborn", "--workers", workers, "--wait-timeout", "5")
        wait_for(lambda: len(journal_events(project, "sleeping")) == 2 or rerun.poll() is not None,
                 60, "the rerun to start the task")
        assert rerun.poll() is None, rerun.communicate()
    finally:
        stop(runner)
        if rerun is not None:
            stop(rerun)


def skeleton(line: str) -> str:
    """A log or summary line with what varies from run to run replaced by placeholders."""
    line = re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d{4} ", "TIME ", line)
    line = re.sub(r"\b[A-Z]\w*\([^()]*\)", "TASK", line)
    line = re.sub(r"(failed: |TASK: )\w*(Error|Exception): .*?( \(log | \[|$)", r"\1ERROR\3",
                  line)
    line = re.sub(r"[\w.=,-]*/\S*[\w]", "PATH", line)
    line = line.replace("PATH (PATH)", "PATH")
    return re.sub(r"\d+(\.\d+)?", "N", line)


def test_retry_log_lines_and_summary_look_as_operations_md_shows(project: Project) -> None:
    retries = section(OPERATIONS.read_text(), "## Retries")
    logged, summary = [body.splitlines() for lang, body in fenced_blocks(retries) if not lang][:2]
    add_promise_pipeline(project)
    done = project.run("run", "OneOfEach")
    assert done.returncode == 1, done.stdout + done.stderr
    got_log = {skeleton(line) for line in done.stderr.splitlines()}
    for line in logged:
        assert skeleton(line) in got_log, (skeleton(line), sorted(got_log))
    got_summary = [skeleton(line) for line in done.stdout.splitlines()]
    first = re.sub(r": .* in ", ": ... in ", skeleton(summary[0]))
    assert re.sub(r": .* in ", ": ... in ", got_summary[0]) == first, got_summary
    for line in summary[1:]:
        assert skeleton(line) in got_summary, (skeleton(line), got_summary)


def test_every_option_in_the_readme_usage_block_is_in_the_command_s_help(
        project: Project) -> None:
    """README, Command line: each flag shown for a command exists, with the defaults shown."""
    usage = next(body for lang, body in fenced_blocks(section(README.read_text(),
                                                              "## Command line")) if not lang)
    commands: dict[str, list[str]] = {}
    current = ""
    for line in usage.splitlines():
        text = line.split("#", 1)[0]
        if text.startswith("batchdeps "):
            current = text.split()[1]
        commands.setdefault(current, []).append(text)
    assert {"run", "lock-server"} <= set(commands), commands
    for command, lines in commands.items():
        text = " ".join(lines)
        argv = [command, "D", "--help"] if "TASK" in text else [command, "--help"]
        done = project.run(*argv)
        assert done.returncode == 0, done.stdout + done.stderr
        helped = " ".join(done.stdout.split())
        for flag in re.findall(r"--[a-z][\w-]*", text):
            assert re.search(rf"{flag}\b", helped), f"`batchdeps {command}` has no {flag}"
        for flag, default in re.findall(r"\[(--[a-z][\w-]*) ([0-9][\w.]*)\]", text):
            assert re.search(rf"{flag} .*?default: {re.escape(default)}\b", helped), \
                f"`batchdeps {command} {flag}` does not default to {default}"


# -- "Linear": the work per task does not grow with the graph -------------------------------
_calls: collections.Counter[tuple[str, str]] = collections.Counter()


def _ints(*values: Any) -> list[int]:
    """Parameter values as ints (the descriptors are not typed for mypy)."""
    return [int(value) for value in values]


class _Node(bd.Task):
    """One node of a layered graph: each node needs every node of the next layer."""
    depth = bd.IntParameter()
    i = bd.IntParameter()
    width = bd.IntParameter()
    layers = bd.IntParameter()

    def requires(self) -> list[bd.Task]:
        _calls["requires", self.task_id] += 1
        depth, width, layers = _ints(self.depth, self.width, self.layers)
        if depth + 1 >= layers:
            return []
        return [_Node(depth=depth + 1, i=j, width=width, layers=layers) for j in range(width)]

    def output(self) -> bd.Target:
        _calls["output", self.task_id] += 1
        return bd.FileTarget(f"memory://linear-{self.width}-{self.layers}/{self.depth}-{self.i}")

    def complete(self) -> bool:
        _calls["complete", self.task_id] += 1
        return super().complete()

    def run(self) -> None:
        _calls["run", self.task_id] += 1
        with self.output().open("w") as out:
            out.write("x")


class _Layers(bd.WrapperTask):
    width = bd.IntParameter()
    layers = bd.IntParameter()

    def requires(self) -> list[bd.Task]:
        width, layers = _ints(self.width, self.layers)
        return [_Node(depth=0, i=j, width=width, layers=layers) for j in range(width)]


def _calls_per_task(width: int, layers: int, tmp_path: Path) -> dict[str, int]:
    _calls.clear()
    config = bd.Config(batchdeps={"lock_dir": str(tmp_path / "locks")})
    result = bd.build(_Layers(width=width, layers=layers), config=config)
    assert result.exit_code == 0 and len(result.tasks) == width * layers + 1
    most: dict[str, int] = {}
    for (kind, _task), count in _calls.items():
        most[kind] = max(most.get(kind, 0), count)
    assert sum(n for (kind, _), n in _calls.items() if kind == "requires") == width * layers
    return most


def test_the_work_per_task_does_not_grow_with_the_graph(tmp_path: Path) -> None:
    """README: 'Resolution and execution cost O(tasks + edges)'. Counted, not timed: each
    task's requires(), output(), complete() and run() are called as often in a graph of 10
    tasks and 27 edges as in one of 97 tasks and 960 edges; a shared task is resolved once."""
    small = _calls_per_task(3, 3, tmp_path)
    large = _calls_per_task(12, 8, tmp_path)
    assert small == large, (small, large)
    assert small["requires"] == small["run"] == 1, small


# -- [storage.PROTOCOL] for any fsspec protocol ------------------------------------------------
RECORDING_PIPELINE = '''
"""A file system under a protocol of its own that notes the options it is made with."""
import json
import os

import fsspec
from fsspec.implementations.local import LocalFileSystem

import batchdeps as bd


class RecordingFileSystem(LocalFileSystem):
    protocol = ("recording",)

    def __init__(self, *args, **options):
        with open(os.environ["OPTIONS_LOG"], "a") as log:
            log.write(json.dumps({"pid": os.getpid(), **options}) + "\\n")
        super().__init__(**options)


fsspec.register_implementation("recording", RecordingFileSystem, clobber=True)


class Recorded(bd.Task):
    n = bd.IntParameter()

    def output(self):
        return bd.FileTarget("recording://" + os.path.abspath(f"rec/{self.n}/out.txt"))

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{self.n}\\n")


class TwoRecorded(bd.WrapperTask):
    def requires(self):
        return [Recorded(n=1), Recorded(n=2)]
'''


@pytest.mark.parametrize("workers", ["1", "2"])
def test_storage_options_of_any_protocol_come_from_its_config_section(
        project: Project, workers: str) -> None:
    """README, Outputs on S3: 'any other fsspec protocol reads [storage.PROTOCOL]', in the
    runner and in forked workers alike. auto_mkdir makes the write work at all here."""
    project.write("pipelines/recording.py", RECORDING_PIPELINE)
    project.write("config.toml", '[batchdeps]\nmodules = ["pipelines"]\n'
                  '[storage.recording]\nauto_mkdir = true\nmarker = "from-config"\n')
    log = project.root / "options.jsonl"
    runner = project.popen("run", "TwoRecorded", "--workers", workers, OPTIONS_LOG=str(log))
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, out + err
    assert (project.root / "rec/1/out.txt").read_text() == "1\n"
    made = [json.loads(line) for line in log.read_text().splitlines()]
    assert made and all(m["marker"] == "from-config" and m["auto_mkdir"] is True for m in made)
    if workers == "2":
        assert {m["pid"] for m in made} - {runner.pid}, made  # the workers' own instances


class _InMemory(bd.Task):
    n = bd.IntParameter()

    def output(self) -> bd.Target:
        return bd.FileTarget(f"memory://promises-in-memory/{self.n}.txt")

    def run(self) -> None:
        with self.output().open("w") as out:
            out.write("kept in this process\n")


def test_memory_targets_work_in_one_process(tmp_path: Path) -> None:
    """README, Tasks: memory:// is held by one process: bd.build with one worker."""
    config = bd.Config(batchdeps={"lock_dir": str(tmp_path / "locks")})
    tasks = [_InMemory(n=1), _InMemory(n=2)]
    first = bd.build(tasks, workers=1, config=config)
    assert first.exit_code == 0 and first.counts() == {"built": 2}, first.tasks
    with _InMemory(n=2).output().open("r") as src:
        assert src.read() == "kept in this process\n"
    again = bd.build(tasks, workers=1, config=config)
    assert again.counts() == {"complete": 2}, again.tasks


def test_temporary_file_name_is_the_one_the_readme_gives(project: Project) -> None:
    """README, How writes stay atomic: `<folder>/.batchdeps-tmp/<name>.<host>-<pid>...`."""
    text = section(README.read_text(), "### How writes stay atomic")
    pattern = re.search(r"`<folder>/\.batchdeps-tmp/([^`]+)`", text)
    assert pattern, text
    parts = {"<name>": re.escape("peek.txt"), "<host>": "[0-9a-f]+", "<pid>": "(?P<pid>\\d+)",
             "<random>": "[0-9a-f]+", "<n>": "\\d+"}
    regex = re.escape(pattern.group(1))
    for placeholder in re.findall(r"<\w+>", pattern.group(1)):
        assert placeholder in parts, f"README names an unknown part {placeholder}"
        regex = regex.replace(re.escape(placeholder), parts[placeholder])
    add_promise_pipeline(project)
    done = project.run("run", "Peek")
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads((project.root / "peek.json").read_text())
    matches = [re.fullmatch(regex, name) for name in seen["names"]]
    assert len(matches) == 1 and matches[0], (regex, seen)
    assert int(matches[0].group("pid")) == seen["pid"]
    assert (project.root / "out/peek.txt").read_text() == "peeked\n"


def test_readme_speed_figures_are_those_of_benchmarks_md() -> None:
    """README, Speed: every figure (seconds, MiB, ratios) is one of docs/benchmarks.md's,
    rounded as the README rounds it; re-measuring means updating both."""
    figure = re.compile(r"(\d+(?:\.\d+)?) ?(s|MiB|x)\b")
    speed = section(README.read_text(), "## Speed")
    quoted = figure.findall(speed)
    assert len(quoted) >= 5, quoted
    measured = figure.findall((REPO / "docs/benchmarks.md").read_text())
    for value, unit in quoted:
        places = len(value.partition(".")[2])
        assert any(u == unit and round(float(v), places) == float(value) for v, u in measured), \
            f"README quotes {value} {unit}, which docs/benchmarks.md does not have"
