"""Scale: a 20,000-long chain through the real command, with no recursion limit hit anywhere.

Python's default recursion limit is 1,000 frames, so a resolver, runner or wrapper check
that recursed once per dependency would fail long before 20,000. Speed is not asserted
here; it lives in `bench/`.
"""

from __future__ import annotations

import os

from support.project import Project

LENGTH = 20_000

SCALE_PIPELINE = '''
"""A long chain of tasks and a long chain of wrappers over it."""
import os

import batchdeps as bd


class Link(bd.Task):
    """Link n of the chain; needs link n-1."""
    n = bd.IntParameter()

    def requires(self):
        return Link(n=self.n - 1) if self.n > 0 else None

    def output(self):
        return bd.FileTarget(f"chain/{self.n}.txt")

    def run(self):
        previous = int(self.input().open("r").read()) if self.n > 0 else -1
        with self.output().open("w") as out:
            out.write(f"{previous + 1}")


class Nest(bd.WrapperTask):
    """Wrapper n needs wrapper n-1; wrapper 0 needs link 0."""
    n = bd.IntParameter()

    def requires(self):
        return Nest(n=self.n - 1) if self.n > 0 else Link(n=0)


class Top(bd.WrapperTask):
    """The end of both chains."""
    n = bd.IntParameter()

    def requires(self):
        return [Link(n=self.n), Nest(n=self.n)]
'''


def test_chain_of_20000_builds_then_reruns_as_nothing_to_do(project: Project) -> None:
    project.write("pipelines/scale.py", SCALE_PIPELINE)
    last = LENGTH - 1

    first = project.run("run", "Top", "--n", str(last), "--log-level", "WARNING", timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "RecursionError" not in first.stderr
    chain = project.root / "chain"
    names = os.listdir(chain)
    assert len([n for n in names if n.endswith(".txt")]) == LENGTH
    # each link read its predecessor's output, so the last one counts the whole chain
    assert (chain / f"{last}.txt").read_text() == str(last)
    assert (chain / "0.txt").read_text() == "0"
    assert not (chain / ".batchdeps-tmp").exists()  # no leftovers, no empty folder
    stamps = {name: os.stat(chain / name).st_mtime_ns for name in ("0.txt", f"{last}.txt")}

    again = project.run("run", "Top", "--n", str(last), timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 complete" in again.stdout and "built" not in again.stdout
    assert {name: os.stat(chain / name).st_mtime_ns for name in stamps} == stamps

    dry = project.run("run", "Link", "--n", str(last), "--dry-run")
    assert dry.returncode == 0
    assert "nothing to do" in dry.stdout


def test_chain_of_20000_extended_builds_only_the_missing_half(project: Project) -> None:
    project.write("pipelines/scale.py", SCALE_PIPELINE)
    last = LENGTH - 1
    assert project.run("run", "Link", "--n", "9999", "--log-level", "WARNING",
                       timeout=600).returncode == 0

    rest = project.run("run", "Link", "--n", str(last), "--log-level", "WARNING", timeout=600)
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert "10000 task(s): 10000 built" in rest.stdout  # only the missing half ran
    assert (project.root / "chain" / f"{last}.txt").read_text() == str(last)
