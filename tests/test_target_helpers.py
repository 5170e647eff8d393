"""Luigi's target helpers in real runs: `path=`, `format=`, `temporary_path()`, `remove()`,
`makedirs()` and `fs` inside `run()`, with forked workers, a failure and a rerun."""

from __future__ import annotations

import gzip

from support.project import CONFIG, Project

PIPELINE = '''
import os
import subprocess
import sys

import batchdeps as bd
from batchdeps.targets.formats import Gzip, UTF8


class Words(bd.Task):
    n = bd.IntParameter()

    def output(self):
        return bd.LocalTarget(path=f"out/words-{self.n}.txt.gz", format=UTF8 >> Gzip)

    def run(self):
        with self.output().open("w") as out:
            for i in range(self.n):
                out.write(f"word{i}\\n")
        if os.path.exists(f"fail-{self.n}"):
            raise RuntimeError("marker says fail")


class Tool(bd.Task):
    """Made by another program at temporary_path(), in a folder made by makedirs()."""

    def requires(self):
        return [Words(n=n) for n in (3, 5)]

    def output(self):
        return bd.LocalTarget(path="out/deep/folder/count.txt")

    def run(self):
        self.output().makedirs()
        assert self.output().fs.isdir("out/deep/folder")
        total = 0
        for target in self.input():
            with target.open("r") as src:
                total += len(src.read().splitlines())
        with self.output().temporary_path() as path:
            subprocess.run([sys.executable, "-c",
                            f"open({path!r}, 'w').write('{total}\\\\n')"], check=True)


class Cleanup(bd.Task):
    """Removes a stale file with remove() and lists what is left with fs.listdir()."""

    def requires(self):
        return Tool()

    def output(self):
        return bd.LocalTarget("out/listing.txt")

    def run(self):
        stale = bd.LocalTarget("out/stale.txt")
        stale.remove()
        with self.output().open("w") as out:
            out.write("\\n".join(stale.fs.listdir("out/deep")) + "\\n")
'''


def _project(tmp_path) -> Project:  # type: ignore[no-untyped-def]
    proj = Project(tmp_path)
    proj.write("config.toml", CONFIG)
    proj.write("pipelines/__init__.py", "")
    (tmp_path / "pipelines" / "helpers.py").write_text(PIPELINE)
    proj.write("out/stale.txt", "old\n")
    return proj


def test_helpers_work_in_forked_workers_and_a_failure_leaves_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proj = _project(tmp_path)
    proj.write("fail-5", "")
    failed = proj.run("run", "Cleanup", "--workers", "2")
    assert failed.returncode == 1, failed.stderr
    assert not (tmp_path / "out" / "words-5.txt.gz").exists()  # the failed write is gone
    assert (tmp_path / "out" / "stale.txt").exists()  # Cleanup never ran
    assert proj.files() == ["stale.txt", "words-3.txt.gz"]  # no temporary file left
    (tmp_path / "fail-5").unlink()

    built = proj.run("run", "Cleanup", "--workers", "2")
    assert built.returncode == 0, built.stderr
    with gzip.open(tmp_path / "out" / "words-5.txt.gz", "rt", encoding="utf-8") as src:
        assert src.read() == "".join(f"word{i}\n" for i in range(5))
    assert (tmp_path / "out" / "deep" / "folder" / "count.txt").read_text() == "8\n"
    assert not (tmp_path / "out" / "stale.txt").exists()
    assert (tmp_path / "out" / "listing.txt").read_text() == "out/deep/folder/count.txt\n"
    assert not [f for f in proj.files() if ".batchdeps-tmp" in f]
    status = proj.run("status", "Cleanup")
    assert status.returncode == 0, status.stdout  # complete: formatted outputs exist
