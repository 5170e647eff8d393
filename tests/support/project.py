"""A throw-away project folder (config.toml + a demo pipeline) and a runner of the real `batchdeps`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from support.journal import JOURNAL_FUNCTION

BATCHDEPS = shutil.which("batchdeps", path=os.path.dirname(sys.executable)) or "batchdeps"

#: A one-file pipeline: one task `Out` writing `out/out.txt` (for runs of a module by name).
ONE_FILE_TASK = (
    "import batchdeps as bd\n"
    "class Out(bd.Task):\n"
    "    def output(self):\n"
    "        return bd.FileTarget('out/out.txt')\n"
    "    def run(self):\n"
    "        with self.output().open('w') as out:\n"
    "            out.write('x')\n")

# A small pipeline used by the end-to-end tests. Every run() appends "start"/"end" lines to
# the journal named by $JOURNAL, so a test can count how often each task really ran.
DEMO_PIPELINE = '''
"""Test pipeline: a diamond over an external input, plus an independent branch."""
import os
import time

import batchdeps as bd


''' + JOURNAL_FUNCTION + '''


class Base(bd.Task):
    """Writes its name and its inputs' text; sleeps $SLEEP_<NAME> s; fails on a marker."""

    def body(self):
        return self.task_id

    def run(self):
        journal("start", self)
        name = type(self).__name__.upper()
        text = self.body()
        with self.output().open("w") as out:
            out.write(text + "\\n")
            out.flush()
            delay = float(os.environ.get(f"SLEEP_{name}", "0"))
            if delay or os.environ.get(f"HOLD_{name}"):
                journal("sleeping", self)
                time.sleep(delay)
                hold(self)
            if os.path.exists(f"fail-{type(self).__name__}"):
                raise RuntimeError(f"marker says {type(self).__name__} fails")
        journal("end", self)


class Source(bd.ExternalTask):
    """Raw input made outside the pipeline."""
    name = bd.Parameter(default="source")

    def output(self):
        return bd.FileTarget(f"in/{self.name}.txt")


class A(Base):
    """Top of the diamond."""
    day = bd.DateParameter(default="2026-11-24", description="the day to build")

    def requires(self):
        return Source()

    def output(self):
        return bd.FileTarget(f"out/a-{self.day}.txt")


class B(Base):
    day = bd.DateParameter(default="2026-11-24")

    def requires(self):
        return A(day=self.day)

    def output(self):
        return bd.FileTarget(f"out/b-{self.day}.txt")


class C(Base):
    day = bd.DateParameter(default="2026-11-24")

    def requires(self):
        return {"a": A(day=self.day)}

    def output(self):
        return bd.FileTarget(f"out/c-{self.day}.txt")


class D(Base):
    """Bottom of the diamond: needs B and C, which both need A."""
    day = bd.DateParameter(default="2026-11-24", description="the day to build")
    count = bd.IntParameter(default=3, description="how many things")

    def requires(self):
        return [B(day=self.day), C(day=self.day)]

    def output(self):
        return bd.FileTarget(f"out/d-{self.day}.txt")


class Other(Base):
    """Independent of Source."""
    def output(self):
        return bd.FileTarget("out/other.txt")


class NeedsMissing(Base):
    def requires(self):
        return Source(name="absent")

    def output(self):
        return bd.FileTarget("out/needs-missing.txt")


class Both(bd.WrapperTask):
    """One branch with a missing input, one without."""
    def requires(self):
        return [NeedsMissing(), Other()]


class Many(bd.WrapperTask):
    """Several independent leaves, to run in parallel."""
    n = bd.IntParameter(default=6)

    def requires(self):
        return [Leaf(i=i) for i in range(self.n)]


class Leaf(Base):
    i = bd.IntParameter()

    def output(self):
        return bd.FileTarget(f"out/leaf-{self.i}.txt")


class Lazy(bd.Task):
    """run() forgets to write its output."""
    def output(self):
        return bd.FileTarget("out/lazy.txt")

    def run(self):
        journal("start", self)
'''

CONFIG = """
[batchdeps]
modules = ["pipelines"]
"""


class Project:
    """A folder with config.toml and a pipelines package, and a runner of `batchdeps`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal = root / "journal.log"
        self.env = {
            **os.environ,
            "JOURNAL": str(self.journal),
            "BATCHDEPS_LOCK_DIR": str(root / "locks"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        for name in ("BATCHDEPS_CONFIG", "BATCHDEPS_LOCK_URL", "BATCHDEPS_LOCK_TOKEN"):
            self.env.pop(name, None)

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def command(self, *args: str) -> list[str]:
        return [BATCHDEPS, *args]

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), cwd=self.root, env={**self.env, **env}, text=True,
            capture_output=True, timeout=timeout,
        )

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args), cwd=self.root, env={**self.env, **env}, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )

    def runs(self, event: str = "start") -> list[str]:
        """Task ids in the journal with `event`, in order."""
        if not self.journal.exists():
            return []
        return [line.split("\t")[1] for line in self.journal.read_text().splitlines()
                if line.startswith(event + "\t")]

    def files(self, folder: str = "out") -> list[str]:
        """Every file under `folder`, hidden temporary ones included, relative and sorted."""
        base = self.root / folder
        if not base.exists():
            return []
        return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
