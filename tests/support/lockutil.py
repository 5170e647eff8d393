"""Helpers for the lock-server tests: a real server process, a pipeline, real runs.

conftest.py registers its fixtures for every test module.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.journal import JOURNAL_FUNCTION

BATCHDEPS = shutil.which("batchdeps", path=os.path.dirname(sys.executable)) or "batchdeps"
TOKEN = "test-token-3f9a"

# Every run() appends "start"/"end" lines (O_APPEND) to $JOURNAL, so a test can count how
# often each task ran and whether two runs of one task overlapped in time.
PIPELINE = '''
"""Lock test pipeline: Top <- Mid(g) <- Leaf(n); Pool tasks share a resource."""
import os
import time

import batchdeps as bd


''' + JOURNAL_FUNCTION + '''


class Step(bd.Task):
    def run(self):
        journal("start", self)
        time.sleep(float(os.environ.get("SLEEP_" + type(self).__name__.upper(), "0")))
        hold(self)
        with self.output().open("w") as out:
            out.write(f"{self.task_id} by {os.getpid()}\\n")
        journal("end", self)


class Leaf(Step):
    n = bd.IntParameter()

    def output(self):
        return bd.FileTarget(f"out/leaf-{self.n}.txt")


class Mid(Step):
    g = bd.IntParameter()
    per = bd.IntParameter(default=3)

    def requires(self):
        return [Leaf(n=self.g * self.per + i) for i in range(self.per)]

    def output(self):
        return bd.FileTarget(f"out/mid-{self.g}.txt")


class Top(Step):
    groups = bd.IntParameter(default=4)

    def requires(self):
        return [Mid(g=g) for g in range(self.groups)]

    def output(self):
        return bd.FileTarget("out/top.txt")


class Slow(Step):
    """One slow task (SLEEP_SLOW seconds)."""

    def output(self):
        return bd.FileTarget("out/slow.txt")


class Flaky(Step):
    """Fails its first attempt ever (a marker file says so), then builds; one retry."""

    retries = 1
    retry_delay = float(os.environ.get("FLAKY_RETRY_DELAY", "1"))

    def output(self):
        return bd.FileTarget("out/flaky.txt")

    def run(self):
        marker = "out/flaky-failed-once"
        if not os.path.exists(marker):
            os.makedirs("out", exist_ok=True)
            open(marker, "w").close()
            journal("fail", self)
            raise RuntimeError("first attempt fails")
        super().run()


class Pooled(Step):
    n = bd.IntParameter()
    resources = {"warehouse": 1}

    def output(self):
        return bd.FileTarget(f"out/pooled-{self.n}.txt")


class AllPooled(bd.WrapperTask):
    count = bd.IntParameter(default=6)

    def requires(self):
        return [Pooled(n=n) for n in range(self.count)]
'''


class LockServer:
    """A real `batchdeps lock-server` process on 127.0.0.1 with a temp database."""

    def __init__(self, db: Path, token: str = TOKEN, extra: list[str] | None = None) -> None:
        self.db = db
        self.token = token
        self.extra = extra or []
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None

    def start(self, port: int | None = None) -> LockServer:
        env = {**os.environ, "BATCHDEPS_LOCK_TOKEN": self.token}
        cmd = [BATCHDEPS, "lock-server", "--host", "127.0.0.1", "--port",
               str(self.port if port is None else port), "--db", str(self.db), *self.extra]
        deadline = time.monotonic() + 10
        while True:  # the old port may linger briefly after a kill -9
            self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if line.startswith("listening on "):
                break
            self.proc.wait()
            if time.monotonic() > deadline:
                raise RuntimeError(f"lock server did not start: {line} {self.proc.stderr.read()}")
            time.sleep(0.2)
        self.url = line.split()[2]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                raw: bytes | None = None, headers: dict[str, str] | None = None
                ) -> tuple[int, Any]:
        """One raw HTTP request; (status, parsed JSON or raw text)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            sent = {"Authorization": f"Bearer {self.token if token is None else token}"}
            payload = raw
            if body is not None:
                payload = json.dumps(body).encode()
                sent["Content-Type"] = "application/json"
            sent.update(headers or {})
            conn.request(method, path, body=payload, headers=sent)
            response = conn.getresponse()
            text = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text.decode("utf-8", "replace")


@pytest.fixture
def lock_server(tmp_path: Path) -> Iterator[LockServer]:
    server = LockServer(tmp_path / "locks.db").start()
    yield server
    server.stop()


class LockProject:
    """A folder with the lock test pipeline and a config that points at a lock server."""

    def __init__(self, root: Path, server: LockServer) -> None:
        self.root = root
        self.server = server
        (root / "pipelines").mkdir()
        (root / "pipelines" / "__init__.py").write_text("")
        (root / "pipelines" / "lockpipe.py").write_text(PIPELINE)
        self.journal = root / "journal.tsv"
        self.write_config()

    def write_config(self, ttl: float = 2, extra: str = "") -> None:
        (self.root / "config.toml").write_text(textwrap.dedent(f"""\
            [batchdeps]
            modules = ["pipelines"]

            [lock]
            url = "{self.server.url}"
            ttl = {ttl}
            """) + extra)

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "JOURNAL": str(self.journal),
               "BATCHDEPS_LOCK_TOKEN": self.server.token,
               "BATCHDEPS_LOCK_DIR": str(self.root / "local-locks")}
        env.pop("BATCHDEPS_LOCK_URL", None)
        env.pop("BATCHDEPS_CONFIG", None)
        env.update(extra)
        return env

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """`batchdeps run ARGS` in the background (own process group)."""
        return subprocess.Popen([BATCHDEPS, "run", *args], cwd=self.root, env=self.env(**env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

    def run(self, *args: str, timeout: float = 60, **env: str) -> tuple[int, str]:
        """`batchdeps run ARGS` to the end: (exit code, stdout + stderr)."""
        done = subprocess.run(check=False, args=[BATCHDEPS, "run", *args], cwd=self.root, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout)
        return done.returncode, done.stdout + done.stderr

    def events(self) -> list[tuple[str, str, int, float]]:
        if not self.journal.exists():
            return []
        rows = []
        for line in self.journal.read_text().splitlines():
            event, task_id, pid, when = line.split("\t")
            rows.append((event, task_id, int(pid), float(when)))
        return rows

    def starts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for event, task_id, _, _ in self.events():
            if event == "start":
                counts[task_id] += 1
        return dict(counts)

    def intervals(self) -> dict[str, list[tuple[float, float, int]]]:
        """Per task id: (start, end, pid) of each run() that got to its end."""
        open_runs: dict[tuple[str, int], float] = {}
        spans: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
        for event, task_id, pid, when in self.events():
            if event == "start":
                open_runs[(task_id, pid)] = when
            elif event == "end":
                spans[task_id].append((open_runs.pop((task_id, pid)), when, pid))
        return dict(spans)

    def assert_no_overlap(self) -> None:
        for task_id, spans in self.intervals().items():
            spans.sort()
            for (_, end, pid), (start, _, other) in itertools.pairwise(spans):
                assert start >= end, f"{task_id} ran in {pid} and {other} at the same time"


@pytest.fixture
def lock_project(tmp_path: Path, lock_server: LockServer) -> LockProject:
    root = tmp_path / "project"
    root.mkdir()
    return LockProject(root, lock_server)



def holder_json(server: LockServer) -> Callable[[str], Any]:
    def get(key: str) -> Any:
        return server.request("POST", "/v1/holder", {"key": key})[1]
    return get
