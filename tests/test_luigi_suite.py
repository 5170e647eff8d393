"""A part of Luigi 3.8.1's own test suite (test/ of its source distribution), run against
batchdeps.luigi: the files exercising the public task, parameter, target and config API.

Each file runs twice with pytest in a subprocess: against Luigi itself (every test
passes there) and with `import luigi` giving batchdeps.luigi. SUITE says, per file, how
many of its tests pass through batchdeps.luigi today and how many it has; a change that
makes fewer pass fails here. The count is always the same one: every test of every file
run, whatever it exercises. Why the rest do not pass is written down per file in
docs/from-luigi.md ("Luigi's own tests"), whose numbers are checked against SUITE here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.luigi_sdist import luigi_source, run_luigi_tests

REPO = Path(__file__).resolve().parent.parent

#: file -> (tests that pass through batchdeps.luigi, tests in the file, as Luigi runs it)
SUITE: dict[str, tuple[int, int]] = {
    "task_test.py": (40, 40),
    "date_interval_test.py": (9, 11),
    "util_test.py": (11, 12),
    "clone_test.py": (4, 4),
    "task_register_test.py": (1, 1),
    "date_parameter_test.py": (32, 32),
    "list_parameter_test.py": (6, 8),
    "dict_parameter_test.py": (8, 8),
    "choice_parameter_test.py": (8, 9),
    "numerical_parameter_test.py": (17, 17),
    "optional_parameter_test.py": (5, 12),
    "event_callbacks_test.py": (8, 10),
    "wrap_test.py": (4, 4),
    "instance_wrap_test.py": (1, 1),
    "instance_test.py": (5, 5),
    "mock_test.py": (12, 12),
    "priority_test.py": (2, 2),
    "helpers_test.py": (3, 3),
    "recursion_test.py": (1, 1),
    "task_serialize_test.py": (3, 3),
    "fib_test.py": (3, 3),
    "factorial_test.py": (1, 1),
    "subtask_test.py": (2, 2),
    "set_task_name_test.py": (1, 1),
    "local_target_test.py": (91, 91),  # with target_test.py's base cases
    "target_test.py": (10, 10),
    "dynamic_import_test.py": (1, 1),
    "parameter_test.py": (141, 161),  # its worker_test.py import: a stand-in
    "visible_parameters_test.py": (8, 8),
    "util_previous_test.py": (18, 18),
    "config_toml_test.py": (7, 7),
    "config_env_test.py": (5, 5),
    "decorator_test.py": (31, 31),
}

DOC = REPO / "docs" / "from-luigi.md"
PROMISES = REPO / "docs" / "promises.md"


def totals() -> tuple[int, int, int]:
    """(tests passing, tests in all, files), counted over SUITE."""
    return (sum(p for p, _ in SUITE.values()), sum(t for _, t in SUITE.values()), len(SUITE))


@pytest.fixture(scope="module")
def suite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = luigi_source(Path(request.config.cache.mkdir("luigi-sdist")))
    folder = tmp_path_factory.mktemp("luigi-suite")
    files = sorted(SUITE)
    return {tool: run_luigi_tests(root, folder, files, tool) for tool in ("luigi", "batchdeps")}


@pytest.mark.slow
def test_luigis_own_tests_pass_through_batchdeps_luigi(suite: dict) -> None:
    theirs, ours = suite["luigi"], suite["batchdeps"]
    for name, (floor, total) in SUITE.items():
        assert theirs[name].count("passed") == len(theirs[name].outcomes) == total, \
            (name, theirs[name].outcomes, theirs[name].collect_error)
        passed = {test for test, outcome in ours[name].outcomes.items() if outcome == "passed"}
        assert not ours[name].collect_error, (name, ours[name].collect_error)
        assert len(passed) >= floor, (name, len(passed), floor)
        assert passed <= set(theirs[name].outcomes), name  # the same tests, by name
    passing = sum(r.count("passed") for r in ours.values())
    assert passing >= totals()[0]


def _own_tests_section() -> str:
    text = DOC.read_text()
    start = text.index("### Luigi's own tests")
    return text[start:text.index("\n### ", start + 1)]


def test_the_docs_state_the_suites_counts() -> None:
    """docs/from-luigi.md and docs/promises.md give SUITE's numbers, file by file and in
    all, counted the same way (every test of every file run)."""
    passing, total, files = totals()
    section = _own_tests_section()
    assert f"runs {files} files" in section
    assert f"all {total:,} of their tests pass" in section
    assert f"{passing:,} of the {total:,} pass through `batchdeps.luigi`" in section
    rows = dict(re.findall(r"^\| ([\w.]+\.py) \| (\d+ / \d+) \|", section, flags=re.MULTILINE))
    assert rows == {name: f"{p} / {t}" for name, (p, t) in SUITE.items()}
    promise = (f"{passing:,} of the {total:,} tests of {files} files of Luigi's own suite "
               "pass through batchdeps.luigi")
    assert promise in PROMISES.read_text()
