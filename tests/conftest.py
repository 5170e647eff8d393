"""Fixtures shared by every test file; the helpers themselves live in the `support` package."""

from __future__ import annotations

import re
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.project import CONFIG, DEMO_PIPELINE, Project

#: Fixtures of the lock-server tests (lock_server, lock_project) and the headless browser
#: (browser) and the PostgreSQL server (pg_cluster, pg_url), registered once for all.
pytest_plugins = ["support.lockutil", "support.browser", "support.pg"]


def pytest_configure(config: pytest.Config) -> None:
    """Give the processes the tests start a Ctrl-C that works, as a terminal gives one.

    A shell without job control starts a command put in the background (`./.ci/run &`,
    `nohup ... &`) with SIGINT ignored, every process it starts inherits that, and Python
    keeps an inherited ignore instead of raising KeyboardInterrupt: the tests that send
    SIGINT to a run would then wait for a run that never hears it. A handler set here is
    reset to the default in each program the tests exec, so each gets Python's own
    KeyboardInterrupt, as under a terminal or cron.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True, scope="session")
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Local copies of build records (targets/copies.py) go to a folder of the tests' own,
    for this process and the ones it starts, not to the user's cache folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BATCHDEPS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A project with the demo pipeline, its external input present, and local locks."""
    proj = Project(tmp_path)
    proj.write("config.toml", CONFIG)
    proj.write("pipelines/__init__.py", "")
    (tmp_path / "pipelines" / "demo.py").write_text(DEMO_PIPELINE)
    proj.write("in/source.txt", "raw\n")
    yield proj


#: Python 3.12+ warns when a multi-threaded process forks (the child may deadlock).
FORK_WITH_THREADS = re.compile(r"This process \(pid=\d+\) is multi-threaded, use of fork\(\)")


@pytest.fixture(autouse=True)
def _fork_with_threads_is_an_error() -> Iterator[None]:
    """Fail a test in which this process forked while it had other threads.

    A `filterwarnings = error` cannot do it: os.fork() cannot raise once the child exists,
    so CPython drops the error. The warning is recorded here instead; any other warning is
    passed on to pytest's own handling unchanged.
    """
    with warnings.catch_warnings(record=True) as seen:
        warnings.filterwarnings("always", message=FORK_WITH_THREADS.pattern,
                                category=DeprecationWarning)
        yield
    forks = [w for w in seen if FORK_WITH_THREADS.match(str(w.message))]
    for w in seen:
        if w not in forks:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if forks:
        pytest.fail(f"forked while other threads ran: {forks[0].filename}:{forks[0].lineno}: "
                    f"{forks[0].message}")
