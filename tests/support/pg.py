"""A throwaway PostgreSQL cluster for tests: Debian's binaries, 127.0.0.1, a free port.

`PgCluster.start()` runs initdb in a temp dir and starts the server; as root, both run as
an unprivileged user (`nobody`, who owns the data dir), since PostgreSQL refuses root.
`fresh_url()` makes an empty database per test (CREATE DATABASE from template0 takes a few
milliseconds). `find_bindir()` is None when no server binaries are installed: the tests
then skip, saying so (.ci/run installs Debian's `postgresql` where apt-get works).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from typing import Any

RUN_AS = "nobody"


def find_bindir() -> str | None:
    """The newest /usr/lib/postgresql/N/bin with initdb and postgres, or one on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(initdb)) if initdb else None


def skip_reason() -> str | None:
    """Why PostgreSQL tests cannot run here (None: they can)."""
    if find_bindir() is None:
        return ("no PostgreSQL server binaries (initdb) on this machine: apt-get install "
                "postgresql (.ci/run does)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'batchdeps[postgres]')"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as another user"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """One PostgreSQL server in a temp dir; `superuser` connects with trust on 127.0.0.1."""

    def __init__(self, fsync: bool = False) -> None:
        bindir = find_bindir()
        assert bindir is not None
        self.bindir = bindir
        self.fsync = fsync
        self.root = tempfile.mkdtemp(prefix="batchdeps-pg-")
        os.chmod(self.root, 0o755)
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "server.log")
        self.port = free_port()
        self.superuser = "batchdeps"
        self.started = False

    def _as_owner(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0:
            args = ["runuser", "-u", RUN_AS, "--", *args]
        return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)

    def start(self) -> PgCluster:
        if not os.path.exists(self.data):
            os.makedirs(self.data, mode=0o700)
            if os.geteuid() == 0:
                shutil.chown(self.data, RUN_AS)
                shutil.chown(self.root, RUN_AS)
            done = self._as_owner([os.path.join(self.bindir, "initdb"), "-D", self.data,
                                   "-U", self.superuser, "-A", "trust", "-E", "UTF8",
                                   "--no-sync"])
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed: {done.stderr}")
            with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
                conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                           f"unix_socket_directories = '{self.root}'\n"
                           f"fsync = {'on' if self.fsync else 'off'}\n"
                           "max_connections = 200\nshared_buffers = 32MB\n")
        self.pg_ctl("start", "-w", "-t", "60", "-l", self.log)
        self.started = True
        return self

    def pg_ctl(self, *args: str) -> None:
        done = self._as_owner([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, *args])
        if done.returncode != 0:
            log = open(self.log).read()[-2000:] if os.path.exists(self.log) else ""
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {done.stderr}\n{log}")

    def stop(self, mode: str = "fast") -> None:
        if self.started:
            self.pg_ctl("stop", "-m", mode, "-w", "-t", "60")
            self.started = False

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "fast", "-w", "-t", "60", "-l", self.log)
        self.started = True

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(self.url(dbname), autocommit=True)

    def fresh_url(self) -> str:
        """The URL of a new, empty database."""
        name = "t_" + uuid.uuid4().hex[:12]
        with self.connect() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def audit_counts(url: str) -> dict[str, int]:
    """How many audit lines of each event the database at `url` holds."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return {event: int(n) for event, n in conn.execute(
            "SELECT event, count(*) FROM batchdeps_audit GROUP BY event").fetchall()}


def wait_until_refused(port: int, timeout: float = 30.0) -> None:
    """Until nothing listens on 127.0.0.1:port (a stopped server)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return
        time.sleep(0.05)


# -- fixtures (registered for every test module by conftest.py) ---------------------------------
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster() -> Any:
    """One PostgreSQL server for the whole session (skips the test when none can run)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    cluster = PgCluster().start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """A new database on the session's server, with the batchdeps schema (--init)."""
    from batchdeps.locks.store.postgres import init_database

    url = pg_cluster.fresh_url()
    init_database(url)
    return url


@pytest.fixture
def own_pg_cluster() -> Any:
    """A PostgreSQL server of this test's own (to restart or stop it)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    cluster = PgCluster().start()
    yield cluster
    cluster.destroy()
