"""Opt-in staleness end to end: `--rerun-triggers` on run, status and --dry-run, the build
record committed with the outputs (local, kill -9 mid-commit), and the default unchanged."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from support.project import Project

PIPELINE = '''
"""Two days cleaned from raw inputs, a report over both and an independent lookup."""
import os
import signal
import sys
import threading
import time

import batchdeps as bd

from .demo import journal


class Raw(bd.ExternalTask):
    day = bd.Parameter()

    def output(self):
        return bd.FileTarget(f"in/raw-{self.day}.txt")


class Clean(bd.Task):
    version = os.environ.get("CLEAN_VERSION", "1")
    day = bd.Parameter()

    def requires(self):
        return Raw(day=self.day)

    def output(self):
        return bd.FileTarget(f"out/clean-{self.day}.txt")

    def run(self):
        journal("start", self)
        time.sleep(float(os.environ.get("SLEEP_CLEAN", "0")))
        with self.input().open() as src, self.output().open("w") as dst:
            dst.write(src.read().upper())


class Lookup(bd.Task):
    def output(self):
        return bd.FileTarget("out/lookup.txt")

    def run(self):
        journal("start", self)
        with self.output().open("w") as dst:
            dst.write("lookup")


class Report(bd.Task):
    """Its output does not encode `top`."""
    top = bd.IntParameter(default=5)

    def requires(self):
        return [Clean(day="d1"), Clean(day="d2"), Lookup()]

    def output(self):
        return bd.FileTarget("out/report.txt")

    def run(self):
        journal("start", self)
        with self.output().open("w") as dst:
            dst.write(f"top {self.top}")


def _kill_when(path, text):
    """SIGKILL this process as soon as `path` holds `text`: the commit is then under way."""
    sys.setswitchinterval(1e-5)

    def watch():
        while True:
            try:
                with open(path) as handle:
                    if handle.read() == text:
                        os.kill(os.getpid(), signal.SIGKILL)
            except OSError:
                pass

    threading.Thread(target=watch, daemon=True).start()


class Wide(bd.Task):
    """Many outputs; the first is committed last (after the build record)."""
    version = os.environ.get("WIDE_VERSION", "1")

    def output(self):
        return [bd.FileTarget(f"wide/{i:04d}.txt") for i in range(1500)]

    def run(self):
        if os.environ.get("FAIL_RUN"):
            raise RuntimeError("asked to fail")
        tag = os.environ.get("TAG", "new")
        for target in self.output():
            with target.open("w") as out:
                out.write(tag)
        if os.environ.get("KILL_AT_COMMIT"):
            _kill_when(self.output()[1].path, tag)
'''

TRIGGERS = ("--rerun-triggers", "version,params,upstream")
C1, C2, REPORT, LOOKUP = "Clean(day=d1)", "Clean(day=d2)", "Report(top=5)", "Lookup()"


@pytest.fixture
def stale_project(project: Project) -> Project:
    project.write("pipelines/stale.py", PIPELINE)
    project.write("in/raw-d1.txt", "one\n")
    project.write("in/raw-d2.txt", "two\n")
    return project


def planned(stdout: str) -> dict[str, str]:
    """task id -> reason, from the lines of a dry run."""
    steps = {}
    for line in stdout.splitlines():
        verb, _, rest = line.partition(" ")
        if verb == "run" and "  (" in rest:
            task_id, _, reason = rest.strip().partition("  (")
            steps[task_id] = reason.removesuffix(")")
    return steps


def status_json(project: Project, *args: str, **env: str) -> dict[str, dict]:
    result = project.run("status", "Report", *args, "--format", "json", **env)
    assert result.returncode in (0, 1), result.stderr
    return {node["task_id"]: node for node in json.loads(result.stdout)["nodes"]}


def records(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*.batchdeps.json"))


def built(project: Project, *args: str, **env: str) -> list[str]:
    """Run Report with `args`; the task ids that ran."""
    before = len(project.runs())
    result = project.run("run", "Report", *args, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    return project.runs()[before:]


def test_version_bump_rebuilds_the_task_and_its_dependants_and_nothing_else(
        stale_project: Project) -> None:
    project = stale_project
    assert sorted(built(project, *TRIGGERS)) == sorted([C1, C2, LOOKUP, REPORT])
    assert project.run("status", "Report", *TRIGGERS, "--stale").returncode == 0

    dry = project.run("run", "Report", *TRIGGERS, "--dry-run", CLEAN_VERSION="2")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert planned(dry.stdout) == {C1: "version 1 → 2", C2: "version 1 → 2",
                                   REPORT: f"upstream {C1} and 1 more rebuilt"}
    status = project.run("status", "Report", *TRIGGERS, CLEAN_VERSION="2")
    assert status.returncode == 1
    assert "[complete, stale]" in status.stdout and "stale: version 1 → 2" in status.stdout
    assert project.run("status", "Report", *TRIGGERS, "--stale",
                       CLEAN_VERSION="2").returncode == 1

    assert sorted(built(project, *TRIGGERS, CLEAN_VERSION="2")) == sorted([C1, C2, REPORT])
    assert project.run("status", "Report", *TRIGGERS, "--stale",
                       CLEAN_VERSION="2").returncode == 0
    assert built(project, *TRIGGERS, CLEAN_VERSION="2") == []


def test_a_version_bump_without_the_upstream_trigger_rebuilds_only_that_task(
        stale_project: Project) -> None:
    project = stale_project
    built(project, "--rerun-triggers", "version")
    # Clean sits below the complete Report: the walk still reaches it
    assert sorted(built(project, "--rerun-triggers", "version", CLEAN_VERSION="2")) == [C1, C2]


def test_a_changed_parameter_rebuilds_the_task_whose_output_does_not_encode_it(
        stale_project: Project) -> None:
    project = stale_project
    built(project, *TRIGGERS)
    assert built(project, "--top", "10") == []  # the default rule: the output exists
    dry = project.run("run", "Report", "--top", "10", *TRIGGERS, "--dry-run")
    assert planned(dry.stdout) == {"Report(top=10)": "parameter top 5 → 10"}
    assert built(project, "--top", "10", *TRIGGERS) == ["Report(top=10)"]
    assert (project.root / "out/report.txt").read_text() == "top 10"
    assert status_json(project, "--top", "10", *TRIGGERS)["Report(top=10)"]["stale"] == []


def test_a_rewritten_input_rebuilds_its_users_with_the_reason(stale_project: Project) -> None:
    project = stale_project
    built(project, *TRIGGERS)
    raw = project.root / "in/raw-d2.txt"
    raw.write_text("two, again\n")
    later = os.stat(project.root / "out/clean-d2.txt").st_mtime + 120
    os.utime(raw, (later, later))
    nodes = status_json(project, *TRIGGERS)
    assert nodes[C2]["stale"][0].startswith("input in/raw-d2.txt rewritten ")
    assert "after the output (" in nodes[C2]["stale"][0]
    assert nodes[REPORT]["stale"] == [f"upstream {C2} rebuilt"]
    assert nodes[C1]["stale"] == [] and nodes[LOOKUP]["stale"] == []
    assert built(project, *TRIGGERS) == [C2, REPORT]
    assert (project.root / "out/clean-d2.txt").read_text() == "TWO, AGAIN\n"
    assert project.run("status", "Report", *TRIGGERS, "--stale").returncode == 0


def test_an_input_put_back_with_an_older_time_still_counts_as_changed(
        stale_project: Project) -> None:
    project = stale_project
    built(project, *TRIGGERS)
    raw = project.root / "in/raw-d1.txt"
    raw.write_text("one, restored from a backup\n")
    os.utime(raw, (1_000_000_000, 1_000_000_000))  # older than the output: make would miss it
    reason = status_json(project, *TRIGGERS)[C1]["stale"][0]
    assert reason.startswith("input in/raw-d1.txt changed since the output was built")
    assert built(project, "--rerun-triggers", "upstream") == [C1, REPORT]


def test_outputs_without_a_record_are_up_to_date_unless_unrecorded_is_asked(
        stale_project: Project) -> None:
    project = stale_project
    assert sorted(built(project)) == sorted([C1, C2, LOOKUP, REPORT])
    assert records(project.root) == []  # the default writes no record
    status = project.run("status", "Report", *TRIGGERS)
    assert status.returncode == 0, status.stdout
    assert "[complete, no record]" in status.stdout and "no record:" in status.stdout
    assert project.run("status", "Report", *TRIGGERS, "--stale").returncode == 0
    with_unrecorded = ("--rerun-triggers", "version,params,upstream,unrecorded")
    assert project.run("status", "Report", *with_unrecorded, "--stale").returncode == 1
    assert sorted(built(project, *with_unrecorded)) == sorted([C1, C2, LOOKUP, REPORT])
    assert records(project.root) == [
        "out/.clean-d1.txt.batchdeps.json", "out/.clean-d2.txt.batchdeps.json",
        "out/.lookup.txt.batchdeps.json", "out/.report.txt.batchdeps.json"]
    assert project.run("status", "Report", *with_unrecorded, "--stale").returncode == 0


def test_the_record_is_never_an_output(stale_project: Project) -> None:
    project = stale_project
    built(project, *TRIGGERS)
    nodes = status_json(project, *TRIGGERS)
    assert nodes[C1]["outputs"] == ["out/clean-d1.txt"]
    # a record alone does not make a task complete
    (project.root / "out/clean-d1.txt").unlink()
    assert planned(project.run("run", "Report", *TRIGGERS, "--dry-run").stdout) == {}
    assert status_json(project, *TRIGGERS)[C1]["state"] == "missing"


def test_without_triggers_nothing_changes_and_no_record_is_read(
        stale_project: Project) -> None:
    project = stale_project
    built(project, *TRIGGERS)
    # a record that cannot be read: only a command that reads records notices
    record = project.root / "out/.clean-d1.txt.batchdeps.json"
    record.unlink()
    record.mkdir()
    assert built(project, CLEAN_VERSION="2") == []  # no trigger: a version bump is ignored
    dry = project.run("run", "Report", "--dry-run", CLEAN_VERSION="2")
    assert dry.returncode == 0 and "nothing to do" in dry.stdout
    status = project.run("status", "Report", CLEAN_VERSION="2")
    assert status.returncode == 0 and "stale" not in status.stdout
    assert "stale" not in json.loads(project.run(
        "status", "Report", "--format", "json").stdout)["nodes"][0]
    read = project.run("status", "Report", *TRIGGERS)
    assert read.returncode != 0 and "cannot read" in read.stderr  # it is read with triggers
    assert "Traceback" not in read.stderr


def test_triggers_from_config_and_environment_and_none_turns_them_off(
        stale_project: Project) -> None:
    project = stale_project
    built(project, *TRIGGERS)
    project.write("config.toml", '[batchdeps]\nmodules = ["pipelines"]\n\n'
                                 '[run]\nrerun_triggers = ["version"]\n')
    assert project.run("status", "Report", "--stale", CLEAN_VERSION="2").returncode == 1
    assert built(project, "--rerun-triggers", "none", CLEAN_VERSION="2") == []
    assert project.run("status", "Report", "--stale", CLEAN_VERSION="2",
                       BATCHDEPS_RUN__RERUN_TRIGGERS="params").returncode == 0
    assert sorted(built(project, CLEAN_VERSION="2")) == [C1, C2]


@pytest.mark.parametrize("args", [("run", "Report", "--rerun-triggers", "version,mtime"),
                                  ("status", "Report", "--rerun-triggers", "bogus"),
                                  ("run", "Report", "--dry-run", "--rerun-triggers", "")])
def test_a_bad_trigger_name_is_bad_usage(stale_project: Project, args: tuple[str, ...]) -> None:
    result = stale_project.run(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    if args[-1]:
        assert f"unknown rerun trigger '{args[-1].split(',')[-1]}'" in result.stderr
        assert "version, params, upstream, unrecorded" in result.stderr


def test_a_bad_trigger_in_config_is_a_config_error(stale_project: Project) -> None:
    stale_project.write("config.toml", '[run]\nrerun_triggers = ["code"]\n')
    result = stale_project.run("status", "Report")
    assert result.returncode == 2
    assert "[run] rerun_triggers" in result.stderr and "'code'" in result.stderr


def test_stale_without_any_trigger_is_bad_usage(stale_project: Project) -> None:
    result = stale_project.run("status", "Report", "--stale")
    assert result.returncode == 2 and "--stale needs rerun triggers" in result.stderr


def test_record_builds_writes_records_without_triggers(stale_project: Project) -> None:
    project = stale_project
    project.write("config.toml", '[batchdeps]\nmodules = ["pipelines"]\n\n'
                                 '[run]\nrecord_builds = true\n')
    built(project)
    assert len(records(project.root)) == 4
    assert built(project, CLEAN_VERSION="2") == []  # recorded, but no trigger asked
    assert project.run("status", "Report", *TRIGGERS, "--stale",
                       CLEAN_VERSION="2").returncode == 1


# -- the record is part of the commit ------------------------------------------------------
def _wide(project: Project, *args: str, **env: str):  # noqa: ANN202
    return project.run("run", "Wide", "--rerun-triggers", "version", *args, **env)


def _record(project: Project) -> dict:
    return json.loads((project.root / "wide/.0000.txt.batchdeps.json").read_text())


def _texts(project: Project) -> set[str]:
    return {p.read_text() for p in (project.root / "wide").glob("*.txt")}


def test_kill_9_mid_commit_leaves_outputs_and_record_consistent(
        stale_project: Project) -> None:
    project = stale_project
    assert _wide(project, TAG="old").returncode == 0
    assert _record(project)["version"] == "1" and _texts(project) == {"old"}
    killed = _wide(project, TAG="new", KILL_AT_COMMIT="1", WIDE_VERSION="2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "new" in _texts(project)  # killed with part of the commit done
    # the next run that takes the task's lock rolls the whole commit back, record included
    failed = _wide(project, FAIL_RUN="1", WIDE_VERSION="2")
    assert failed.returncode == 1 and "rolled back an interrupted commit" in failed.stderr
    assert _texts(project) == {"old"} and len(list((project.root / "wide").glob("*.txt"))) == 1500
    assert _record(project)["version"] == "1"  # the record of the outputs that are there
    dry = _wide(project, "--dry-run", WIDE_VERSION="2")
    assert planned(dry.stdout) == {"Wide()": "version 1 → 2"}
    assert _wide(project, TAG="new", WIDE_VERSION="2").returncode == 0
    assert _record(project)["version"] == "2" and _texts(project) == {"new"}
    assert _wide(project, "--dry-run", WIDE_VERSION="2").returncode == 0


def test_a_record_that_cannot_be_parsed_counts_as_none(stale_project: Project) -> None:
    project = stale_project
    built(project, *TRIGGERS)
    (project.root / "out/.report.txt.batchdeps.json").write_text("{not json")
    nodes = status_json(project, *TRIGGERS)
    assert nodes[REPORT]["no_record"] is True and nodes[REPORT]["stale"] == []
    assert nodes[C1]["no_record"] is False
    with_unrecorded = ("--rerun-triggers", "version,params,upstream,unrecorded")
    assert built(project, *with_unrecorded) == [REPORT]


# -- the decision itself, from records and identities (no I/O) ------------------------------
def test_assess_names_added_and_removed_parameters_and_skips_tasks_without_files() -> None:
    import batchdeps as bd
    from batchdeps.staleness import assess, build_record

    class Made(bd.Task):
        version = 3
        n = bd.IntParameter(default=1)

        def output(self):  # noqa: ANN202
            return bd.FileTarget("made.txt")

    class Over(bd.WrapperTask):
        def requires(self):  # noqa: ANN202
            return Made()

    made, over = Made(), Over()
    record = build_record(made, {})
    assert record["version"] == "3" and record["params"] == {"n": "1"}
    record["params"] = {"m": "7"}
    found = assess([made, over], {over: [made]}, {made: made.output(), over: []},
                   {made: True, over: True}, {made: record}, {},
                   frozenset({"params", "upstream", "unrecorded"}))
    assert found.stale[made] == ["parameter n (none) → 1", "parameter m 7 → (none)"]
    assert found.stale[over] == [f"upstream {made.task_id} rebuilt"]
    assert over not in found.unrecorded  # no file output: it can have no record
    assert found.above == {over}
    quiet = assess([made, over], {over: [made]}, {made: made.output(), over: []},
                   {made: True, over: True}, {made: record}, {}, frozenset({"version"}))
    assert quiet.stale == {}


def test_a_version_that_is_not_text_is_a_definition_error(stale_project: Project) -> None:
    project = stale_project
    project.write("pipelines/odd.py", """
        import batchdeps as bd

        class Odd(bd.Task):
            version = ["1"]

            def output(self):
                return bd.FileTarget("out/odd.txt")

            def run(self):
                with self.output().open("w") as out:
                    out.write("odd")
    """)
    assert project.run("run", "Odd").returncode == 0  # without triggers it is not looked at
    result = project.run("status", "Odd", "--rerun-triggers", "version")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Odd(): version must be a string" in result.stderr and "Traceback" not in result.stderr
    assert project.run("run", "Odd", "--force", "--rerun-triggers", "version").returncode == 2


def test_two_runs_at_once_rebuild_each_stale_task_once(stale_project: Project) -> None:
    project = stale_project
    built(project, *TRIGGERS)
    before = len(project.runs())
    runs = [project.popen("run", "Report", *TRIGGERS, CLEAN_VERSION="2", SLEEP_CLEAN="1")
            for _ in range(2)]
    for proc in runs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert sorted(project.runs()[before:]) == sorted([C1, C2, REPORT])  # each once
    assert project.run("status", "Report", *TRIGGERS, "--stale",
                       CLEAN_VERSION="2").returncode == 0


# -- dynamic dependencies: what the record covers ---------------------------------------
DYNAMIC = '''
"""A task that finds its input only while it runs, and one that also lists it."""
import os
import time

import batchdeps as bd

from .demo import journal
from .stale import Raw


class Yields(bd.Task):
    version = os.environ.get("YIELDS_VERSION", "1")

    def output(self):
        return bd.FileTarget("out/yields.txt")

    def run(self):
        journal("start", self)
        raw = yield Raw(day="d1")
        with raw.open() as src, self.output().open("w") as dst:
            dst.write(src.read())


class YieldsListed(Yields):
    """The same input in requires() too: then `upstream` sees it."""

    def requires(self):
        return Raw(day="d1")

    def output(self):
        return bd.FileTarget("out/yields-listed.txt")
'''


def test_a_yielded_input_is_outside_the_record_unless_requires_lists_it(
        stale_project: Project) -> None:
    project = stale_project
    project.write("pipelines/dyn.py", DYNAMIC)
    for family in ("Yields", "YieldsListed"):
        done = project.run("run", family, *TRIGGERS)
        assert done.returncode == 0, done.stdout + done.stderr
    # version and params work as for any task
    bumped = project.run("run", "Yields", *TRIGGERS, "--dry-run", YIELDS_VERSION="2")
    assert planned(bumped.stdout) == {"Yields()": "version 1 → 2"}
    # a rewritten input that only run() yields is not seen by `upstream` (docs/staleness.md)
    stat = os.stat(project.root / "in/raw-d1.txt")
    project.write("in/raw-d1.txt", "one, corrected\n")
    os.utime(project.root / "in/raw-d1.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert project.run("status", "Yields", *TRIGGERS, "--stale").returncode == 0
    listed = project.run("run", "YieldsListed", *TRIGGERS, "--dry-run")
    assert planned(listed.stdout)["YieldsListed()"].startswith("input in/raw-d1.txt")


def test_the_status_page_shows_why_a_stale_task_is_being_rebuilt(
        stale_project: Project) -> None:
    from support.statuspage import page_showing
    from support.waiting import wait_for

    project = stale_project
    built(project, *TRIGGERS)
    proc = project.popen("run", "Report", *TRIGGERS, CLEAN_VERSION="2", SLEEP_CLEAN="30")
    try:
        page = wait_for(lambda: page_showing(project.root, "version 1 → 2"), 30,
                        "the stale rebuild on the status page")
        assert "Clean(day=d1)" in page or "Clean(day=d2)" in page
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 130
