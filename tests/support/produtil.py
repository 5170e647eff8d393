"""Helpers for the production-run tests: a pipeline that fails, sleeps and talks, and waits."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from support.journal import JOURNAL_FUNCTION

# Every run() appends "event<TAB>task_id<TAB>pid" lines to $JOURNAL (see conftest's demo).
PROD_PIPELINE = '''
"""Production-run test tasks: retries, timeouts, signals, output capture, hooks."""
import logging
import os
import subprocess
import sys
import time

import batchdeps as bd


''' + JOURNAL_FUNCTION + '''


def starts(task):
    with open(os.environ["JOURNAL"]) as handle:
        return sum(1 for line in handle if line.startswith("start\\t" + task.task_id + "\\t"))


class Flaky(bd.Task):
    """Fails its first `fails` attempts; talks on stdout, stderr, logging and a child."""
    name = bd.Parameter(default="f")
    fails = bd.IntParameter(default=2)
    retries = 3
    retry_delay = 0.01

    def output(self):
        return bd.FileTarget(f"out/flaky-{self.name}.txt")

    def run(self):
        journal("start", self)
        n = starts(self)
        print(f"stdout of attempt {n}")
        print(f"stderr of attempt {n}", file=sys.stderr)
        logging.getLogger("prod.flaky").info("logging of attempt %d", n)
        subprocess.run(["sh", "-c", f"echo child process output {n}"], check=True)
        with self.output().open("w") as out:
            out.write(f"attempt {n}\\n")
            if n <= self.fails:
                raise RuntimeError(f"failure number {n}")


class Configured(Flaky):
    """Like Flaky, but retries and delays come from config."""
    retries = None
    retry_delay = None

    def output(self):
        return bd.FileTarget(f"out/configured-{self.name}.txt")


class Quiet(bd.Task):
    """Writes its output and says nothing."""
    n = bd.IntParameter(default=0)

    def output(self):
        return bd.FileTarget(f"out/quiet-{self.n}.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("quiet\\n")


class Slow(bd.Task):
    """Writes half its output, says so, then sleeps $SLEEP seconds (default 30)."""

    def output(self):
        return bd.FileTarget(f"out/{type(self).__name__.lower()}.txt")

    def run(self):
        journal("start", self)
        with self.output().open("w") as out:
            out.write("partial\\n")
            out.flush()
            print("half written, now sleeping", flush=True)
            journal("sleeping", self)
            time.sleep(float(os.environ.get("SLEEP", "30")))
            out.write("done\\n")
        journal("end", self)


class TimesOut(Slow):
    """Slow, with a one-second limit; its child process writes its pid to child.pid."""
    timeout = 1

    def run(self):
        child = subprocess.Popen(["sleep", "60"])
        with open("child.pid", "w") as handle:
            handle.write(str(child.pid))
        super().run()


class TimesOutTwice(TimesOut):
    """TimesOut, with one retry."""
    retries = 1
    retry_delay = 0.01


class Stubborn(Slow):
    """Ignores the first stop: swallows KeyboardInterrupt and keeps sleeping."""

    def run(self):
        journal("start", self)
        with self.output().open("w") as out:
            out.write("partial\\n")
            with open("stubborn.pid", "w") as handle:
                handle.write(str(os.getpid()))
            journal("sleeping", self)
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    time.sleep(0.05)
                except KeyboardInterrupt:
                    journal("ignored", self)


class Hooked(bd.Task):
    """Fails while fail-Hooked exists; its hooks write to the journal."""
    retries = 1
    retry_delay = 0.01

    def output(self):
        return bd.FileTarget("out/hooked.txt")

    def run(self):
        journal("start", self)
        if os.path.exists("fail-Hooked"):
            raise ValueError("marker says no")
        with self.output().open("w") as out:
            out.write("hooked\\n")

    def on_success(self):
        journal("on_success", self)

    def on_failure(self, error):
        journal(f"on_failure {error}", self)


class SlowToResolve(bd.Task):
    """Its requires() takes $SLEEP seconds: a stand-in for resolving a huge graph."""

    def requires(self):
        with open("resolving", "w") as handle:
            handle.write("yes")
        time.sleep(float(os.environ.get("SLEEP", "30")))
        return []

    def output(self):
        return bd.FileTarget("out/slow-to-resolve.txt")

    def run(self):
        journal("start", self)


class Pair(bd.WrapperTask):
    """Two quiet tasks and one slow one, to watch progress."""

    def requires(self):
        return [Quiet(n=1), Quiet(n=2), Slow()]
'''


def add_prod_pipeline(project: Any, config_extra: str = "") -> None:
    """Put the production pipeline into a conftest `project`, with extra config lines."""
    project.write("pipelines/prod.py", PROD_PIPELINE)
    project.write("config.toml", '[batchdeps]\nmodules = ["pipelines"]\n' + config_extra)


def journal_events(project: Any, event: str, task_id: str | None = None) -> list[str]:
    """Task ids (or whole lines' task ids matching `task_id`) of journal lines with `event`."""
    if not project.journal.exists():
        return []
    found = []
    for line in project.journal.read_text().splitlines():
        parts = line.split("\t")
        if parts[0] == event and (task_id is None or parts[1] == task_id):
            found.append(parts[1])
    return found



def pid_gone(pid: int) -> bool:
    """True when process `pid` no longer runs (gone, or a zombie nobody reaped yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in status


def all_files(root: Path) -> list[str]:
    """Every file under `root`, hidden ones included, relative and sorted."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


class WebhookServer:
    """A real HTTP server on 127.0.0.1 in a thread; records POSTed JSON bodies.

    `statuses` are answered in order to the first requests (then 200).
    """

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.statuses = list(statuses or [])
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                outer.paths.append(self.path)
                outer.received.append({
                    "content_type": self.headers.get("Content-Type"),
                    "json": json.loads(body.decode("utf-8")),
                })
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_without_terminal() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "TERM"}


def log_files(root: Path) -> list[str]:
    """Task log files under `root` with each run's folder shown as RUN (markers left out)."""
    import re

    return sorted(re.sub(r"/[0-9a-f]{12}/", "/RUN/", name) for name in all_files(root)
                  if not name.endswith(".pruned"))


def attempt_log(folder: Path, attempt: int) -> Path:
    """The log of `attempt` in the one run folder under a task's log folder."""
    runs = [p for p in folder.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0] / f"{attempt}.log"
