"""Luigi's own examples, run with Luigi 3.8.1 and through batchdeps.luigi, compared.

Each example is copied twice into a folder of its own; the batchdeps copy differs only in
its import lines (support/luigi_sdist.py, IMPORT_REWRITES). Both copies get the same
rewrites of absolute paths and sleeps (REWRITES, listed in docs/from-luigi.md). Compared:
the files made, byte for byte, and the tasks run (Luigi's START/SUCCESS/FAILURE event
handlers, by Luigi's task id) on a first run, a second run and a rerun after some outputs
were deleted; also what `luigi.build(..., detailed_summary=True)` answers.
"""

from __future__ import annotations

import datetime
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.luigi_sdist import ExampleRun, Outcome, luigi_source, pair, remove

pytestmark = pytest.mark.slow  # each runs Luigi and batchdeps in subprocesses, three times


@pytest.fixture(scope="session")
def luigi_root(request: pytest.FixtureRequest) -> Path:
    return luigi_source(Path(request.config.cache.mkdir("luigi-sdist")))


def both(runs: tuple[ExampleRun, ExampleRun]) -> tuple[Outcome, Outcome]:
    return runs[0].run(), runs[1].run()


def assert_same(luigi: Outcome, ours: Outcome, runs: tuple[ExampleRun, ExampleRun]) -> None:
    """Same tasks started, built and failed, same answers from build(), same files."""
    assert ours.ran == luigi.ran
    assert ours.succeeded == luigi.succeeded
    assert ours.failed == luigi.failed
    assert (ours.status, ours.scheduling_succeeded) == (luigi.status,
                                                        luigi.scheduling_succeeded)
    assert runs[1].tree() == runs[0].tree()


def test_hello_world_runs_its_task_as_luigi(luigi_root: Path, tmp_path: Path) -> None:
    runs = pair(luigi_root, "hello_world", tmp_path, "example.HelloWorldTask()")
    first = both(runs)
    assert first[0].ran == {"examples.HelloWorldTask__99914b932b"}
    assert "HelloWorldTask says: Hello world!" in first[1].stdout + first[1].stderr
    assert_same(*first, runs)
    assert_same(*both(runs), runs)  # no outputs: it runs every time, in both


def test_hello_world_as_a_script_runs_through_luigi_run(luigi_root: Path,
                                                        tmp_path: Path) -> None:
    """The example's own `luigi.run([...])` under `__main__`, as `python hello_world.py`."""
    runs = pair(luigi_root, "hello_world", tmp_path, "None")
    outputs = []
    for run in runs:
        done = subprocess.run([sys.executable, "hello_world.py"], cwd=run.folder,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert "HelloWorldTask says: Hello world!" in outputs[0]
    assert outputs[1] == outputs[0]


def test_foo_builds_the_same_files_and_tasks(luigi_root: Path, tmp_path: Path) -> None:
    runs = pair(luigi_root, "foo", tmp_path, "example.Foo()", workers=2)
    first = both(runs)
    assert len(first[0].succeeded) == 11  # Foo and Bar(0..9)
    assert_same(*first, runs)
    second = both(runs)
    assert second[0].ran == set()  # a WrapperTask over complete tasks is complete
    assert_same(*second, runs)
    remove(runs, ["tmp/bar/3", "tmp/bar/7"])
    partial = both(runs)
    assert len(partial[0].ran) == 3  # the two Bars and Foo
    assert_same(*partial, runs)


def test_dynamic_requirements_yields_the_same_tasks(luigi_root: Path, tmp_path: Path) -> None:
    runs = pair(luigi_root, "dynamic_requirements", tmp_path, "example.Dynamic()")
    first = both(runs)
    assert (tmp_path / "luigi" / "tmp" / "Dynamic_1.txt").read_text() == "Tada!"
    assert len(first[0].succeeded) > 7  # Configuration, its Data tasks, Dynamic
    assert_same(*first, runs)
    assert_same(*both(runs), runs)
    data = sorted(p.name for p in (tmp_path / "luigi" / "tmp").glob("Data_*.txt"))
    remove(runs, ["tmp/Dynamic_1.txt", f"tmp/{data[0]}", f"tmp/{data[-1]}"])
    partial = both(runs)
    assert len(partial[0].succeeded) == 3
    assert_same(*partial, runs)


def test_execution_summary_example_reports_missing_external(luigi_root: Path,
                                                            tmp_path: Path) -> None:
    runs = pair(luigi_root, "execution_summary_example", tmp_path, "example.EntryPoint()")
    first = both(runs)
    assert first[0].status == "MISSING_EXT"
    assert len(first[0].succeeded) == 196  # Bar(5..199) and Boom
    assert_same(*first, runs)
    second = both(runs)
    assert len(second[0].succeeded) == 1  # Boom: no outputs, so it runs again
    assert_same(*second, runs)
    remove(runs, ["tmp/bar/5", "tmp/bar/100", "tmp/bar/199"])
    partial = both(runs)
    assert len(partial[0].succeeded) == 4
    assert_same(*partial, runs)


#: Both tools read this luigi.cfg; Luigi's scheduler ignores it without keep-alive.
NO_RETRY_DELAY = "[scheduler]\nretry_delay = 0\n"


def test_per_task_retry_policy_runs_and_fails_the_same_tasks(luigi_root: Path,
                                                             tmp_path: Path) -> None:
    runs = pair(luigi_root, "per_task_retry_policy", tmp_path,
                "example.PerTaskRetryPolicy()", config=NO_RETRY_DELAY)
    first = both(runs)
    luigi, ours = first
    assert luigi.failed == {"ErrorTask1__99914b932b", "ErrorTask2__99914b932b",
                            "DynamicErrorTask1__99914b932b"}
    # batchdeps fails the task whose yielded task failed (Luigi leaves it pending); none
    # of its attempts failed, so its FAILURE handlers are not called, as in Luigi.
    assert_same(*first, runs)
    # retry_count is the most runs in all; with no retry delay Luigi's scheduler, too,
    # retries within the one run.
    for task_id, runs_in_all in (("ErrorTask1__99914b932b", 5), ("ErrorTask2__99914b932b", 2),
                                 ("DynamicErrorTask1__99914b932b", 3)):
        assert luigi.started.count(task_id) == ours.started.count(task_id) == runs_in_all
    assert_same(*both(runs), runs)


def test_wordcount_counts_the_same_words(luigi_root: Path, tmp_path: Path) -> None:
    runs = pair(luigi_root, "wordcount", tmp_path,
                "example.WordCount(date_interval=luigi.date_interval.Week(2026, 47))")
    day = datetime.date(2026, 11, 16)
    for run in runs:
        for offset in range(7):
            text = run.folder / "var/tmp/text" / f"{day + datetime.timedelta(offset)}.txt"
            text.parent.mkdir(parents=True, exist_ok=True)
            text.write_text(f"the quick brown fox {offset}\njumps over the lazy dog\n" * 3)
    first = both(runs)
    assert [t.rpartition("_")[0] for t in first[0].succeeded] == ["WordCount_2026_W47"]
    assert_same(*first, runs)
    assert_same(*both(runs), runs)
    remove(runs, ["var/tmp/text-count/2026-W47"])
    assert_same(*both(runs), runs)
    remove(runs, ["var/tmp/text/2026-11-18.txt", "var/tmp/text-count/2026-W47"])
    missing = both(runs)
    assert missing[0].status == "MISSING_EXT"
    assert_same(*missing, runs)


def _bars_made(outcome: Outcome, run: ExampleRun) -> set[str]:
    """The Bar tasks built, checked against the empty files each made."""
    bars = {t for t in outcome.succeeded if t.startswith("examples.Bar_")}
    folder = run.folder / "tmp" / "bar"
    files = set(folder.iterdir()) if folder.exists() else set()
    assert all(f.read_bytes() == b"" for f in files)
    assert {b.split("_")[1] for b in bars} <= {f.name for f in files}
    return bars


def test_foo_complex_builds_a_random_tree_the_same_way(luigi_root: Path,
                                                       tmp_path: Path) -> None:
    """Its requires() draws random numbers and counts its calls in a global, so the tree
    differs from run to run in either tool: compared by shape. Luigi calls requires()
    again when a task is about to run and may find other requirements than it built
    ("Unfulfilled dependencies at run time": that task fails); batchdeps calls it once
    per run, so Foo is always built."""
    runs = pair(luigi_root, "foo_complex", tmp_path, "example.Foo()", workers=2)
    luigi, ours = both(runs)
    # Luigi may fail every Bar (each re-draws its requirements at run time), so only the
    # files of the Bars it did report built are checked against what it said.
    _bars_made(luigi, runs[0])
    assert "examples.Foo__99914b932b" in luigi.succeeded or any(
        "Unfulfilled dependenc" in line for line in luigi.stderr.splitlines())
    bars = _bars_made(ours, runs[1])
    assert len(bars) >= 3 and "examples.Foo__99914b932b" in ours.succeeded
    assert ours.failed == set() and ours.ran == bars | {"examples.Foo__99914b932b"}
    assert {f.name for f in (runs[1].folder / "tmp" / "bar").iterdir()} == {
        b.split("_")[1] for b in bars}
    # Luigi's second run and rerun depend on its random draws (and on what its first run
    # failed), so only batchdeps' are checked from here: every Bar is complete, only Foo runs.
    ours = runs[1].run()
    assert ours.ran == {"examples.Foo__99914b932b"}  # no outputs: it runs every time
    remove(runs[1:], ["tmp/bar/0"])
    ours = runs[1].run()
    assert {"examples.Foo__99914b932b", "examples.Bar_0_e0cbafafd8"} <= ours.succeeded
    assert ours.failed == set() and _bars_made(ours, runs[1])


#: The driver's prelude for examples that draw random numbers in run(): the example's
#: module gets a `random.Random` of its own (Luigi's and batchdeps' own draws do not touch
#: it), seeded with the task id when each task starts, so that each task draws the same
#: numbers in either tool whatever order the tasks run in. Only the harness changes.
SEEDED_PER_TASK = """
import random as _random
example.random = _random.Random()
@luigi.Task.event_handler(luigi.Event.START)
def _seed(task):
    example.random.seed(task.task_id)
"""


def test_top_artists_without_spark_matches_luigi(luigi_root: Path, tmp_path: Path) -> None:
    """top_artists imports luigi.contrib.hdfs, postgres and spark: batchdeps.luigi loads
    them, and Top10Artists without --use-spark needs none. Streams writes random numbers:
    with the example's `random` seeded by task id as each task starts (SEEDED_PER_TASK),
    every file is compared byte for byte, on all three runs."""
    interval = "luigi.date_interval.Custom.parse('2026-11-01-2026-11-04')"
    runs = pair(luigi_root, "top_artists", tmp_path,
                f"example.Top10Artists(date_interval={interval})", prelude=SEEDED_PER_TASK)
    first = both(runs)
    assert len(first[0].succeeded) == 5  # 3 Streams, AggregateArtists, Top10Artists
    assert_same(*first, runs)
    streams = sorted((runs[1].folder / "data").glob("streams_*_faked.tsv"))
    assert len(streams) == 3 and len({path.read_bytes() for path in streams}) == 3
    for path in streams:
        rows = [line.split() for line in path.read_text().splitlines()]
        assert len(rows) == 1000 and all(len(r) == 3 and all(v.isdigit() for v in r)
                                         for r in rows)
    assert_same(*both(runs), runs)  # nothing to do in either
    remove(runs, ["data/streams_2026_11_02_faked.tsv",
                  "data/artist_streams_2026-11-01-2026-11-04.tsv",
                  "data/top_artists_2026-11-01-2026-11-04.tsv"])
    partial = both(runs)
    assert len(partial[0].succeeded) == 3
    assert_same(*partial, runs)


def test_top_artists_with_spark_is_refused_by_name(luigi_root: Path, tmp_path: Path) -> None:
    interval = "luigi.date_interval.Custom.parse('2026-11-01-2026-11-04')"
    _, ours = pair(luigi_root, "top_artists", tmp_path,
                   f"example.Top10Artists(date_interval={interval}, use_spark=True)")
    with pytest.raises(AssertionError) as failed:
        ours.run()
    assert "luigi.contrib.spark.SparkSubmitTask" in str(failed.value)
    assert "docs/from-luigi.md" in str(failed.value)
